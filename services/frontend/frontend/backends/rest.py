"""TF Serving over REST: POST /v1/models/<name>/versions/<v>:predict and GET /v1/models/<name> (status).

Spread over every replica like the gRPC backend (frontend.backends.replicas: the URL's host is resolved again
every `resolve_every_s`, calls go round-robin by address, a predict that finds a replica unreachable or answering
503 is made once more on another). A keep-alive requests.Session per thread, holding a connection per replica.
TF Serving's REST predict response does not say which version answered, so the frontend always asks for an exact
version: when routing gives none, the latest AVAILABLE version from the status endpoint (cached for `status_ttl_s`).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import requests
from requests.adapters import HTTPAdapter

from frontend.backends.base import (
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    BackendEvents,
    BackendResult,
    check_result,
    missing_from,
)
from frontend.backends.replicas import (
    DEFAULT_RESOLVE_EVERY_S,
    Replicas,
    Resolve,
    host_for_url,
    parse_rest_url,
    system_resolve,
)
from frontend.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError, ModelNotServed

CONNECT_TIMEOUT_S = 1.0
# requests keeps 10 connection pools per session by default, one per host: one per replica here.
POOLS_PER_SESSION = 256


class _Answered503(Exception):
    """A replica answered 503 (UNAVAILABLE): retried on another replica, and reported as 503 if that fails too."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _retryable(error: BaseException) -> bool:
    """The replica could not take the call: no connection (refused, reset, not made within the connect timeout;
    requests' ConnectTimeout is both a Timeout and a ConnectionError), or it answered 503. A read timeout is not
    retried: the deadline is spent."""
    if isinstance(error, _Answered503):
        return True
    return isinstance(error, requests.ConnectionError) and not isinstance(error, requests.ReadTimeout)


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

    def __init__(self, base_url: str, model: str, *, status_ttl_s: float = 2.0, resolve: Resolve = system_resolve,
                 resolve_every_s: float = DEFAULT_RESOLVE_EVERY_S, events: BackendEvents | None = None) -> None:
        try:
            self.host, self.port, self._prefix = parse_rest_url(base_url)
        except ValueError as exc:
            raise ConfigError(f"TF Serving REST URL {base_url!r}: {exc}") from None
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._local = threading.local()
        self._status_ttl_s = status_ttl_s
        self._latest: tuple[float, int] | None = None
        self._resolve = resolve
        self._resolve_every_s = resolve_every_s
        self.events = events or BackendEvents()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._replicas: Replicas[str] | None = None

    def replicas(self) -> Replicas[str]:
        """This process's replicas, each a base URL by address (made again after a fork, like the gRPC backend's)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._replicas = Replicas(
                        self.host, self.port, lambda address: f"http://{host_for_url(address)}:{self.port}{self._prefix}",
                        lambda url: None, resolve=self._resolve, resolve_every_s=self._resolve_every_s,
                        on_resolved=self.events.resolved, on_retry=self.events.retried)
                    self._pid = os.getpid()
        return self._replicas

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != os.getpid():
            session = requests.Session()
            session.trust_env = False  # never route loopback/cluster traffic through a proxy from the environment
            session.mount("http://", HTTPAdapter(pool_connections=POOLS_PER_SESSION))
            self._local.session = session
            self._local.pid = os.getpid()
        return session

    def _call(self, method: str, path: str, what: str, deadline: float, *, retry: bool = False, **kwargs) -> dict:
        """One call to `path` on the next replica; with `retry`, once more on another if that one is unavailable."""

        def send(base_url: str) -> requests.Response:
            timeout_s = max(deadline - time.monotonic(), 0.001)
            response = self._session().request(method, base_url + path,
                                               timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s), **kwargs)
            if response.status_code == 503:
                raise _Answered503(response)
            return response

        try:
            response = self.replicas().call(send, _retryable if retry else None)
        except _Answered503 as answered:
            response = answered.response
        except requests.Timeout:
            raise BackendTimeout(f"{what}: TF Serving did not answer in time") from None
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
        body = self._call("GET", f"/v1/models/{self.model}", f"status of model {self.model}",
                          time.monotonic() + timeout_s)
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
        path = f"/v1/models/{self.model}/versions/{version}:predict"
        payload = {"signature_name": SIGNATURE, "instances": images.tolist()}
        what = f"model {self.model} version {version}"
        body = self._call("POST", path, what, deadline, retry=True, json=payload)
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
        if self._replicas is not None and self._pid == os.getpid():
            self._replicas.close()
        self._pid = None
