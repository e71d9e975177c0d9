"""One prediction: preprocess (done by frontend.parse) -> route -> predict -> postprocess, free of Flask."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from frontend.backends.base import Backend, BackendResult
from frontend.feedback import Answer, AnswerStore, new_prediction_id, sign
from frontend.routing import Decision, RoutingConfig, decide
from frontend.shadow import ShadowSender


@dataclass
class Outcome:
    """What the web layer reports (and counts) about one request."""

    decision: Decision | None = None
    result: BackendResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Predictor:
    def __init__(self, backend: Backend, model: str, routing: Callable[[], RoutingConfig | None],
                 shadow: ShadowSender | None, timeout_s: float, feedback_key: bytes, answers: AnswerStore,
                 rng: random.Random | None = None) -> None:
        self.backend = backend
        self.model = model
        self._routing = routing
        self._shadow = shadow
        self._timeout_s = timeout_s
        self._feedback_key = feedback_key
        self._answers = answers
        self._rng = rng or random.Random()

    def route(self, headers: Callable[[str], str | None]) -> Decision:
        config = self._routing()
        sticky = headers(config.sticky_header) if config is not None and config.sticky_header else None
        return decide(config, sticky, self._rng.random(), self._rng.random())

    def predict(self, images: np.ndarray, decision: Decision, outcome: Outcome) -> BackendResult:
        started = time.perf_counter()
        result = self.backend.predict(images, decision.version, self._timeout_s)
        outcome.timings["predict"] = time.perf_counter() - started
        outcome.result = result
        if decision.shadow_version is not None and self._shadow is not None:
            self._shadow.submit(images, decision.shadow_version, result.version, result.digits)
        return result

    def postprocess(self, request_id: str, decision: Decision, result: BackendResult) -> dict:
        issued = int(time.time())
        # The request id may be the caller's and repeat; feedback is counted against this id, made here.
        prediction = new_prediction_id()
        answers = tuple(Answer(self.model, result.version, int(d), issued, prediction) for d in result.digits)
        self._answers.put(request_id, answers)
        probabilities = np.round(result.probabilities.astype(np.float64), 6)
        predictions = [
            {"digit": answer.digit, "confidence": float(row[answer.digit]), "probabilities": row.tolist(),
             "feedback_token": sign(self._feedback_key, request_id, index, answer)}
            for index, (answer, row) in enumerate(zip(answers, probabilities, strict=True))
        ]
        return {"request_id": request_id, "model": self.model, "version": result.version, "route": decision.route,
                "predictions": predictions}
