"""Real MNIST test digits sent as PNG images through the frontend's API, true labels sent back as feedback.

Bounded in rate, count and time, and only ever to a loopback address.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image


def require_loopback(url: str) -> None:
    """Refuse any URL that does not point at this machine (the demo never sends traffic elsewhere)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"traffic goes to loopback addresses only, not {host!r}")


def png_bytes(digit: np.ndarray) -> bytes:
    """One 28x28 uint8 MNIST digit (white on black) as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(digit, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Digit:
    """A test digit ready to send: the request body (base64 PNG) and its true label."""

    image_b64: str
    label: int


def load_test_digits(npz_path: Path, count: int, seed: int = 0) -> list[Digit]:
    """count digits drawn (seeded) from x_test/y_test, encoded once up front."""
    with np.load(npz_path) as data:
        x_test, y_test = data["x_test"], data["y_test"]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x_test), size=min(count, len(x_test)), replace=False)
    return [Digit(base64.b64encode(png_bytes(x_test[i])).decode("ascii"), int(y_test[i])) for i in picks]


def answer_version(body: Mapping, headers: Mapping[str, str]) -> str:
    """The model version that answered, as the frontend reports it (header first, then body)."""
    for header in ("X-Model-Version", "x-model-version"):
        if header in headers:
            return str(headers[header])
    value = body.get("version")
    return "" if value is None else str(value)


def answer_request_id(body: Mapping, headers: Mapping[str, str]) -> str | None:
    """The request id the frontend gave this prediction (needed to send feedback)."""
    for header in ("X-Request-Id", "x-request-id"):
        if header in headers:
            return headers[header]
    value = body.get("request_id")
    return str(value) if value is not None else None


@dataclass
class TrafficStats:
    """What the generator saw, from the caller's side; safe to read while traffic runs (take `snapshot()`)."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_version: Counter = field(default_factory=Counter)
    lost: int = 0  # no HTTP answer at all: connection refused/reset or timeout
    feedback_sent: int = 0
    feedback_failed: int = 0
    correct_by_version: Counter = field(default_factory=Counter)  # predicted digit == true label
    feedback_by_version: Counter = field(default_factory=Counter)  # feedback the frontend counted
    last_error: str | None = None

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def snapshot(self) -> TrafficStats:
        return TrafficStats(
            sent=self.sent,
            statuses=Counter(self.statuses),
            by_version=Counter(self.by_version),
            lost=self.lost,
            feedback_sent=self.feedback_sent,
            feedback_failed=self.feedback_failed,
            correct_by_version=Counter(self.correct_by_version),
            feedback_by_version=Counter(self.feedback_by_version),
            last_error=self.last_error,
        )


class TrafficGenerator:
    """Paced worker threads cycling through digits; stops at max_requests, max_seconds, or stop()."""

    def __init__(
        self,
        base_url: str,
        digits: Sequence[Digit],
        *,
        rate_per_s: float = 20.0,
        max_requests: int = 100_000,
        max_seconds: float = 3600.0,
        concurrency: int = 4,
        timeout_s: float = 10.0,
        send_feedback: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        require_loopback(base_url)
        if not digits:
            raise ValueError("no digits to send")
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.base_url = base_url.rstrip("/")
        self.digits = list(digits)
        self.rate_per_s = rate_per_s
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.send_feedback = send_feedback
        self.headers = dict(headers or {})
        self.stats = TrafficStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def start(self) -> TrafficGenerator:
        self._t0 = time.monotonic()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._worker, name=f"traffic-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float | None = None) -> TrafficStats:
        """Stop sending; requests in flight finish (wait up to timeout_s, default the request timeout + 1 s)."""
        self._stop.set()
        deadline = time.monotonic() + (self.timeout_s + 1.0 if timeout_s is None else timeout_s)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.snapshot()

    def join(self, timeout_s: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def snapshot(self) -> TrafficStats:
        with self._lock:
            return self.stats.snapshot()

    def _claim(self) -> int | None:
        """The next request's index, once its time slot has come; None when the budget is spent."""
        with self._lock:
            index = self._next
            if index >= self.max_requests:
                return None
            self._next += 1
        due = self._t0 + index / self.rate_per_s
        if due - self._t0 > self.max_seconds:
            return None
        while not self._stop.is_set():
            delay = due - time.monotonic()
            if delay <= 0:
                return index
            self._stop.wait(min(delay, 0.25))
        return None

    def _worker(self) -> None:
        with requests.Session() as session:
            session.headers.update(self.headers)
            while not self._stop.is_set():
                index = self._claim()
                if index is None:
                    return
                self._send_one(session, self.digits[index % len(self.digits)])

    def _send_one(self, session: requests.Session, digit: Digit) -> None:
        try:
            response = session.post(
                f"{self.base_url}/v1/predict", json={"image": digit.image_b64}, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            with self._lock:
                self.stats.sent += 1
                self.stats.lost += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return
        body: Mapping = {}
        try:
            parsed = response.json()
            body = parsed if isinstance(parsed, Mapping) else {}
        except ValueError:
            pass
        version = answer_version(body, response.headers) if response.ok else ""
        with self._lock:
            self.stats.sent += 1
            self.stats.statuses[response.status_code] += 1
            if response.ok:
                self.stats.by_version[version] += 1
                if predicted_digit(body) == digit.label:
                    self.stats.correct_by_version[version] += 1
            elif response.status_code >= 500:
                self.stats.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        if response.ok and self.send_feedback:
            request_id = answer_request_id(body, response.headers)
            self._feedback(session, request_id, feedback_token(body), digit.label, version)

    def _feedback(
        self, session: requests.Session, request_id: str | None, token: str | None, label: int, version: str
    ) -> None:
        ok = counted = False
        if request_id is not None:
            payload: dict = {"request_id": request_id, "label": label}
            if token is not None:
                # The signed token lets whichever gunicorn worker receives the feedback count it.
                payload["feedback_token"] = token
            try:
                answer = session.post(f"{self.base_url}/v1/feedback", json=payload, timeout=self.timeout_s)
                ok = answer.ok
                # The frontend counts the first feedback per prediction only; it says so in `counted`.
                counted = ok and _json_field(answer, "counted", True) is not False
            except requests.RequestException:
                ok = False
        with self._lock:
            self.stats.feedback_sent += 1
            if not ok:
                self.stats.feedback_failed += 1
            if counted:
                self.stats.feedback_by_version[version] += 1


def _json_field(response: requests.Response, key: str, default=None):
    try:
        body = response.json()
    except ValueError:
        return default
    return body.get(key, default) if isinstance(body, Mapping) else default


def _first_prediction(body: Mapping) -> Mapping | None:
    items = body.get("predictions")
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return items[0]
    return None


def feedback_token(body: Mapping) -> str | None:
    """The signed feedback token of the first prediction, when the frontend gave one."""
    first = _first_prediction(body)
    token = first.get("feedback_token") if first is not None else None
    return token if isinstance(token, str) else None


def predicted_digit(body: Mapping) -> int | None:
    """The digit of the first (only) prediction in a /v1/predict answer."""
    first = _first_prediction(body)
    return int(first["digit"]) if first is not None and "digit" in first else None
