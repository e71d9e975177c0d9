"""Application factory: `create_app(test_config=None)`; gunicorn runs `frontend.app:create_app()`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from frontend import api, body, compression, health, openapi, page
from frontend.backends import Backend
from frontend.config import load_from_env
from frontend.error_handlers import register_error_handlers
from frontend.state import get_state, init_state

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PREDICT_ENDPOINT = "api.predict"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The page loads only its own script and style: no CDN, no inline code.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}
SECURITY_HEADER_ITEMS = list(SECURITY_HEADERS.items())


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON through orjson: responses are encoded several times faster (they are plain dicts/lists)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default).decode("utf-8")

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def create_app(test_config: dict[str, Any] | None = None, backend: Backend | None = None) -> Flask:
    """Config from defaults, then the environment (MNIST_*), then `test_config`; `backend` overrides the built one."""
    app = Flask(__name__)
    # werkzeug answers `/v1//predict` with a 308 redirect and an HTML body; every path here is exact, so an odd
    # one is a JSON 404 like any other unknown path (set before the routes are added: each rule copies it).
    app.url_map.merge_slashes = False
    app.json = OrjsonProvider(app)
    app.config.update(load_from_env())
    if test_config:
        app.config.update(test_config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY_BYTES"]
    logging.getLogger("frontend").setLevel(str(app.config["LOG_LEVEL"]).upper())

    register_error_handlers(app)
    init_state(app, backend)
    for blueprint in (api.bp, health.bp, openapi.bp, page.bp):
        app.register_blueprint(blueprint)
    app.before_request(_start_request)
    app.after_request(_finish_request)

    app.wsgi_app = body.RequestBodyMiddleware(app.wsgi_app, lambda: app.config["MAX_BODY_BYTES"])
    if app.config["TRUST_PROXY"] > 0:
        hops = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app


def _start_request() -> None:
    g.started = time.perf_counter()
    offered = request.headers.get("X-Request-Id", "")
    g.request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
    body.raise_body_error(request)


def _finish_request(response: Response) -> Response:
    # These names are set nowhere else, so they are appended in one go (werkzeug's `headers[name] = value`
    # would scan the whole header list once per header).
    added: list[tuple[str, str]] = []
    request_id = getattr(g, "request_id", None)
    if request_id:
        added.append(("X-Request-Id", request_id))
    version = getattr(g, "version", None)
    if version is not None:
        added.append(("X-Model-Version", str(version)))
    decision = getattr(g, "decision", None)
    if decision is not None:
        added.append(("X-Model-Route", decision.route))
    # One clock reading serves the Server-Timing header and the latency histogram. The view sets g.outcome as
    # soon as the input parsed, before g.decision, so every routed request has it.
    outcome = getattr(g, "outcome", None)
    elapsed_s = None
    if outcome is not None:
        elapsed_s = time.perf_counter() - g.started
        added.append(("Server-Timing", server_timing(outcome.timings, elapsed_s)))
    if request.endpoint == PREDICT_ENDPOINT:
        _count_prediction(response.status_code, decision, version, elapsed_s)
    response.headers.extend(added + SECURITY_HEADER_ITEMS)
    return compression.compress_response(request, response)


def server_timing(timings: dict[str, float], total_s: float) -> str:
    """W3C Server-Timing: the frontend's stages and its whole time in the app, in ms (browsers' devtools show it;
    `app` minus `predict` is what the frontend itself adds)."""
    parts = [f"{name};dur={seconds * 1000:.3f}" for name, seconds in timings.items()]
    parts.append(f"app;dur={total_s * 1000:.3f}")
    return ", ".join(parts)


def _count_prediction(status: int, decision: Any, version: int | None, elapsed_s: float | None) -> None:
    """One count per predict request, in one place, whatever path (success or any error) it took."""
    metrics = get_state().metrics
    outcome = "ok" if status < 400 else "client_error" if status < 500 else "backend_error"
    if decision is None:
        labels = (metrics.model, "", "")
    else:
        shown = version if version is not None else decision.version
        labels = (metrics.model, "" if shown is None else str(shown), decision.route)
        metrics.latency.labels(*labels).observe(elapsed_s)
    metrics.predictions.labels(*labels, outcome).inc()
