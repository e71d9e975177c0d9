"""Feedback on earlier predictions: tokens any worker or pod can verify, and each worker's memory of answers.

Each prediction carries a `feedback_token`: HMAC-SHA256 over (model, request id, prediction id, index, version,
digit, issue time) with a key every pod shares (MNIST_FEEDBACK_KEY_FILE). Whichever worker receives the feedback
verifies the token and counts correct/wrong against the version that answered. Feedback with only a request id
still works when it reaches the worker that made the prediction (a bounded LRU store with a TTL per worker).

The request id is the caller's (X-Request-Id, for tracing), so two predictions may share it. What feedback is
counted against is the prediction id, which the server makes for every prediction and carries in the token.
Which feedback was already counted is decided by frontend.claims: once per pod under gunicorn (the workers share
a file), else once per worker (`AnswerStore.claim`); a replay to another pod is the residual risk.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_VERSION = "v2"
# Tokens of the previous release (no prediction id: the request id stood in for it), accepted for their lifetime
# so that feedback sent during a rolling update still counts.
LEGACY_TOKEN_VERSION = "v1"
PREDICTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Answer:
    """What the frontend told the caller for one image: enough to judge feedback later."""

    model: str
    version: int
    digit: int
    issued: int  # unix seconds
    prediction: str  # the server's id of the prediction (one per request): feedback is counted once per (id, index)


def new_prediction_id() -> str:
    """96 random bits, URL-safe and dot-free (it is one field of the token)."""
    return secrets.token_urlsafe(12)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(key: bytes, request_id: str, index: int, answer: Answer, token_version: str = TOKEN_VERSION) -> str:
    fields = [token_version, answer.model, request_id, str(index), str(answer.version), str(answer.digit),
              str(answer.issued)]
    if token_version == TOKEN_VERSION:
        fields.insert(3, answer.prediction)
    message = "\n".join(fields).encode("utf-8", "surrogatepass")
    return _b64(hmac.digest(key, message, "sha256"))  # one-shot: OpenSSL's fast path, no HMAC object


def sign(key: bytes, request_id: str, index: int, answer: Answer) -> str:
    """Token `v2.<prediction id>.<version>.<digit>.<issued>.<mac>`: readable parts, authenticated by the mac."""
    mac = _signature(key, request_id, index, answer)
    return f"{TOKEN_VERSION}.{answer.prediction}.{answer.version}.{answer.digit}.{answer.issued}.{mac}"


def verify(key: bytes, token: str, request_id: str, index: int, model: str, now: float, ttl_s: float) -> Answer | None:
    """The answer a token vouches for, or None when it is malformed, forged, for another request, or expired."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) == 6 and parts[0] == TOKEN_VERSION and PREDICTION_ID.match(parts[1]):
        prediction, fields = parts[1], parts[2:5]
    elif len(parts) == 5 and parts[0] == LEGACY_TOKEN_VERSION:
        prediction, fields = request_id, parts[1:4]
    else:
        return None
    try:
        answer = Answer(model=model, version=int(fields[0]), digit=int(fields[1]), issued=int(fields[2]),
                        prediction=prediction)
    except ValueError:
        return None
    if not hmac.compare_digest(parts[-1], _signature(key, request_id, index, answer, parts[0])):
        return None
    if not (answer.issued - 60 <= now <= answer.issued + ttl_s):  # 60 s of clock skew between pods
        return None
    return answer


class AnswerStore:
    """Per-worker memory of recent answers: LRU-bounded, entries expire after `ttl_s`; thread-safe.

    Entries are kept as plain tuples of str/int/float, which Python's cyclic garbage collector stops tracking:
    a full store (tens of thousands of answers that live for the TTL) then adds nothing to the collector's
    full passes, which would otherwise pause the worker longer the fuller the store is.
    """

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        # request id -> (stored at, prediction id, per image (model, version, digit, issued)); a request id used
        # again (it is the caller's) names the latest prediction made with it.
        self._answers: OrderedDict[str, tuple[float, str, tuple[tuple[str, int, int, int], ...]]] = OrderedDict()
        self._used: OrderedDict[tuple[str, int], float] = OrderedDict()

    def put(self, request_id: str, answers: tuple[Answer, ...]) -> None:
        """`answers` are one prediction's (they share its prediction id)."""
        now = self._clock()
        prediction = answers[0].prediction if answers else ""
        fields = tuple((answer.model, answer.version, answer.digit, answer.issued) for answer in answers)
        with self._lock:
            self._answers[request_id] = (now, prediction, fields)
            self._answers.move_to_end(request_id)
            self._trim(self._answers, now)

    def get(self, request_id: str, index: int) -> Answer | None:
        now = self._clock()
        with self._lock:
            entry = self._answers.get(request_id)
            if entry is None or now - entry[0] > self._ttl or not 0 <= index < len(entry[2]):
                return None
            return Answer(*entry[2][index], prediction=entry[1])

    def claim(self, prediction: str, index: int) -> bool:
        """True the first time feedback for (prediction id, index) arrives here, False for a repeat."""
        now = self._clock()
        with self._lock:
            key = (prediction, index)
            seen = self._used.get(key)
            if seen is not None and now - seen <= self._ttl:
                return False
            self._used[key] = now
            self._used.move_to_end(key)
            self._trim(self._used, now)
            return True

    def __len__(self) -> int:
        return len(self._answers)

    def _trim(self, store: OrderedDict, now: float) -> None:
        while len(store) > self._max:
            store.popitem(last=False)
        while store:  # oldest first: stop at the first live entry
            oldest = next(iter(store.values()))
            stamp = oldest[0] if isinstance(oldest, tuple) else oldest
            if now - stamp <= self._ttl:
                break
            store.popitem(last=False)
