"""Domain errors, defined once. They know nothing of HTTP: frontend.error_handlers maps them to status codes."""

from __future__ import annotations


class FrontendError(Exception):
    """Base of every error the frontend reports to a caller; `code` is the stable machine-readable name."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FrontendError):
    """A setting or config file is unusable (raised at start, or kept out by the reloaders)."""

    code = "config_error"


# --- the caller's mistakes (4xx) ------------------------------------------------------------------------------------
class InvalidInput(FrontendError):
    code = "invalid_input"


class InvalidJSON(InvalidInput):
    code = "invalid_json"


class InvalidImage(InvalidInput):
    code = "invalid_image"


class PayloadTooLarge(FrontendError):
    code = "payload_too_large"


class BatchTooLarge(PayloadTooLarge):
    code = "batch_too_large"


class UnsupportedMediaType(FrontendError):
    code = "unsupported_media_type"


class Unauthorized(FrontendError):
    code = "unauthorized"


class Forbidden(FrontendError):
    code = "forbidden"


class UnknownPrediction(FrontendError):
    """Feedback for a request id this frontend cannot vouch for (unknown here and no valid token)."""

    code = "unknown_prediction"


# --- the frontend's own limits (5xx, retry) --------------------------------------------------------------------------
class ServerBusy(FrontendError):
    """This worker's budget for decoding images stayed full for the whole wait: try again shortly."""

    code = "server_busy"


# --- the backend's trouble (5xx) ------------------------------------------------------------------------------------
class BackendError(FrontendError):
    """The backend answered, but with an error that is not the caller's fault."""

    code = "backend_error"


class BackendUnavailable(BackendError):
    """The backend cannot be reached, or the requested model version is not loaded there."""

    code = "backend_unavailable"


class ModelNotServed(BackendUnavailable):
    """TF Serving answers, but does not serve that model or version (NOT_FOUND / 404): e.g. nothing loaded yet."""


class BackendTimeout(BackendError):
    code = "backend_timeout"
