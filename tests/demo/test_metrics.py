"""The demo reads the frontend's /metrics with the operator's parser and windows: what it prints per version."""

from __future__ import annotations

import pytest
from frontend.metrics import Metrics

from scripts.demo.metrics import MetricsSnapshot, parse_metrics, window


def exposition(requests_v1: int = 90) -> str:
    """Metrics text rendered by the frontend's own metrics code after some traffic."""
    m = Metrics("mnist")
    m.predictions.labels("mnist", "1", "stable", "ok").inc(requests_v1)
    m.predictions.labels("mnist", "1", "stable", "backend_error").inc(2)
    m.predictions.labels("mnist", "2", "canary", "ok").inc(10)
    m.predictions.labels("mnist", "", "", "client_error").inc(3)
    for _ in range(99):
        m.latency.labels("mnist", "1", "stable").observe(0.004)
    m.latency.labels("mnist", "1", "stable").observe(0.4)
    for _ in range(10):
        m.latency.labels("mnist", "2", "canary").observe(0.02)
    m.feedback.labels("mnist", "1", "correct").inc(45)
    m.feedback.labels("mnist", "1", "wrong").inc(5)
    m.feedback.labels("mnist", "2", "correct").inc(10)
    return m.exposition().decode()


def test_per_version_requests_errors_and_feedback_accuracy():
    snap = parse_metrics(exposition(), "mnist")
    v1, v2 = snap.version(1), snap.version(2)
    assert v1.requests == 92 and v1.errors == 2  # routed requests that reached the backend
    assert v2.requests == 10 and v2.errors == 0
    assert v1.accuracy == pytest.approx(0.9) and v2.accuracy == 1.0


def test_p99_lands_in_the_bucket_of_the_slowest_percentile():
    snap = parse_metrics(exposition(), "mnist")
    # 99 of 100 observations in (2.5 ms, 5 ms]: the 99th percentile is that bucket's upper edge.
    assert snap.version(1).p99_ms == pytest.approx(5.0)
    assert 10 < snap.version(2).p99_ms <= 25


def test_other_models_and_unknown_versions_count_nothing():
    assert parse_metrics(exposition(), "other").version(1).requests == 0
    stats = parse_metrics(exposition(), "mnist").version(7)
    assert stats.requests == 0 and stats.accuracy is None and stats.p99_ms is None
    assert MetricsSnapshot().version(1).requests == 0  # what is shown while /metrics cannot be read


def test_a_window_is_what_happened_between_two_scrapes():
    before, now = parse_metrics(exposition(90), "mnist"), parse_metrics(exposition(140), "mnist")
    assert window(before, now).version(1).requests == 50 and window(before, now).version(2).requests == 0
