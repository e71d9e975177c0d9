"""GET /healthz (alive), GET /readyz (backend reachable, routed versions available), GET /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from frontend.errors import BackendError, ModelNotServed
from frontend.state import get_state

bp = Blueprint("health", __name__)
READY_TIMEOUT_S = 2.0
# `/readyz?empty=ok`: a fresh install (no routing written, no version anywhere) counts as ready. The chart's probe
# asks this way so that `helm install --wait` and Argo CD's health check finish before the first model is trained
# (by a post-install hook, which runs only after the wait); predictions answer 503 until a version serves.
EMPTY_OK = "ok"


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    state = get_state()
    routing = state.current_routing()
    wanted = routing.versions if routing is not None else set()
    timeout = min(READY_TIMEOUT_S, state.config["BACKEND_TIMEOUT_S"])
    empty_ok = routing is None and request.args.get("empty") == EMPTY_OK
    try:
        missing = state.backend.missing_versions(wanted, timeout)
    except BackendError as error:
        if not (empty_ok and isinstance(error, ModelNotServed)):
            response = jsonify({"status": "not ready", "error": {"code": error.code, "message": error.message}})
            response.status_code = 503
            return response
        # TF Serving answers but has no such model yet (its initial config is an empty list): no version at all.
        missing = {0}
    body = {"status": "ready" if not missing else "not ready", "backend": state.backend.kind,
            "routing_generation": routing.generation if routing is not None else None,
            "versions": sorted(wanted) if wanted else "default"}
    if missing == {0} and empty_ok:
        body["status"] = "ready but empty"
        return jsonify(body)
    if missing:
        body["missing_versions"] = sorted(missing - {0})
        body["error"] = {"code": "versions_unavailable",
                         "message": "no model version is available" if missing == {0}
                         else f"routed versions not available: {sorted(missing)}"}
    response = jsonify(body)
    response.status_code = 503 if missing else 200
    return response


@bp.get("/metrics")
def metrics() -> Response:
    return Response(get_state().metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)
