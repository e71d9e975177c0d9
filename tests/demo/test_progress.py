"""The terminal output of the demo is a pure function of a state snapshot: what it must show."""

from __future__ import annotations

from collections import Counter

from frontend.routing import Route
from mnist_operator.analysis import LATENCY_BUCKETS, PodCounters

from scripts.demo.metrics import MetricsSnapshot, window
from scripts.demo.progress import DemoState, render_progress, render_summary, weight_of
from scripts.demo.traffic import TrafficStats


def histogram(per_bucket: dict[float, float]) -> list[float]:
    """Cumulative bucket counts in the frontend's layout from {bucket upper bound: observations in it}."""
    return [sum(n for bound, n in per_bucket.items() if bound <= b) for b in LATENCY_BUCKETS]


def snapshot(**versions: dict) -> MetricsSnapshot:
    """v1={"ok": .., "backend_error": .., "correct": .., "wrong": .., "latency": {bound: n}} -> the frontend's counters."""
    pc = PodCounters()
    for name, v in versions.items():
        version = name.removeprefix("v")
        for outcome in ("ok", "backend_error"):
            if outcome in v:
                pc.requests[f"{version}|{outcome}"] = float(v[outcome])
        for result in ("correct", "wrong"):
            if result in v:
                pc.feedback[f"{version}|{result}"] = float(v[result])
        if "latency" in v:
            pc.latency[version] = histogram(v["latency"])
    return MetricsSnapshot(pc)


def state(**overrides) -> DemoState:
    metrics = snapshot(v1={"ok": 300, "correct": 285, "wrong": 15, "latency": {0.01: 290, 0.025: 10}},
                       v2={"ok": 95, "backend_error": 5, "correct": 98, "wrong": 2, "latency": {0.01: 50, 0.05: 50}})
    base = dict(
        scenario="promote",
        stable=1,
        candidate=2,
        elapsed_s=42.4,
        phase="Progressing",
        step=2,
        steps=(20, 50, 100),
        routes=(Route(1, "stable", 50), Route(2, "canary", 50)),
        metrics=metrics,
        traffic=TrafficStats(sent=401, statuses=Counter({200: 400}), lost=1, feedback_sent=400),
    )
    base.update(overrides)
    return DemoState(**base)


def test_progress_shows_phase_step_weights_and_caller_totals():
    head, *versions = render_progress(state())
    assert "Progressing" in head and "step 2/3" in head
    assert "v1 50%" in head and "v2 50%" in head
    assert "401 sent" in head and "0 5xx" in head and "1 lost" in head
    assert "[   42s]" in head


def test_progress_has_one_line_per_version_with_requests_accuracy_and_p99():
    _, stable, candidate = render_progress(state())
    assert stable.split()[:2] == ["v1", "stable"]
    assert "300 req" in stable and "95.0%" in stable
    assert candidate.split()[:2] == ["v2", "candidate"]
    assert "100 req" in candidate and "98.0%" in candidate and "backend errors 5" in candidate
    # p99 of v1 (no previous update: since the start): rank 297 of 300 lands in (0.01, 0.025] -> 20.5 ms.
    assert "p99 now    20 ms" in stable or "p99 now    21 ms" in stable


def test_progress_before_any_data_shows_dashes_not_zero_accuracy():
    empty = state(metrics=MetricsSnapshot(), routes=(), step=None, phase="Pending")
    head, stable, _ = render_progress(empty)
    assert "(no routing yet)" in head and "step -" in head
    assert "acc    -" in stable and "p99 now     -" in stable


def test_p99_now_is_over_the_last_interval_not_since_the_start():
    """A slow first request (model load) weighs on the total p99 but must not hide today's latency."""
    before = snapshot(v1={"ok": 100, "latency": {5.0: 100}})
    now = snapshot(v1={"ok": 200, "latency": {0.01: 100, 5.0: 100}})
    _, stable, _ = render_progress(state(metrics=now, recent=window(before, now)))
    assert "p99 now    10 ms" in stable
    assert window(before, now).version(1).requests == 100


def test_summary_says_outcome_against_expectation_with_a_row_per_version():
    lines = render_summary(state(phase="Promoted", routes=(Route(2, "stable", 100),)), "Promoted")
    assert lines[0].startswith("Outcome: Promoted (as expected)")
    rows = [line for line in lines if line.strip().startswith(("v1", "v2"))]
    assert len(rows) == 2
    assert rows[0].split()[-1] == "0%" and rows[1].split()[-1] == "100%"
    assert "401 digits sent, 400 answered, 0 5xx, 1 lost; 400 labels fed back" in lines[-1]


def test_summary_flags_an_unexpected_outcome_and_shows_the_reason():
    lines = render_summary(state(phase="RolledBack", reason="accuracy 0.11 < 0.90"), "Promoted")
    assert "EXPECTED Promoted" in lines[0]
    assert lines[1] == "Reason:  accuracy 0.11 < 0.90"


def test_weight_of_sums_routes_of_one_version():
    routes = (Route(1, "stable", 70), Route(2, "canary", 30))
    assert weight_of(routes, 1) == 70 and weight_of(routes, 2) == 30 and weight_of(routes, 3) == 0
