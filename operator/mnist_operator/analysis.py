"""Pure metric arithmetic: frontend counters from two scrapes -> per-version rates for one window.

A Snapshot holds, per frontend process (pod), the raw cumulative counters of one model. Windows are
the difference of two snapshots, taken per pod: a pod whose counters went down restarted (counter
reset), so everything it reports now is new; a pod that appeared since the baseline counts from zero;
a pod that vanished contributes nothing more. The same rule as Prometheus' increase(), per pod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


@dataclass
class PodCounters:
    """Cumulative counters of one frontend process for one model. Keys are strings so that status can hold them."""

    requests: dict[str, float] = field(default_factory=dict)  # "version|outcome"
    latency: dict[str, list[float]] = field(default_factory=dict)  # version -> cumulative bucket counts (le order)
    feedback: dict[str, float] = field(default_factory=dict)  # "version|correct|wrong"
    shadow: dict[str, float] = field(default_factory=dict)  # "primary|shadow|result"
    shadow_latency: dict[str, list[float]] = field(default_factory=dict)  # shadow version -> buckets
    routing_generation: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"r": self.requests, "l": self.latency, "f": self.feedback, "s": self.shadow,
                               "sl": self.shadow_latency}
        if self.routing_generation is not None:
            out["g"] = self.routing_generation
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodCounters:
        return cls(requests=dict(data.get("r", {})), latency={k: list(v) for k, v in data.get("l", {}).items()},
                   feedback=dict(data.get("f", {})), shadow=dict(data.get("s", {})),
                   shadow_latency={k: list(v) for k, v in data.get("sl", {}).items()},
                   routing_generation=data.get("g"))

    def _scalars(self) -> dict[str, float]:
        flat = {f"r:{k}": v for k, v in self.requests.items()}
        flat.update({f"f:{k}": v for k, v in self.feedback.items()})
        flat.update({f"s:{k}": v for k, v in self.shadow.items()})
        for prefix, hists in (("l", self.latency), ("sl", self.shadow_latency)):
            for k, buckets in hists.items():
                flat.update({f"{prefix}:{k}:{i}": b for i, b in enumerate(buckets)})
        return flat


@dataclass
class Snapshot:
    """All reachable frontend processes at one moment. `errors` lists the sources that could not be read."""

    taken_at: float
    pods: dict[str, PodCounters] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return bool(self.pods)

    def to_json(self) -> dict[str, Any]:
        return {"t": self.taken_at, "pods": {k: v.to_json() for k, v in self.pods.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(taken_at=float(data.get("t", 0.0)),
                   pods={k: PodCounters.from_json(v) for k, v in data.get("pods", {}).items()})


def _restarted(prev: PodCounters, cur: PodCounters) -> bool:
    before = prev._scalars()
    after = cur._scalars()
    return any(after.get(k, 0.0) < v for k, v in before.items())


def window_counters(prev: Snapshot | None, cur: Snapshot) -> PodCounters:
    """Sum over pods of the increase of every counter between prev and cur."""
    total = PodCounters()
    for pod, now in cur.pods.items():
        before = prev.pods.get(pod) if prev else None
        if before is None or _restarted(before, now):
            before = PodCounters()
        _add(total.requests, now.requests, before.requests)
        _add(total.feedback, now.feedback, before.feedback)
        _add(total.shadow, now.shadow, before.shadow)
        _add_hist(total.latency, now.latency, before.latency)
        _add_hist(total.shadow_latency, now.shadow_latency, before.shadow_latency)
    return total


def _add(acc: dict[str, float], now: dict[str, float], before: dict[str, float]) -> None:
    for k, v in now.items():
        acc[k] = acc.get(k, 0.0) + max(0.0, v - before.get(k, 0.0))


def _add_hist(acc: dict[str, list[float]], now: dict[str, list[float]], before: dict[str, list[float]]) -> None:
    for k, buckets in now.items():
        old = before.get(k) or [0.0] * len(buckets)
        delta = [max(0.0, b - o) for b, o in zip(buckets, old, strict=False)]
        prev = acc.get(k)
        acc[k] = delta if prev is None else [a + d for a, d in zip(prev, delta, strict=False)]


def quantile_from_buckets(q: float, cumulative: list[float], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> float | None:
    """histogram_quantile(): linear interpolation inside the bucket holding rank q*N; None without observations."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    # Cumulative counts can come out non-monotonic after per-bucket deltas across scrapes; repair like Prometheus.
    fixed: list[float] = []
    for c in cumulative:
        fixed.append(max(c, fixed[-1]) if fixed else c)
    total = fixed[-1]
    rank = q * total
    for i, c in enumerate(fixed):
        if c >= rank:
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else 0.0
            below = fixed[i - 1] if i > 0 else 0.0
            if math.isinf(upper):
                return lower  # like Prometheus: the highest finite bound
            in_bucket = c - below
            return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket > 0 else 1.0)
    return bounds[-2]


@dataclass(frozen=True)
class VersionStats:
    """What one version did in one window."""

    version: int
    requests: float = 0.0  # routed requests that reached a backend (ok + backend_error)
    errors: float = 0.0  # backend_error
    p99_ms: float | None = None
    correct: float = 0.0
    wrong: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def feedback(self) -> float:
        return self.correct + self.wrong

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None


@dataclass(frozen=True)
class ShadowStats:
    """Shadow comparisons of candidate against primary in one window."""

    agree: float = 0.0
    disagree: float = 0.0
    errors: float = 0.0
    p99_ms: float | None = None

    @property
    def compared(self) -> float:
        return self.agree + self.disagree

    @property
    def total(self) -> float:
        return self.agree + self.disagree + self.errors

    @property
    def agreement(self) -> float | None:
        return self.agree / self.compared if self.compared else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.total if self.total else None


def version_stats(window: PodCounters, version: int) -> VersionStats:
    v = str(version)
    ok = window.requests.get(f"{v}|ok", 0.0)
    err = window.requests.get(f"{v}|backend_error", 0.0)
    buckets = window.latency.get(v)
    p99 = quantile_from_buckets(0.99, buckets) if buckets else None
    return VersionStats(version=version, requests=ok + err, errors=err,
                        p99_ms=None if p99 is None else p99 * 1000.0,
                        correct=window.feedback.get(f"{v}|correct", 0.0), wrong=window.feedback.get(f"{v}|wrong", 0.0))


def shadow_stats(window: PodCounters, primary: int, shadow: int) -> ShadowStats:
    key = f"{primary}|{shadow}|"
    buckets = window.shadow_latency.get(str(shadow))
    p99 = quantile_from_buckets(0.99, buckets) if buckets else None
    return ShadowStats(agree=window.shadow.get(key + "agree", 0.0), disagree=window.shadow.get(key + "disagree", 0.0),
                       errors=window.shadow.get(key + "error", 0.0), p99_ms=None if p99 is None else p99 * 1000.0)


def routing_generations(snapshot: Snapshot) -> list[float | None]:
    return [p.routing_generation for p in snapshot.pods.values()]


def one_sided_z(p_candidate: float, n_candidate: float, p_stable: float, n_stable: float) -> float:
    """Two-proportion z statistic (pooled) of candidate accuracy minus stable accuracy."""
    if n_candidate <= 0 or n_stable <= 0:
        return 0.0
    pooled = (p_candidate * n_candidate + p_stable * n_stable) / (n_candidate + n_stable)
    var = pooled * (1 - pooled) * (1 / n_candidate + 1 / n_stable)
    if var <= 0:
        return 0.0 if p_candidate == p_stable else math.copysign(math.inf, p_candidate - p_stable)
    return (p_candidate - p_stable) / math.sqrt(var)


def z_for_confidence(confidence: float) -> float:
    """One-sided critical z for a confidence level (inverse normal CDF by bisection; no scipy in the image)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
