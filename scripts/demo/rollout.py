"""The example ModelRollout (k8s/examples/canary.yaml) adapted to the demo, with every change explained."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One field set differently from the example, and why."""

    path: tuple[str, ...]
    old: Any
    new: Any
    why: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Scenario:
    """What one demo run rolls out: from `stable` to `candidate`, and the outcome it expects."""

    name: str
    stable: int
    candidate: int
    expected_phase: str  # Promoted | RolledBack


PROMOTE = Scenario("promote", stable=1, candidate=2, expected_phase="Promoted")
ROLLBACK = Scenario("rollback", stable=2, candidate=3, expected_phase="RolledBack")
SCENARIOS = {s.name: s for s in (PROMOTE, ROLLBACK)}


@dataclass(frozen=True)
class Pace:
    """How fast the demo's rollout moves; the example's production pace would take many minutes."""

    steps: tuple[int, ...] = (25, 50, 100)
    step_duration_s: int = 10
    interval_s: int = 5
    min_requests: int = 10
    min_feedback: int = 10
    max_latency_p99_ms: int = 1000


def floor_to(value: float, places: int = 2) -> float:
    """Round down (a threshold derived from a measured accuracy must not end up above it)."""
    factor = 10**places
    # The epsilon absorbs binary float error (0.95 - 0.05 is 0.8999999999999999, which is 0.90).
    return math.floor(value * factor + 1e-9) / factor


def _get(doc: Mapping, path: Sequence[str]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _set(doc: dict, path: Sequence[str], value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def plan_changes(
    scenario: Scenario, accuracy: Mapping[int, float], pace: Pace = Pace()
) -> list[tuple[tuple[str, ...], Any, str]]:
    """The (path, value, why) the demo applies for scenario, given each version's offline test accuracy."""
    stable_acc = accuracy.get(scenario.stable)
    # Live accuracy must stay close to what the stable version achieves offline: 5 points of slack for
    # the small live sample and for the frontend's own preprocessing of PNGs.
    live_floor = floor_to(max(0.5, stable_acc - 0.05)) if stable_acc is not None else 0.9
    changes: list[tuple[tuple[str, ...], Any, str]] = [
        (("metadata", "name"), f"mnist-v{scenario.candidate}-canary", "named after the candidate, like the example"),
        (
            ("spec", "stableVersion"),
            scenario.stable,
            f"version {scenario.stable} serves all traffic when the demo starts",
        ),
        (("spec", "candidateVersion"), scenario.candidate, "the version this demo rolls out"),
        (("spec", "canary", "steps"), list(pace.steps), "fewer steps, so the whole rollout fits in about a minute"),
        (("spec", "canary", "stepDuration"), f"{pace.step_duration_s}s", "each step held seconds, not minutes"),
        (("spec", "analysis", "interval"), f"{pace.interval_s}s", "judge often enough to see several checks per step"),
        (
            ("spec", "analysis", "minRequests"),
            pace.min_requests,
            "the demo's traffic is a few requests a second, not production load",
        ),
        (
            ("spec", "analysis", "minFeedback"),
            pace.min_feedback,
            "labels fed back per check, scaled down with the traffic like minRequests",
        ),
        (
            ("spec", "analysis", "maxLatencyP99Ms"),
            pace.max_latency_p99_ms,
            "the embedded backend runs TensorFlow inside the frontend on a laptop CPU",
        ),
        (
            ("spec", "analysis", "minAccuracy"),
            live_floor,
            f"live accuracy from feedback must stay within 5 points of stable v{scenario.stable}'s "
            f"offline {stable_acc:.3f}"
            if stable_acc is not None
            else "no offline accuracy for stable known",
        ),
    ]
    if scenario.name == "rollback":
        changes.append(
            (
                ("spec", "gate", "minOfflineAccuracy"),
                0.0,
                "the offline gate would refuse this broken candidate before any traffic; it is opened so "
                "that you can watch the live analysis catch it and roll it back",
            )
        )
    else:
        changes.append(
            (
                ("spec", "gate", "minOfflineAccuracy"),
                live_floor,
                "the same floor offline: the demo's models train for seconds, so thresholds follow what "
                "the stable version really reached",
            )
        )
    return changes


def adapt_rollout(example: Mapping, scenario: Scenario, accuracy: Mapping[int, float], pace: Pace = Pace()):
    """A copy of example with the demo's changes applied, and the list of Change that says what differs."""
    doc = copy.deepcopy(dict(example))
    applied: list[Change] = []
    for path, value, why in plan_changes(scenario, accuracy, pace):
        old = _get(doc, path)
        if old == value:
            continue
        _set(doc, path, value)
        applied.append(Change(path, None if old is _MISSING else old, value, why))
    return doc, applied


def load_example(path) -> dict:
    """The first ModelRollout document in a YAML file."""
    with open(path) as handle:
        for doc in yaml.safe_load_all(handle):
            if isinstance(doc, Mapping) and doc.get("kind") == "ModelRollout":
                return dict(doc)
    raise ValueError(f"{path}: no ModelRollout document in it")


def render_changes(changes: Sequence[Change], source: str) -> str:
    """What the demo changed in the example, one line each, for the terminal."""
    lines = [f"Rollout: {source}, adapted for the demo:"]
    for change in changes:
        old = "(unset)" if change.old is None else _short(change.old)
        lines.append(f"  {change.dotted}: {old} -> {_short(change.new)}")
        lines.append(f"      why: {change.why}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
