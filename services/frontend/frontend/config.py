"""Every setting of the frontend, as data: environment variable, Flask config key, type, default, meaning.

`ENV_SETTINGS` is the single list others (the chart, the docs test, the CLI) import. `load_from_env()` turns an
environment into a config dict; `create_app(test_config)` layers a test dict on top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from frontend.errors import ConfigError


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _backend(text: str) -> str:
    if text not in BACKENDS:
        raise ValueError(f"must be one of {', '.join(BACKENDS)}, got {text!r}")
    return text


def _optional_str(text: str) -> str | None:
    return text or None


def _grpc_target(text: str) -> str:
    from frontend.backends.replicas import parse_grpc_target

    parse_grpc_target(text)
    return text


def _rest_url(text: str) -> str:
    from frontend.backends.replicas import parse_rest_url

    parse_rest_url(text)
    return text


BACKENDS = ("embedded", "grpc", "rest")


@dataclass(frozen=True)
class Setting:
    """One environment variable and the config key it fills."""

    env: str
    key: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    flag: str | None = None  # the mnist-frontend flag that mirrors it, if any


ENV_SETTINGS: tuple[Setting, ...] = (
    Setting("MNIST_BACKEND", "BACKEND", "embedded", _backend,
            "How predictions are computed: `embedded` (SavedModels in-process), `grpc` or `rest` (TF Serving).",
            "--backend"),
    Setting("MNIST_MODEL_NAME", "MODEL_NAME", "mnist", str, "Model name at TF Serving and in metrics.", "--model-name"),
    Setting("MNIST_MODEL_BASE_PATH", "MODEL_BASE_PATH", "models/mnist", str,
            "Directory of integer version dirs (embedded backend only).", "--model-base-path"),
    Setting("MNIST_SERVING_GRPC", "SERVING_GRPC", "127.0.0.1:8500", _grpc_target,
            "TF Serving gRPC target `host:port` (or `dns:///host:port`). The host is resolved to every address it "
            "has (a headless Service: one per ready pod) and calls are spread over them.", "--serving-grpc"),
    Setting("MNIST_SERVING_REST", "SERVING_REST", "http://127.0.0.1:8501", _rest_url,
            "TF Serving REST base URL `http://host:port`; its host is spread over like the gRPC target's.",
            "--serving-rest"),
    Setting("MNIST_SERVING_RESOLVE_S", "SERVING_RESOLVE_S", 10.0, _positive_float,
            "How often (seconds) the TF Serving host is resolved again, so that replicas added or removed behind "
            "it get or lose traffic; also about 1 s after a call found a replica unavailable."),
    Setting("MNIST_ROUTING_FILE", "ROUTING_FILE", None, _optional_str,
            "Routing config JSON (a mounted ConfigMap); reloaded on change. Unset: every request goes to the "
            "version the backend serves by default (its latest).", "--routing-file"),
    Setting("MNIST_ROUTING_CHECK_S", "ROUTING_CHECK_S", 1.0, _positive_float,
            "At most how often (seconds) the routing file and the API key file are checked for changes."),
    Setting("MNIST_API_KEYS_FILE", "API_KEYS_FILE", None, _optional_str,
            "File of hashed API keys (`sha256:<hex> [name]` per line). Unset: the API is open (warned once).",
            "--api-keys-file"),
    Setting("MNIST_FEEDBACK_KEY_FILE", "FEEDBACK_KEY_FILE", None, _optional_str,
            "Secret used to sign feedback tokens; the same file on every pod lets any pod accept any token. "
            "Unset: a random key per gunicorn master (tokens then verify only within that master's workers)."),
    Setting("MNIST_FEEDBACK_TTL_S", "FEEDBACK_TTL_S", 86400.0, _positive_float,
            "How long a prediction can receive feedback (token lifetime and in-memory store TTL)."),
    Setting("MNIST_FEEDBACK_STORE_SIZE", "FEEDBACK_STORE_SIZE", 100_000, _positive_int,
            "Predictions remembered per worker for token-less feedback (LRU), and feedback claims kept (below)."),
    Setting("MNIST_FEEDBACK_CLAIMS_FILE", "FEEDBACK_CLAIMS_FILE", None, _optional_str,
            "SQLite file in which the workers of one pod record the feedback they counted, so feedback replayed to "
            "another worker counts once. gunicorn sets it to a file in its metrics directory when unset. Unset "
            "outside gunicorn: each worker keeps its own record."),
    Setting("MNIST_MAX_BATCH", "MAX_BATCH", 64, _positive_int, "Most images in one request (413 above)."),
    Setting("MNIST_MAX_BODY_BYTES", "MAX_BODY_BYTES", 8 * 1024 * 1024, _positive_int,
            "Largest request body, after gzip decompression (413 above)."),
    Setting("MNIST_MAX_IMAGE_PIXELS", "MAX_IMAGE_PIXELS", 16_000_000, _positive_int,
            "Largest image (width x height, from its header) accepted (413 above): refuses image bombs before "
            "decoding."),
    Setting("MNIST_MAX_REQUEST_PIXELS", "MAX_REQUEST_PIXELS", 32_000_000, _positive_int,
            "Most pixels of all images of one request together, checked from their headers before any is decoded "
            "(413 above): bounds the CPU time of one request."),
    Setting("MNIST_DECODE_MEMORY_BYTES", "DECODE_MEMORY_BYTES", 48 * 1024 * 1024, _positive_int,
            "Memory per worker for images being decoded, shared by its threads. An image needing more is refused "
            "(413); one that does not fit now waits up to MNIST_BACKEND_TIMEOUT_S, then gets 503 server_busy."),
    Setting("MNIST_HEADER_TIMEOUT_S", "HEADER_TIMEOUT_S", 10.0, _positive_float,
            "Deadline for a request's line and headers, from its first byte (or from the connection's start); "
            "past it the client gets 408 and the connection is closed."),
    Setting("MNIST_BODY_TIMEOUT_S", "BODY_TIMEOUT_S", 30.0, _positive_float,
            "Deadline for a request's body, from the end of its headers; past it the client gets 408."),
    Setting("MNIST_RECEIVE_BUFFER_BYTES", "RECEIVE_BUFFER_BYTES", 16 * 1024 * 1024, _positive_int,
            "Memory per worker for requests still being received, beyond the first 16 KiB of each connection; a "
            "request that does not fit gets 503 server_busy."),
    Setting("MNIST_BACKEND_TIMEOUT_S", "BACKEND_TIMEOUT_S", 5.0, _positive_float,
            "Deadline of one backend call; past it the caller gets 504."),
    Setting("MNIST_SHADOW_WORKERS", "SHADOW_WORKERS", 2, _positive_int, "Threads per worker sending shadow copies."),
    Setting("MNIST_SHADOW_QUEUE", "SHADOW_QUEUE", 64, _positive_int,
            "Shadow copies queued or running per worker; beyond it copies are dropped and counted, never waited for."),
    Setting("MNIST_TRUST_PROXY", "TRUST_PROXY", 0, int,
            "Number of proxies (the ingress) whose X-Forwarded-For/-Proto/-Host are honoured; 0 trusts none."),
    Setting("MNIST_BIND", "BIND", "0.0.0.0:8080", str, "gunicorn listen address.", "--bind"),
    Setting("MNIST_WORKERS", "WORKERS", 2, _positive_int, "gunicorn worker processes.", "--workers"),
    Setting("MNIST_THREADS", "THREADS", 8, _positive_int, "Threads per gunicorn worker (gthread).", "--threads"),
    Setting("MNIST_GRACEFUL_TIMEOUT_S", "GRACEFUL_TIMEOUT_S", 30, _positive_int,
            "Seconds gunicorn gives in-flight requests after SIGTERM."),
    Setting("MNIST_ACCESS_LOG", "ACCESS_LOG", True, _bool, "JSON access log lines on stdout."),
    Setting("MNIST_LOG_LEVEL", "LOG_LEVEL", "info", str, "Log level of the app and gunicorn."),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in ENV_SETTINGS}


def defaults() -> dict[str, Any]:
    return {s.key: s.default for s in ENV_SETTINGS}


def load_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Config dict from defaults and environment; a bad value raises ConfigError naming the variable."""
    environ = os.environ if environ is None else environ
    config = defaults()
    for setting in ENV_SETTINGS:
        raw = environ.get(setting.env)
        if raw is None:
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={raw!r}: {exc}") from None
    return config
