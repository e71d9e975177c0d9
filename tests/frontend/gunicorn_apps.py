"""App factories for real gunicorn in tests (`gunicorn ... tests.frontend.gunicorn_apps:instant_app()`)."""

from __future__ import annotations

from flask import Flask


def instant_app() -> Flask:
    """The real app with a backend that answers at once: the HTTP server and the frontend's own work, no model."""
    from frontend.app import create_app

    from tests.frontend.helpers import InstantBackend

    return create_app(backend=InstantBackend())
