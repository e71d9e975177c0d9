"""The ModelRollout's .status as a type: Phase and Stage enums and the Status dataclass with from_json/to_json.

The JSON form is a public contract (the CRD's status schema, `kubectl get mr`, the demo's --status-file): to_json
writes exactly the keys and values decide() has always written, and to_json(from_json(x)) == x for every null-free
status (tests/operator/test_status.py). So from_json takes values as they come, without coercion, and keeps keys it
does not know in `extra`: the CRD lets anyone store more under .status (x-kubernetes-preserve-unknown-fields), and
the operator must not delete what it did not write. The analysis sub-documents (baseline, totals, lastAnalysis) and
the conditions stay JSON: the baseline is analysis.Snapshot's own form, and the rest are reports for people that the
tick writes whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mnist_operator.merge_patch import without_nulls


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Stage(StrEnum):
    WAITING = "Waiting"
    GATE = "Gate"
    LOADING = "Loading"
    CANARY = "Canary"
    ABTEST = "ABTest"
    SHADOW = "Shadow"
    PROMOTING = "Promoting"
    ROLLING_BACK = "RollingBack"
    DONE = "Done"


TERMINAL = (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)
ACTIVE = (Phase.PROGRESSING, Phase.PAUSED)
TRAFFIC_STAGES = (Stage.CANARY, Stage.ABTEST, Stage.SHADOW)


def ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def value_or(value: Any, default: Any) -> Any:
    """A field's value, or `default` where it is absent (what dict.get(key, default) did on the JSON)."""
    return default if value is None else value


def _enum(kind: type[StrEnum], value: Any) -> Any:
    """The member for a known value; anything else as it came (the CRD does not constrain stage), so that it is
    written back unchanged and judged as the plain string it was."""
    try:
        return kind(value)
    except ValueError:
        return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass
class Status:
    """Everything a rollout remembers between ticks; None is an absent key (a stored status holds no null)."""

    phase: Phase | None = None
    stage: Stage | None = None
    reason: str | None = None  # the last decision, for people
    message: str | None = None
    # What is rolled out (resolved at the gate; no stable_version in an initial rollout).
    plan: str | None = None
    model: str | None = None
    strategy: str | None = None
    stable_version: int | None = None
    candidate_version: int | None = None
    initial: bool | None = None
    blocked_by: str | None = None
    # Traffic.
    step: int | None = None  # canary step index, 0-based; -1 before the canary
    candidate_weight: int | None = None
    shadow_percent: int | None = None
    sticky_header: str | None = None
    # Timers (ts() strings, kept as written so that a stored status round-trips exactly).
    started_at: str | None = None
    stage_started_at: str | None = None
    step_started_at: str | None = None
    paused_at: str | None = None
    finished_at: str | None = None
    last_check_at: str | None = None
    last_pass_at: str | None = None
    inconclusive_since: str | None = None
    replica_wait_since: str | None = None
    # Analysis: the metrics baseline (analysis.Snapshot's JSON), checks, feedback totals per stage, last numbers.
    baseline: dict[str, Any] | None = None
    failed_checks: int | None = None
    checks: int | None = None
    last_verdict: str | None = None  # Passed | Failed
    totals: dict[str, Any] | None = None
    last_analysis: dict[str, Any] | None = None
    outcome: Phase | None = None  # where Promoting / RollingBack ends
    # Bookkeeping.
    routing_generation: int | None = None
    observed_generation: int | None = None
    conditions: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know, kept as they came

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Status:
        data = dict(data or {})
        values: dict[str, Any] = {}
        for f in _FIELDS:
            if _JSON_KEY[f] in data:
                values[f] = data.pop(_JSON_KEY[f])
        for name, kind in (("phase", Phase), ("stage", Stage), ("outcome", Phase)):
            if name in values:
                values[name] = _enum(kind, values[name])
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        """The stored form: camelCase keys, no nulls at any depth (merge_patch.py), enums as plain strings."""
        out: dict[str, Any] = {}
        for f in _FIELDS:
            value = getattr(self, f)
            if value is not None:
                out[_JSON_KEY[f]] = str(value) if isinstance(value, StrEnum) else value
        out.update(self.extra)
        return without_nulls(out)

    def update(self, **changes: Any) -> None:
        """Set several fields at once (by their Python names; an unknown name is an error, not a new key)."""
        for name, value in changes.items():
            if name not in _JSON_KEY:
                raise AttributeError(f"Status has no field {name!r}")
            setattr(self, name, value)

    def keep_only(self, *names: str) -> None:
        """Forget every field but `names` (and every unknown key): a rollout starting again from scratch."""
        for f in _FIELDS:
            if f not in names:
                setattr(self, f, None)
        self.extra = {}


_FIELDS = tuple(f.name for f in fields(Status) if f.name != "extra")
_JSON_KEY = {f: _camel(f) for f in _FIELDS}
