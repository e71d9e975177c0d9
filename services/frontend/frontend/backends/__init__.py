"""Backends behind one interface (frontend.backends.base.Backend), chosen by MNIST_BACKEND."""

from __future__ import annotations

from typing import Any

from frontend.backends.base import Backend, BackendEvents, BackendResult
from frontend.errors import ConfigError

__all__ = ["Backend", "BackendEvents", "BackendResult", "make_backend"]


def make_backend(config: dict[str, Any], events: BackendEvents | None = None) -> Backend:
    kind = config["BACKEND"]
    if kind == "grpc":
        from frontend.backends.grpc_backend import GrpcBackend

        return GrpcBackend(config["SERVING_GRPC"], config["MODEL_NAME"], resolve_every_s=config["SERVING_RESOLVE_S"],
                           events=events)
    if kind == "rest":
        from frontend.backends.rest import RestBackend

        return RestBackend(config["SERVING_REST"], config["MODEL_NAME"], resolve_every_s=config["SERVING_RESOLVE_S"],
                           events=events)
    if kind == "embedded":
        from frontend.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(config["MODEL_BASE_PATH"], threads=max(2, config["THREADS"]))
    raise ConfigError(f"unknown backend {kind!r}")
