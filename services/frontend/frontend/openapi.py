"""GET /openapi.json: the OpenAPI 3 description of the whole HTTP API (kept true by tests and schemathesis)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from frontend import __version__

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_PIXELS = {
    "description": "28x28 (or 28x28x1) nested arrays: floats in [0, 1] or integers 0-255, white digit on black",
    "type": "array", "minItems": 28, "maxItems": 28,
    "items": {"type": "array", "minItems": 28, "maxItems": 28,
              "items": {"oneOf": [{"type": "number", "minimum": 0, "maximum": 255},
                                  {"type": "array", "minItems": 1, "maxItems": 1,
                                   "items": {"type": "number", "minimum": 0, "maximum": 255}}]}},
}

_COMMON_ERRORS = {
    "400": _error_response("Invalid JSON, input, image or gzip body, or a malformed or cut-short (chunked) body"),
    "401": _error_response("No API key (keys are configured)"),
    "403": _error_response("Wrong API key"),
    "413": _error_response("Body (sized or chunked), decompressed body, image, request pixels or batch too large"),
    "415": _error_response("Unsupported Content-Type or Content-Encoding"),
}


def build_spec(max_batch: int = 64) -> dict[str, Any]:
    security = [{"ApiKey": []}, {"Bearer": []}, {}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "mnist-platform frontend", "version": __version__,
                 "description": "Handwritten digit recognition in front of TF Serving, with version routing."},
        "paths": {
            "/v1/predict": {"post": {
                "operationId": "predict", "summary": "Predict the digit in one or more images", "security": security,
                "parameters": [{"name": "X-Request-Id", "in": "header", "required": False,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "required": ["instances"], "properties": {
                            "instances": {"type": "array", "minItems": 1, "maxItems": max_batch, "items": _PIXELS},
                            "signature_name": {"type": "string", "enum": ["serving_default"]}}},
                        {"type": "object", "required": ["image"],
                         "properties": {"image": {"type": "string", "description": "base64 PNG/JPEG or data: URL"}}},
                        {"type": "object", "required": ["images"], "properties": {"images": {
                            "type": "array", "minItems": 1, "maxItems": max_batch,
                            "items": {"type": "string", "description": "base64 PNG/JPEG or data: URL"}}}},
                    ]}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
                        "type": "array", "items": {"type": "string", "format": "binary"}}}}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {
                    "200": {"description": "One prediction per image",
                            "headers": {"X-Request-Id": {"schema": {"type": "string"}},
                                        "X-Model-Version": {"schema": {"type": "string"}},
                                        "X-Model-Route": {"schema": {"type": "string"}},
                                        "Server-Timing": {"description": "preprocess, predict and app durations in ms",
                                                          "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}}},
                    **_COMMON_ERRORS,
                    "502": _error_response("The backend failed"),
                    "503": _error_response("The backend or the routed model version is unavailable, or the "
                                           "server is busy decoding other images (server_busy; retry)"),
                    "504": _error_response("The backend did not answer within the deadline"),
                },
            }},
            "/v1/feedback": {"post": {
                "operationId": "feedback", "summary": "Tell the true label of an earlier prediction",
                "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["request_id", "label"], "properties": {
                        "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "label": {"type": "integer", "minimum": 0, "maximum": 9},
                        "index": {"type": "integer", "minimum": 0, "default": 0},
                        "feedback_token": {"type": "string"}}}}}},
                "responses": {
                    "200": {"description": "Counted (or ignored as a repeat)", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/FeedbackResult"}}}},
                    **_COMMON_ERRORS,
                    "404": _error_response("Unknown request id and no feedback_token"),
                },
            }},
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive", "security": [],
                                 "responses": {"200": {"description": "Alive", "content": {
                                     "application/json": {"schema": {"type": "object"}}}}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Backend reachable, routed versions available",
                                "security": [], "responses": {
                                    "200": {"description": "Ready", "content": {"application/json": {
                                        "schema": {"type": "object"}}}},
                                    "503": {"description": "Not ready", "content": {"application/json": {
                                        "schema": {"type": "object"}}}}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "Prometheus text format", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3", "content": {
                                          "application/json": {"schema": {"type": "object"}}}}}}},
            "/": {"get": {"operationId": "page", "summary": "The draw-a-digit page", "security": [],
                          "responses": {"200": {"description": "HTML", "content": {
                              "text/html": {"schema": {"type": "string"}}}}}}},
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "Bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Prediction": {"type": "object", "required": ["request_id", "model", "version", "route", "predictions"],
                               "properties": {
                                   "request_id": {"type": "string"}, "model": {"type": "string"},
                                   "version": {"type": "integer"}, "route": {"type": "string"},
                                   "predictions": {"type": "array", "items": {
                                       "type": "object",
                                       "required": ["digit", "confidence", "probabilities", "feedback_token"],
                                       "properties": {
                                           "digit": {"type": "integer", "minimum": 0, "maximum": 9},
                                           "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                                           "probabilities": {"type": "array", "minItems": 10, "maxItems": 10,
                                                             "items": {"type": "number"}},
                                           "feedback_token": {"type": "string"}}}}}},
                "FeedbackResult": {"type": "object", "required": ["request_id", "version", "correct", "counted"],
                                   "properties": {"request_id": {"type": "string"}, "index": {"type": "integer"},
                                                  "version": {"type": "integer"}, "predicted": {"type": "integer"},
                                                  "label": {"type": "integer"}, "correct": {"type": "boolean"},
                                                  "counted": {"type": "boolean"}}},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    from frontend.state import get_state

    return jsonify(build_spec(get_state().config["MAX_BATCH"]))
