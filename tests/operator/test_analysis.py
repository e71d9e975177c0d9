"""Metric arithmetic: windows across counter resets and pods that come and go, p99 from histogram buckets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mnist_operator import analysis as an


def pod(ok: float = 0, err: float = 0, buckets: list[float] | None = None, correct: float = 0,
        wrong: float = 0) -> an.PodCounters:
    p = an.PodCounters(requests={"2|ok": ok, "2|backend_error": err}, feedback={"2|correct": correct, "2|wrong": wrong})
    if buckets is not None:
        p.latency["2"] = buckets
    return p


def snap(t: float, **pods: an.PodCounters) -> an.Snapshot:
    return an.Snapshot(taken_at=t, pods=dict(pods))


def test_window_is_the_increase_per_pod():
    w = an.window_counters(snap(0, a=pod(10, 1), b=pod(5)), snap(10, a=pod(30, 2), b=pod(8)))
    s = an.version_stats(w, 2)
    assert (s.requests, s.errors) == (20 + 1 + 3, 1)
    assert s.error_rate == pytest.approx(1 / 24)


def test_counter_reset_counts_everything_the_restarted_pod_reports():
    w = an.window_counters(snap(0, a=pod(100, 5)), snap(10, a=pod(7, 0)))
    assert an.version_stats(w, 2).requests == 7 and an.version_stats(w, 2).errors == 0


def test_a_reset_seen_in_one_series_resets_the_whole_pod():
    before = pod(100, 5, correct=50)
    after = pod(120, 6, correct=3)  # feedback went down: the process restarted; ok 120 is all new
    w = an.window_counters(snap(0, a=before), snap(1, a=after))
    assert an.version_stats(w, 2).requests == 126 and an.version_stats(w, 2).correct == 3


def test_new_pod_counts_from_zero_and_vanished_pod_adds_nothing():
    w = an.window_counters(snap(0, a=pod(10)), snap(10, b=pod(4)))
    assert an.version_stats(w, 2).requests == 4
    assert an.version_stats(an.window_counters(None, snap(1, a=pod(3))), 2).requests == 3


def test_p99_interpolates_inside_the_bucket_like_prometheus():
    # 100 observations: 98 in (0.005, 0.01], 2 in (0.25, 0.5]
    cum = [0, 0, 0, 98, 98, 98, 98, 98, 100, 100, 100, 100, 100, 100]
    assert an.quantile_from_buckets(0.5, cum) == pytest.approx(0.005 + 0.005 * (50 / 98))
    assert an.quantile_from_buckets(0.99, cum) == pytest.approx(0.25 + 0.25 * (1 / 2))
    assert an.quantile_from_buckets(0.99, [0] * 14) is None
    assert an.quantile_from_buckets(0.99, [0] * 13 + [5]) == 10.0  # all above the last bound: the last bound


def test_p99_from_bucket_deltas_ignores_old_slow_requests():
    old = [0] * 9 + [10] * 5  # 10 slow requests before the window
    new = [0] * 3 + [50] * 6 + [60] * 5  # 50 requests in (5ms, 10ms] since
    w = an.window_counters(snap(0, a=pod(buckets=old)), snap(1, a=pod(buckets=new)))
    assert an.version_stats(w, 2).p99_ms == pytest.approx(5 + 5 * 49.5 / 50)


def test_shadow_stats_and_agreement():
    p = an.PodCounters(shadow={"1|2|agree": 97, "1|2|disagree": 3, "1|2|error": 1})
    s = an.shadow_stats(an.window_counters(None, snap(0, a=p)), 1, 2)
    assert s.agreement == pytest.approx(0.97) and s.error_rate == pytest.approx(1 / 101)


def test_snapshot_survives_json_roundtrip_for_status():
    s = snap(5.5, a=pod(1, 2, [0.0] * 14, 3, 4))
    s.pods["a"].routing_generation = 7
    assert an.Snapshot.from_json(s.to_json()).to_json() == s.to_json()


def test_z_statistic_and_critical_value():
    assert an.z_for_confidence(0.95) == pytest.approx(1.6449, abs=1e-3)
    assert an.one_sided_z(0.9, 1000, 0.8, 1000) > 5
    assert an.one_sided_z(0.8, 1000, 0.8, 1000) == 0
    assert an.one_sided_z(1.0, 10, 1.0, 10) == 0.0
    assert math.isinf(an.one_sided_z(1.0, 10, 0.0, 10)) is False


@given(increments=st.lists(st.lists(st.floats(0, 1000), min_size=3, max_size=3), min_size=2, max_size=8),
       restart_at=st.integers(0, 7))
def test_windows_add_up_across_scrapes_with_one_restart(increments, restart_at):
    """Summing the windows of consecutive scrapes counts every request once, whatever happens to the pod."""
    total, counters, prev, counted = 0.0, [0.0, 0.0, 0.0], None, 0.0
    for i, inc in enumerate(increments):
        if i == restart_at:
            counters = [0.0, 0.0, 0.0]  # the pod restarts, then serves inc
        counters = [c + d for c, d in zip(counters, inc, strict=True)]
        total += sum(inc)
        cur = snap(i, a=an.PodCounters(requests={"2|ok": counters[0], "2|backend_error": counters[1],
                                                 "2|client_error": counters[2]}))
        w = an.window_counters(prev, cur)
        counted += sum(w.requests.values())
        prev = cur
    # A restart is only detectable when some counter went down; if the new counts exceed the old in every
    # series the restart is invisible and the window undercounts, exactly like Prometheus' increase().
    assert counted <= total + 1e-6
