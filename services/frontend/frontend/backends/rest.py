"""TF Serving over REST: POST /v1/models/<name>/versions/<v>:predict and GET /v1/models/<name> (status).

A keep-alive requests.Session per thread. TF Serving's REST predict response does not say which version
answered, so the frontend always asks for an exact version: when routing gives none, the latest AVAILABLE
version from the status endpoint (cached for `status_ttl_s`).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import requests

from frontend.backends.base import (
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    BackendResult,
    check_result,
    missing_from,
)
from frontend.errors import BackendError, BackendTimeout, BackendUnavailable, ModelNotServed

CONNECT_TIMEOUT_S = 1.0


def tf_error_message(response: requests.Response) -> str:
    """TF Serving's error body is {"error": "..."}; anything else is shown briefly as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:300]
    return str(body)[:200]


class RestBackend:
    kind = "rest"

    def __init__(self, base_url: str, model: str, *, status_ttl_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._local = threading.local()
        self._status_ttl_s = status_ttl_s
        self._latest: tuple[float, int] | None = None

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never route loopback/cluster traffic through a proxy from the environment
            self._local.session = session
        return session

    def _call(self, method: str, url: str, what: str, timeout_s: float, **kwargs) -> dict:
        try:
            response = self._session().request(method, url, timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
                                               **kwargs)
        except requests.Timeout:
            raise BackendTimeout(f"{what}: TF Serving did not answer within {timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            raise BackendUnavailable(f"{what}: TF Serving is unreachable ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise BackendError(f"{what}: {type(exc).__name__}") from None
        if response.status_code == 404:
            raise ModelNotServed(f"{what}: not available at TF Serving ({tf_error_message(response)})")
        if response.status_code == 503:
            raise BackendUnavailable(f"{what}: TF Serving is unavailable ({tf_error_message(response)})")
        if response.status_code == 504:
            raise BackendTimeout(f"{what}: TF Serving timed out ({tf_error_message(response)})")
        if response.status_code != 200:
            raise BackendError(f"{what}: TF Serving answered {response.status_code}: {tf_error_message(response)}")
        try:
            body = response.json()
        except ValueError:
            raise BackendError(f"{what}: TF Serving's answer is not JSON") from None
        if not isinstance(body, dict):
            raise BackendError(f"{what}: TF Serving's answer is not a JSON object")
        return body

    def available_versions(self, timeout_s: float) -> set[int]:
        body = self._call("GET", f"{self.base_url}/v1/models/{self.model}", f"status of model {self.model}", timeout_s)
        versions = set()
        for entry in body.get("model_version_status") or []:
            if isinstance(entry, dict) and entry.get("state") == "AVAILABLE":
                try:
                    versions.add(int(entry.get("version")))
                except (TypeError, ValueError):
                    continue
        return versions

    def _latest_version(self, timeout_s: float) -> int:
        now = time.monotonic()
        if self._latest is not None and now - self._latest[0] < self._status_ttl_s:
            return self._latest[1]
        available = self.available_versions(timeout_s)
        if not available:
            raise BackendUnavailable(f"model {self.model} has no AVAILABLE version at TF Serving")
        self._latest = (now, max(available))
        return self._latest[1]

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float) -> BackendResult:
        deadline = time.monotonic() + timeout_s
        if version is None:
            version = self._latest_version(timeout_s)
        url = f"{self.base_url}/v1/models/{self.model}/versions/{version}:predict"
        payload = {"signature_name": SIGNATURE, "instances": images.tolist()}
        what = f"model {self.model} version {version}"
        remaining = max(deadline - time.monotonic(), 0.001)
        body = self._call("POST", url, what, remaining, json=payload)
        predictions = body.get("predictions")
        if not isinstance(predictions, list):
            raise BackendError(f"{what}: answer has no 'predictions' list")
        try:
            probabilities = np.asarray([p[OUTPUT_PROBABILITIES] for p in predictions], dtype=np.float32)
            digits = np.asarray([p[OUTPUT_DIGIT] for p in predictions], dtype=np.int64)
        except (TypeError, KeyError, ValueError):
            raise BackendError(f"{what}: predictions lack {OUTPUT_PROBABILITIES}/{OUTPUT_DIGIT}") from None
        return check_result(probabilities, digits, len(images), version)

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        return missing_from(self.available_versions(timeout_s), wanted)

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
