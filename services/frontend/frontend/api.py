"""POST /v1/predict and POST /v1/feedback (API key protected)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, jsonify, request

from frontend.auth import check_key, presented_key
from frontend.errors import InvalidInput, UnknownPrediction, UnsupportedMediaType
from frontend.feedback import verify
from frontend.parse import media_type, parse_json_body, parse_predict
from frontend.pipeline import Outcome
from frontend.state import get_state

bp = Blueprint("api", __name__)
FEEDBACK_JSON_VALUES = 16  # a feedback object has four members


@bp.before_request
def require_api_key() -> None:
    state = get_state()
    if state.api_keys is None:
        return
    keys = state.api_keys.get() or ()
    g.api_key = check_key(keys, presented_key(request.headers.get("X-API-Key"), request.headers.get("Authorization")))


@bp.post("/v1/predict")
def predict() -> Response:
    state = get_state()
    limits = state.limits
    files = None
    if media_type(request.content_type) == "multipart/form-data":
        files = [part.read() for name in request.files for part in request.files.getlist(name)]
        body = b""
    else:
        body = request.get_data(cache=False)
    started = time.perf_counter()
    images = parse_predict(request.content_type, body, files, limits)
    outcome = Outcome(timings={"preprocess": time.perf_counter() - started})
    g.outcome = outcome
    decision = state.predictor.route(request.headers.get)
    g.decision = decision
    result = state.predictor.predict(images, decision, outcome)
    g.version = result.version
    state.metrics.images.labels(state.metrics.model, str(result.version)).inc(len(images))
    return jsonify(state.predictor.postprocess(g.request_id, decision, result))


@bp.post("/v1/feedback")
def feedback() -> Response:
    state = get_state()
    if media_type(request.content_type) != "application/json":
        raise UnsupportedMediaType("feedback must be application/json")
    payload = parse_json_body(request.get_data(cache=False), max_values=FEEDBACK_JSON_VALUES)
    if not isinstance(payload, dict):
        raise InvalidInput("feedback must be a JSON object {request_id, label[, feedback_token, index]}")
    request_id, label = payload.get("request_id"), payload.get("label")
    index, token = payload.get("index", 0), payload.get("feedback_token")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise InvalidInput("request_id must be the non-empty string returned by /v1/predict")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
        raise InvalidInput("label must be an integer digit 0-9")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < state.config["MAX_BATCH"]:
        raise InvalidInput("index must be the position of the image in the predicted batch")
    if token is not None and not isinstance(token, str):
        raise InvalidInput("feedback_token must be the string returned by /v1/predict")
    model = state.metrics.model
    if token:
        answer = verify(state.feedback_key, token, request_id, index, model, time.time(), state.config["FEEDBACK_TTL_S"])
        if answer is None:
            raise InvalidInput("feedback_token is not valid for this request_id and index (or has expired)")
    else:
        answer = state.answers.get(request_id, index)
        if answer is None:
            raise UnknownPrediction(f"no recent prediction {request_id!r} (index {index}) is known here; "
                                    "send the feedback_token from the prediction")
    correct = label == answer.digit
    counted = state.claims.claim(answer.prediction, index)
    if counted:
        state.metrics.feedback.labels(model, str(answer.version), "correct" if correct else "wrong").inc()
    return jsonify({"request_id": request_id, "index": index, "version": answer.version, "predicted": answer.digit,
                    "label": label, "correct": correct, "counted": counted})
