"""frontend.shadow: shadow copies never make the caller wait; a full pool drops and counts."""

from __future__ import annotations

import time

import numpy as np
from frontend.backends.grpc_backend import GrpcBackend
from frontend.metrics import Metrics
from frontend.shadow import ShadowSender

from tests.frontend.helpers import metric_value


def test_full_pool_drops_and_counts_without_blocking(healthy_standin):
    metrics = Metrics("mnist")
    backend = GrpcBackend(healthy_standin.grpc_target, "mnist")
    sender = ShadowSender(backend, metrics, workers=1, queue=2, timeout_s=5)
    images = np.zeros((1, 28, 28, 1), np.float32)
    healthy_standin.set_fault("slow", delay=1.0)
    try:
        started = time.monotonic()
        accepted = [sender.submit(images, 1, 2, np.array([0])) for _ in range(5)]
        assert time.monotonic() - started < 0.2  # the caller never waits for the shadow
        assert accepted == [True, True, False, False, False]
        healthy_standin.resume()
        sender.drain(timeout_s=10)
        text = metrics.exposition().decode()
        assert metric_value(text, "mnist_frontend_shadow_dropped_total", model="mnist") == 3
        compared = sum(metric_value(text, "mnist_frontend_shadow_comparisons_total", result=r, shadow_version="1")
                       for r in ("agree", "disagree", "error"))
        assert compared == 2
    finally:
        sender.close()
        backend.close()


def test_failed_shadow_call_counts_errors_per_image(healthy_standin):
    metrics = Metrics("mnist")
    backend = GrpcBackend(healthy_standin.grpc_target, "mnist")
    sender = ShadowSender(backend, metrics, workers=1, queue=4, timeout_s=5)
    try:
        assert sender.submit(np.zeros((3, 28, 28, 1), np.float32), 9, 2, np.array([0, 0, 0]))  # no version 9
        sender.drain(timeout_s=10)
        text = metrics.exposition().decode()
        assert metric_value(text, "mnist_frontend_shadow_comparisons_total", primary_version="2", shadow_version="9",
                            result="error") == 3
    finally:
        sender.close()
        backend.close()
