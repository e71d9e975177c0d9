"""Read the frontend's Prometheus metrics into per-version figures (parsing is pure; fetching is one function)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

PREDICTIONS = "mnist_frontend_predictions"
LATENCY = "mnist_frontend_prediction_latency_seconds"
FEEDBACK = "mnist_frontend_feedback"
GENERATION = "mnist_frontend_routing_generation"
RELOAD_ERRORS = "mnist_frontend_routing_reload_errors"


@dataclass
class VersionStats:
    """What the frontend counted for one model version."""

    outcomes: dict[str, float] = field(default_factory=dict)
    feedback_correct: float = 0.0
    feedback_wrong: float = 0.0
    # Cumulative histogram: (upper bound, count) sorted by bound, +Inf last.
    latency_buckets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def requests(self) -> float:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> float:
        return self.outcomes.get("backend_error", 0.0)

    @property
    def accuracy(self) -> float | None:
        judged = self.feedback_correct + self.feedback_wrong
        return self.feedback_correct / judged if judged else None

    @property
    def p99_seconds(self) -> float | None:
        return histogram_quantile(0.99, self.latency_buckets)


@dataclass
class MetricsSnapshot:
    """Per-version figures for one model, plus the routing generation the frontend runs."""

    versions: dict[str, VersionStats] = field(default_factory=dict)
    unrouted: dict[str, float] = field(default_factory=dict)
    routing_generation: float | None = None
    reload_errors: float = 0.0

    def version(self, version: int | str) -> VersionStats:
        return self.versions.get(str(version), VersionStats())

    def total_requests(self) -> float:
        return sum(v.requests for v in self.versions.values()) + sum(self.unrouted.values())


def _minus(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, v - before.get(k, 0.0)) for k, v in now.items()}


def window(before: MetricsSnapshot, now: MetricsSnapshot) -> MetricsSnapshot:
    """What happened between two scrapes of one frontend (counters only grow while it runs)."""
    out = MetricsSnapshot(routing_generation=now.routing_generation, reload_errors=now.reload_errors)
    out.unrouted = _minus(now.unrouted, before.unrouted)
    for version, cur in now.versions.items():
        old = before.versions.get(version, VersionStats())
        old_buckets = dict(old.latency_buckets)
        out.versions[version] = VersionStats(
            outcomes=_minus(cur.outcomes, old.outcomes),
            feedback_correct=max(0.0, cur.feedback_correct - old.feedback_correct),
            feedback_wrong=max(0.0, cur.feedback_wrong - old.feedback_wrong),
            latency_buckets=[(b, max(0.0, c - old_buckets.get(b, 0.0))) for b, c in cur.latency_buckets],
        )
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets: linear inside the bucket the rank falls in.

    None when the histogram is empty; the highest finite bound when the rank lands in +Inf.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _family_base(name: str) -> str:
    # The text parser strips `_total` from counter families; accept either spelling.
    return name[: -len("_total")] if name.endswith("_total") else name


def parse_metrics(text: str, model: str = "mnist") -> MetricsSnapshot:
    """Turn the frontend's /metrics exposition text into a MetricsSnapshot for one model."""
    snap = MetricsSnapshot()
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        base = _family_base(family.name)
        for sample in family.samples:
            labels: Mapping[str, str] = sample.labels
            if labels.get("model", model) != model:
                continue
            if base == PREDICTIONS and sample.name.endswith("_total"):
                version = labels.get("version", "")
                outcome = labels.get("outcome", "ok")
                if version:
                    stats = snap.versions.setdefault(version, VersionStats())
                    stats.outcomes[outcome] = stats.outcomes.get(outcome, 0.0) + sample.value
                else:
                    snap.unrouted[outcome] = snap.unrouted.get(outcome, 0.0) + sample.value
            elif base == LATENCY and sample.name.endswith("_bucket"):
                version = labels.get("version", "")
                if version:
                    # Routes of one version (stable/canary) are summed: the bucket bounds are shared.
                    per_version = buckets.setdefault(version, {})
                    bound = float(labels["le"])
                    per_version[bound] = per_version.get(bound, 0.0) + sample.value
            elif base == FEEDBACK and sample.name.endswith("_total"):
                version = labels.get("version", "")
                if not version:
                    continue
                stats = snap.versions.setdefault(version, VersionStats())
                if labels.get("result") == "correct":
                    stats.feedback_correct += sample.value
                elif labels.get("result") == "wrong":
                    stats.feedback_wrong += sample.value
            elif base == GENERATION and sample.name == GENERATION:
                snap.routing_generation = sample.value
            elif base == RELOAD_ERRORS and sample.name.endswith("_total"):
                snap.reload_errors += sample.value
    for version, per_bound in buckets.items():
        snap.versions.setdefault(version, VersionStats()).latency_buckets = sorted(per_bound.items())
    return snap


def fetch_metrics(url: str, model: str = "mnist", timeout_s: float = 2.0) -> MetricsSnapshot:
    """GET url (the frontend's /metrics) and parse it."""
    response = requests.get(url, timeout=timeout_s)
    response.raise_for_status()
    return parse_metrics(response.text, model)
