"""POST /v1/predict and /v1/feedback through the Flask test client, with the embedded backend on real models."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from frontend.state import get_state

from tests.frontend.helpers import InstantBackend, b64, metric_value, png_bytes, routing, write_json_atomically


@pytest.fixture
def digits(mnist_test):
    images, labels = mnist_test
    return images[:8], labels[:8]


def test_predict_instances_answers_every_image_with_version_route_and_request_id(model_app, digits, good_models):
    client = model_app.test_client()
    images, labels = digits
    response = client.post("/v1/predict", json={"instances": images.tolist()})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["model"] == good_models.name and body["route"] == "default"
    assert body["version"] == max(good_models.versions)  # no routing file: the latest version
    assert response.headers["X-Request-Id"] == body["request_id"]
    assert response.headers["X-Model-Version"] == str(body["version"])
    timing = dict(part.split(";dur=") for part in response.headers["Server-Timing"].split(", "))
    assert set(timing) == {"preprocess", "predict", "app"}
    assert 0 <= float(timing["predict"]) <= float(timing["app"]) and float(timing["preprocess"]) >= 0
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]  # appended once, not duplicated
    predictions = body["predictions"]
    assert len(predictions) == len(images)
    for p in predictions:
        assert len(p["probabilities"]) == 10 and abs(sum(p["probabilities"]) - 1) < 1e-3
        assert p["confidence"] == max(p["probabilities"]) and p["digit"] == int(np.argmax(p["probabilities"]))
    assert sum(p["digit"] == y for p, y in zip(predictions, labels, strict=True)) >= 5


def test_all_four_input_forms_agree(model_app, digits):
    client = model_app.test_client()
    image = digits[0][0]
    png = png_bytes(image)
    answers = [
        client.post("/v1/predict", json={"image": b64(png)}),
        client.post("/v1/predict", json={"images": ["data:image/png;base64," + b64(png)]}),
        client.post("/v1/predict", data={"file": (io.BytesIO(png), "d.png")}, content_type="multipart/form-data"),
        client.post("/v1/predict", data=png, content_type="image/png"),
        client.post("/v1/predict", json={"instances": [(image / 255.0).tolist()]}),
    ]
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json["predictions"][0]["digit"] for a in answers}) == 1


def test_request_id_is_honoured_when_sane(model_app, digits):
    client = model_app.test_client()
    payload = {"instances": digits[0][:1].tolist()}
    response = client.post("/v1/predict", json=payload, headers={"X-Request-Id": "abc-123"})
    assert response.json["request_id"] == "abc-123" and response.headers["X-Request-Id"] == "abc-123"
    response = client.post("/v1/predict", json=payload, headers={"X-Request-Id": "bad id\twith spaces"})
    assert response.json["request_id"] != "bad id\twith spaces" and len(response.json["request_id"]) == 32


def test_batch_limit_is_413(make_app, models):
    client = make_app(MODEL_BASE_PATH=str(models.base_path), MAX_BATCH=2).test_client()
    response = client.post("/v1/predict", json={"instances": [[[0] * 28] * 28] * 3})
    assert response.status_code == 413 and response.json["error"]["code"] == "batch_too_large"


def test_routing_file_picks_exact_versions_and_reloads_without_restart(make_app, models, tmp_path, digits):
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(1, "stable", 100)], strategy="single", generation=3))
    app = make_app(MODEL_BASE_PATH=str(models.base_path), ROUTING_FILE=str(path))
    client = app.test_client()
    payload = {"instances": digits[0][:1].tolist()}
    first = client.post("/v1/predict", json=payload)
    assert (first.json["version"], first.json["route"]) == (1, "stable")
    assert metric_value(client.get("/metrics").text, "mnist_frontend_routing_generation", model="mnist") == 3
    write_json_atomically(path, routing([(1, "stable", 0), (2, "canary", 100)], generation=4))
    # The embedded backend loads version 2 before the new config is used; meanwhile requests keep version 1.
    state = app.extensions["mnist_frontend"]
    during = client.post("/v1/predict", json=payload)
    state.routing.preparing.join(60)
    assert during.json["version"] in (1, 2) and 2 in state.backend._loaded
    second = client.post("/v1/predict", json=payload)
    assert (second.json["version"], second.json["route"]) == (2, "canary")
    path.write_text("{broken")
    third = client.post("/v1/predict", json=payload)
    assert third.json["version"] == 2  # the last good config stays
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_routing_reload_errors_total", model="mnist") == 1
    assert metric_value(metrics, "mnist_frontend_routing_generation", model="mnist") == 4


def test_sticky_header_keeps_a_user_on_one_version(make_app, models, tmp_path, digits):
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(1, "stable", 50), (2, "candidate", 50)], strategy="abtest",
                                        sticky="X-User-Id"))
    client = make_app(MODEL_BASE_PATH=str(models.base_path), ROUTING_FILE=str(path)).test_client()
    payload = {"instances": digits[0][:1].tolist()}
    seen_by_user = {}
    for user in [f"user-{i}" for i in range(12)] * 3:
        version = client.post("/v1/predict", json=payload, headers={"X-User-Id": user}).json["version"]
        seen_by_user.setdefault(user, set()).add(version)
    assert all(len(v) == 1 for v in seen_by_user.values())
    assert {next(iter(v)) for v in seen_by_user.values()} == {1, 2}


def test_shadow_copy_is_compared_and_caller_gets_the_primary(make_app, models, tmp_path, digits):
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(2, "stable", 100)], strategy="shadow", shadow={"version": 1, "percent": 100}))
    app = make_app(MODEL_BASE_PATH=str(models.base_path), ROUTING_FILE=str(path))
    client = app.test_client()
    for _ in range(3):
        response = client.post("/v1/predict", json={"instances": digits[0].tolist()})
        assert response.json["version"] == 2 and response.json["route"] == "stable"
    with app.app_context():
        get_state().shadow.drain()
    metrics = client.get("/metrics").text
    labels = {"model": "mnist", "primary_version": "2", "shadow_version": "1"}
    agree = metric_value(metrics, "mnist_frontend_shadow_comparisons_total", result="agree", **labels)
    disagree = metric_value(metrics, "mnist_frontend_shadow_comparisons_total", result="disagree", **labels)
    assert agree + disagree == 3 * len(digits[0]) and agree >= disagree
    assert metric_value(metrics, "mnist_frontend_shadow_latency_seconds_count", model="mnist", version="1") == 3


def test_unavailable_routed_version_is_503_and_counted_as_backend_error(make_app, models, tmp_path):
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(99, "stable", 100)], strategy="single"))
    client = make_app(MODEL_BASE_PATH=str(models.base_path), ROUTING_FILE=str(path)).test_client()
    response = client.post("/v1/predict", json={"instances": [[[0] * 28] * 28]})
    assert response.status_code == 503 and response.json["error"]["code"] == "backend_unavailable"
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_predictions_total", version="99", route="stable",
                        outcome="backend_error") == 1
    assert client.get("/readyz").status_code == 503


def test_prediction_metrics_count_requests_by_outcome(model_app, digits):
    client = model_app.test_client()
    client.post("/v1/predict", json={"instances": digits[0].tolist()})
    client.post("/v1/predict", json={"instances": "nope"})
    client.post("/v1/predict", data=b"x", content_type="text/plain")
    version = str(client.post("/v1/predict", json={"instances": digits[0][:1].tolist()}).json["version"])
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_predictions_total", version=version, route="default",
                        outcome="ok") == 2
    assert metric_value(metrics, "mnist_frontend_predictions_total", version="", route="",
                        outcome="client_error") == 2
    assert metric_value(metrics, "mnist_frontend_prediction_latency_seconds_count", version=version,
                        route="default") == 2


def test_feedback_by_token_and_by_request_id_counts_correct_and_wrong(make_app, models, digits):
    app = make_app(MODEL_BASE_PATH=str(models.base_path))
    client = app.test_client()
    body = client.post("/v1/predict", json={"instances": digits[0][:2].tolist()}).json
    version, request_id = str(body["version"]), body["request_id"]
    first, second = body["predictions"]
    # By token (works on any worker or pod sharing the key), for the second image of the batch.
    answer = client.post("/v1/feedback", json={"request_id": request_id, "index": 1, "label": second["digit"],
                                               "feedback_token": second["feedback_token"]})
    assert answer.status_code == 200 and answer.json["correct"] is True and answer.json["counted"] is True
    # By request id only (this worker remembers it), with a wrong label.
    wrong = (first["digit"] + 1) % 10
    answer = client.post("/v1/feedback", json={"request_id": request_id, "label": wrong})
    assert answer.json["correct"] is False and answer.json["counted"] is True
    # A repeat is accepted but not counted again.
    assert client.post("/v1/feedback", json={"request_id": request_id, "label": wrong}).json["counted"] is False
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_feedback_total", version=version, result="correct") == 1
    assert metric_value(metrics, "mnist_frontend_feedback_total", version=version, result="wrong") == 1


def test_feedback_token_from_another_worker_is_accepted(make_app, models, digits, tmp_path):
    key = tmp_path / "feedback.key"
    key.write_text("a-shared-secret-of-enough-length")
    one = make_app(MODEL_BASE_PATH=str(models.base_path), FEEDBACK_KEY_FILE=str(key)).test_client()
    other = make_app(MODEL_BASE_PATH=str(models.base_path), FEEDBACK_KEY_FILE=str(key)).test_client()
    body = one.post("/v1/predict", json={"instances": digits[0][:1].tolist()}).json
    prediction = body["predictions"][0]
    unknown = other.post("/v1/feedback", json={"request_id": body["request_id"], "label": 3})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_prediction"
    answer = other.post("/v1/feedback", json={"request_id": body["request_id"], "label": prediction["digit"],
                                              "feedback_token": prediction["feedback_token"]})
    assert answer.status_code == 200 and answer.json["version"] == body["version"]


def test_workers_sharing_a_claims_file_count_a_replayed_feedback_once(make_app, models, digits, tmp_path):
    shared = {"MODEL_BASE_PATH": str(models.base_path), "FEEDBACK_KEY_FILE": str(tmp_path / "feedback.key"),
              "FEEDBACK_CLAIMS_FILE": str(tmp_path / "claims.sqlite")}
    (tmp_path / "feedback.key").write_text("a-shared-secret-of-enough-length")
    one, other = make_app(**shared).test_client(), make_app(**shared).test_client()
    body = one.post("/v1/predict", json={"instances": digits[0][:2].tolist()}).json
    feedback = [{"request_id": body["request_id"], "index": i, "label": p["digit"], "feedback_token": p["feedback_token"]}
                for i, p in enumerate(body["predictions"])]
    counted = [client.post("/v1/feedback", json=feedback[0]).json["counted"] for client in (other, one, other)]
    assert counted == [True, False, False]
    assert one.post("/v1/feedback", json=feedback[1]).json["counted"] is True  # another image of the batch


def test_an_unusable_claims_file_still_counts_feedback_and_says_so_in_metrics(make_app, models, digits, tmp_path):
    client = make_app(MODEL_BASE_PATH=str(models.base_path),
                      FEEDBACK_CLAIMS_FILE=str(tmp_path / "no-such-dir" / "claims.sqlite")).test_client()
    body = client.post("/v1/predict", json={"instances": digits[0][:1].tolist()}).json
    prediction = body["predictions"][0]
    feedback = {"request_id": body["request_id"], "label": prediction["digit"],
                "feedback_token": prediction["feedback_token"]}
    assert [client.post("/v1/feedback", json=feedback).json["counted"] for _ in range(2)] == [True, False]
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_feedback_claim_errors_total", model="mnist") == 2
    assert metric_value(metrics, "mnist_frontend_feedback_total", version=str(body["version"]), result="correct") == 1


@pytest.mark.parametrize("payload, code", [
    ({"label": 3}, "invalid_input"),
    ({"request_id": "r", "label": 10}, "invalid_input"),
    ({"request_id": "r", "label": True}, "invalid_input"),
    ({"request_id": "r", "label": 3, "index": -1}, "invalid_input"),
    ({"request_id": "r", "label": 3, "feedback_token": 5}, "invalid_input"),
    ({"request_id": "r", "label": 3, "feedback_token": "v1.1.3.0.forged"}, "invalid_input"),
    ([1, 2], "invalid_input"),
])
def test_bad_feedback_is_a_4xx(client, payload, code):
    response = client.post("/v1/feedback", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == code


def test_feedback_needs_json(client):
    assert client.post("/v1/feedback", data="x", content_type="text/plain").status_code == 415
    assert client.post("/v1/feedback", data="{", content_type="application/json").status_code == 400


def test_random_garbage_never_gives_a_500(model_app):
    client = model_app.test_client()
    rng = random.Random(7)
    for _ in range(60):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        content_type = rng.choice(["application/json", "image/png", "image/jpeg", "multipart/form-data",
                                   "multipart/form-data; boundary=zz", "text/plain", ""])
        response = client.post(rng.choice(["/v1/predict", "/v1/feedback"]), data=body, content_type=content_type)
        assert response.status_code < 500 and "error" in response.json


def test_two_predictions_with_one_request_id_each_count_their_feedback(make_app):
    # The request id is the caller's (tracing) and may repeat; feedback is counted per prediction, server-made.
    client = make_app(backend=InstantBackend(digit=3)).test_client()
    headers = {"X-Request-Id": "client-chosen-1"}
    bodies = [client.post("/v1/predict", json={"instances": [[[0] * 28] * 28]}, headers=headers).json
              for _ in range(2)]
    assert [b["request_id"] for b in bodies] == ["client-chosen-1"] * 2
    tokens = [b["predictions"][0]["feedback_token"] for b in bodies]
    assert tokens[0] != tokens[1]
    answers = [client.post("/v1/feedback", json={"request_id": "client-chosen-1", "label": 3,
                                                 "feedback_token": token}).json for token in tokens]
    assert [a["counted"] for a in answers] == [True, True]
    repeat = client.post("/v1/feedback", json={"request_id": "client-chosen-1", "label": 3,
                                               "feedback_token": tokens[1]}).json
    assert repeat["counted"] is False
    # Without a token, the request id names the latest prediction made with it: already counted above.
    assert client.post("/v1/feedback", json={"request_id": "client-chosen-1", "label": 3}).json["counted"] is False
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "mnist_frontend_feedback_total", version="1", result="correct") == 2


def test_images_over_the_request_pixel_budget_are_413_before_decoding(make_app):
    client = make_app(backend=InstantBackend(), MAX_REQUEST_PIXELS=10_000_000).test_client()
    picture = png_bytes(np.full((2000, 2000), 255, np.uint8))  # 4 M pixels each
    response = client.post("/v1/predict", json={"images": [b64(picture)] * 3})
    assert response.status_code == 413 and "12000000 pixels together" in response.json["error"]["message"]


def test_a_full_decode_budget_is_a_503_to_retry_and_an_impossible_image_a_413(make_app):
    app = make_app(backend=InstantBackend(), DECODE_MEMORY_BYTES=8 * 2**20, BACKEND_TIMEOUT_S=0.1)
    client = app.test_client()
    picture = png_bytes(np.eye(200, dtype=np.uint8) * 255)
    with app.app_context():
        budget = get_state().limits.decode_budget
    with budget.reserve(budget.capacity):  # other threads of the worker are decoding
        response = client.post("/v1/predict", data=picture, content_type="image/png")
    assert response.status_code == 503 and response.json["error"]["code"] == "server_busy"
    assert response.headers["Retry-After"] == "1"
    assert client.post("/v1/predict", data=picture, content_type="image/png").status_code == 200
    huge = png_bytes(np.zeros((1500, 1500, 4), np.uint8), mode="RGBA")  # 6 bytes a pixel: 12.9 MiB to decode
    response = client.post("/v1/predict", data=huge, content_type="image/png")
    assert response.status_code == 413 and "decodes at most 8.0 MiB" in response.json["error"]["message"]
