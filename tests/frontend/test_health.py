"""GET /healthz, /readyz (backend reachable and routed versions available) and /metrics."""

from __future__ import annotations

from tests.frontend.helpers import routing, write_json_atomically


def test_healthz_is_always_ok(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_follows_the_routed_versions(make_app, good_models, tmp_path):
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(1, "stable", 90), (2, "canary", 10)], generation=5))
    app = make_app(MODEL_BASE_PATH=str(good_models.base_path), ROUTING_FILE=str(path))
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["versions"] == [1, 2] and ready.json["routing_generation"] == 5
    write_json_atomically(path, routing([(1, "stable", 90), (8, "canary", 10)], generation=6))
    client.get("/readyz")  # notices generation 6; the embedded backend prepares it before it is used
    app.extensions["mnist_frontend"].routing.preparing.join(60)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json["missing_versions"] == [8]
    assert not_ready.json["error"]["code"] == "versions_unavailable"


def test_readyz_without_models_is_503(client):
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["status"] == "not ready"


def test_readyz_empty_ok_is_ready_only_before_anything_is_routed_or_published(make_app, good_models, tmp_path):
    # The chart's probe (`/readyz?empty=ok`): a fresh install is ready with no version and no routing...
    fresh = make_app(ROUTING_FILE=str(tmp_path / "absent" / "routing.json")).test_client()
    assert fresh.get("/readyz").status_code == 503
    empty = fresh.get("/readyz?empty=ok")
    assert empty.status_code == 200 and empty.json["status"] == "ready but empty" and empty.json["versions"] == "default"
    assert fresh.get("/readyz?empty=yes").status_code == 503, "only the exact value relaxes readiness"
    # ...but not once a routing names a version that is not available (a rollout in progress must gate traffic)...
    path = tmp_path / "routing.json"
    write_json_atomically(path, routing([(8, "stable", 100)], strategy="single"))
    routed = make_app(MODEL_BASE_PATH=str(good_models.base_path), ROUTING_FILE=str(path)).test_client()
    missing = routed.get("/readyz?empty=ok")
    assert missing.status_code == 503 and missing.json["missing_versions"] == [8]
    # ...and a published version makes it plainly ready.
    published = make_app(MODEL_BASE_PATH=str(good_models.base_path)).test_client().get("/readyz?empty=ok")
    assert published.status_code == 200 and published.json["status"] == "ready"


def test_metrics_exposes_the_contract_series(client):
    text = client.get("/metrics").text
    for name in ("mnist_frontend_routing_generation", "mnist_frontend_routing_reload_errors_total"):
        assert f'{name}{{model="mnist"}}' in text
    for name in ("mnist_frontend_predictions_total", "mnist_frontend_prediction_latency_seconds",
                 "mnist_frontend_feedback_total", "mnist_frontend_shadow_comparisons_total",
                 "mnist_frontend_shadow_latency_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
