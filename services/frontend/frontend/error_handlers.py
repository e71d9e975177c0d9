"""The one place where errors become HTTP responses: `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from frontend import errors

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[errors.FrontendError], int], ...] = (
    (errors.BatchTooLarge, 413),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.UnknownPrediction, 404),
    (errors.ServerBusy, 503),
    (errors.BackendTimeout, 504),
    (errors.BackendUnavailable, 503),
    (errors.BackendError, 502),
)


def status_for(error: errors.FrontendError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mnist", charset="UTF-8"'
    if code == errors.ServerBusy.code:
        response.headers["Retry-After"] = "1"
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.FrontendError)
    def _domain(error: errors.FrontendError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.warning("%s: %s", error.code, error.message)
        return error_response(status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, error.description or error.name)
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # A bug of ours, never the caller's: logged with its traceback, reported without internals.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the frontend's log")
