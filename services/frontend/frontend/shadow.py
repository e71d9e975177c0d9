"""Shadow copies off the caller's critical path: a small thread pool with a bounded queue.

When the pool is full a copy is dropped and counted; the caller never waits for a shadow.
Agreement is counted per image: agree / disagree when the shadow answered, error for each image otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from frontend.backends.base import Backend
from frontend.errors import FrontendError
from frontend.metrics import Metrics

log = logging.getLogger(__name__)


class ShadowSender:
    def __init__(self, backend: Backend, metrics: Metrics, *, workers: int, queue: int, timeout_s: float) -> None:
        self._backend = backend
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(queue)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shadow")
        self._closed = False

    def submit(self, images: np.ndarray, shadow_version: int, primary_version: int, primary_digits: np.ndarray) -> bool:
        """Queue a shadow copy; False (and counted as dropped) when the queue is full. Never blocks."""
        if self._closed or not self._slots.acquire(blocking=False):
            self._metrics.shadow_dropped.labels(self._metrics.model).inc()
            return False
        try:
            self._pool.submit(self._run, images, shadow_version, primary_version, primary_digits)
        except RuntimeError:  # pool shut down between the check and the submit
            self._slots.release()
            self._metrics.shadow_dropped.labels(self._metrics.model).inc()
            return False
        return True

    def _run(self, images: np.ndarray, shadow_version: int, primary_version: int, primary_digits: np.ndarray) -> None:
        model = self._metrics.model
        labels = {"model": model, "primary_version": str(primary_version), "shadow_version": str(shadow_version)}
        started = time.perf_counter()
        try:
            result = self._backend.predict(images, shadow_version, self._timeout_s)
        except FrontendError as error:
            log.info("shadow copy to version %d failed: %s", shadow_version, error.message)
            self._metrics.shadow_comparisons.labels(result="error", **labels).inc(len(images))
            return
        except Exception:  # a bug must not kill the pool thread silently
            log.exception("shadow copy to version %d failed", shadow_version)
            self._metrics.shadow_comparisons.labels(result="error", **labels).inc(len(images))
            return
        finally:
            self._slots.release()
        self._metrics.shadow_latency.labels(model, str(shadow_version)).observe(time.perf_counter() - started)
        agree = int(np.count_nonzero(result.digits == primary_digits))
        if agree:
            self._metrics.shadow_comparisons.labels(result="agree", **labels).inc(agree)
        if len(images) - agree:
            self._metrics.shadow_comparisons.labels(result="disagree", **labels).inc(len(images) - agree)

    def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until queued copies finished; for tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        taken = 0
        try:
            while time.monotonic() < deadline and taken < self._slots._initial_value:  # noqa: SLF001
                if self._slots.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
                    taken += 1
        finally:
            for _ in range(taken):
                self._slots.release()

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
