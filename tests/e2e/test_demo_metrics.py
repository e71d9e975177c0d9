"""The demo's reading of the frontend's /metrics: parsing, per-version figures, p99 from buckets."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scripts.demo.metrics import histogram_quantile, parse_metrics

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def exposition() -> str:
    """Metrics text as the frontend's prometheus_client would render it (names and labels of docs/FRONTEND.md's metrics table)."""
    registry = CollectorRegistry()
    predictions = Counter(
        "mnist_frontend_predictions_total", "p", ["model", "version", "route", "outcome"], registry=registry
    )
    latency = Histogram(
        "mnist_frontend_prediction_latency_seconds",
        "l",
        ["model", "version", "route"],
        buckets=BUCKETS,
        registry=registry,
    )
    feedback = Counter("mnist_frontend_feedback_total", "f", ["model", "version", "result"], registry=registry)
    generation = Gauge("mnist_frontend_routing_generation", "g", ["model"], registry=registry)
    predictions.labels("mnist", "1", "stable", "ok").inc(90)
    predictions.labels("mnist", "1", "stable", "backend_error").inc(2)
    predictions.labels("mnist", "2", "canary", "ok").inc(10)
    predictions.labels("mnist", "", "", "client_error").inc(3)
    predictions.labels("other", "1", "stable", "ok").inc(1000)
    for _ in range(99):
        latency.labels("mnist", "1", "stable").observe(0.004)
    latency.labels("mnist", "1", "stable").observe(0.4)
    for _ in range(10):
        latency.labels("mnist", "2", "canary").observe(0.02)
    feedback.labels("mnist", "1", "correct").inc(45)
    feedback.labels("mnist", "1", "wrong").inc(5)
    feedback.labels("mnist", "2", "correct").inc(10)
    generation.labels("mnist").set(4)
    return generate_latest(registry).decode()


def test_per_version_requests_outcomes_and_feedback_accuracy():
    snap = parse_metrics(exposition(), "mnist")
    v1, v2 = snap.version(1), snap.version(2)
    assert v1.outcomes == {"ok": 90, "backend_error": 2}
    assert v1.requests == 92 and v1.errors == 2
    assert v2.requests == 10 and v2.errors == 0
    assert v1.accuracy == pytest.approx(0.9)
    assert v2.accuracy == 1.0
    assert snap.unrouted == {"client_error": 3}
    assert snap.total_requests() == 105
    assert snap.routing_generation == 4


def test_other_models_are_ignored():
    snap = parse_metrics(exposition(), "mnist")
    assert snap.version(1).requests == 92
    assert parse_metrics(exposition(), "other").version(1).requests == 1000


def test_p99_from_histogram_lands_in_the_bucket_of_the_slowest_percentile():
    snap = parse_metrics(exposition(), "mnist")
    # 99 of 100 observations in (0.0025, 0.005]: the 99th percentile is that bucket's upper edge.
    assert snap.version(1).p99_seconds == pytest.approx(0.005)
    assert 0.01 < snap.version(2).p99_seconds <= 0.025


def test_unknown_version_has_empty_stats():
    stats = parse_metrics(exposition(), "mnist").version(7)
    assert stats.requests == 0 and stats.accuracy is None and stats.p99_seconds is None


def test_histogram_quantile_matches_prometheus_rules():
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    # Linear inside the bucket: rank 50 of 100, bucket (1, 2] holds 0..100 -> 1.5.
    assert histogram_quantile(0.5, [(1.0, 0.0), (2.0, 100.0), (math.inf, 100.0)]) == pytest.approx(1.5)
    # Rank in the +Inf bucket: the highest finite bound.
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 100.0)]) == 1.0
    # First bucket interpolates from zero.
    assert histogram_quantile(0.5, [(0.01, 10.0), (math.inf, 10.0)]) == pytest.approx(0.005)
