"""The frontend's /metrics as the demo shows them, read with the operator's own parser and window arithmetic.

One reading of the metrics contract (docs/CONTRACTS.md): the numbers the demo prints are computed exactly as the
operator computes the ones it judges by. Fetching is the one function here that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests
from mnist_operator.analysis import PodCounters, Snapshot, VersionStats, version_stats, window_counters
from mnist_operator.metrics_source import parse_exposition

# The demo runs one frontend: its counters are the only "pod" of the operator's snapshots.
FRONTEND = "frontend"


@dataclass(frozen=True)
class MetricsSnapshot:
    """The frontend's cumulative counters for one model (empty while /metrics cannot be read)."""

    counters: PodCounters = field(default_factory=PodCounters)

    def version(self, version: int) -> VersionStats:
        """Routed requests, backend errors, p99 and feedback accuracy of one version."""
        return version_stats(self.counters, version)


def window(before: MetricsSnapshot, now: MetricsSnapshot) -> MetricsSnapshot:
    """What happened between two scrapes (a frontend that restarted meanwhile counts from zero, as for the operator)."""
    return MetricsSnapshot(window_counters(Snapshot(0.0, {FRONTEND: before.counters}),
                                           Snapshot(0.0, {FRONTEND: now.counters})))


def parse_metrics(text: str, model: str = "mnist") -> MetricsSnapshot:
    """The frontend's /metrics exposition text -> its counters for one model."""
    return MetricsSnapshot(parse_exposition(text, model))


def fetch_metrics(url: str, model: str = "mnist", timeout_s: float = 2.0) -> MetricsSnapshot:
    """GET url (the frontend's /metrics) and parse it."""
    response = requests.get(url, timeout=timeout_s)
    response.raise_for_status()
    return parse_metrics(response.text, model)
