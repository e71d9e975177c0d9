"""GET /: the draw-a-digit page (static files served by Flask from frontend/static, no external network)."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from frontend.state import get_state

bp = Blueprint("page", __name__)


@bp.get("/")
def index() -> Response:
    state = get_state()
    return Response(render_template("index.html", keys_required=state.api_keys is not None,
                                    model=state.metrics.model), mimetype="text/html")
