"""ModelRollout spec: parse a spec dict into dataclasses, apply defaults, validate.

The defaults and limits here mirror the CRD's openAPIV3Schema (charts/mnist-platform/crds/); a test
checks that they agree, so the API server's defaulting and this code never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("canary", "abtest", "shadow")
SHADOW_PROMOTE = ("canary", "switch")
ABTEST_REQUIRE = ("notWorse", "better")
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_STEPS = 20


class SpecError(ValueError):
    """A spec that can never work; the message says which field and why."""


def parse_duration(text: str, where: str) -> float:
    """'90s', '1m30s', '500ms', '2h' -> seconds."""
    if not isinstance(text, str) or not DURATION_RE.match(text):
        raise SpecError(f"{where}: {text!r} is not a duration like 30s, 5m, 1h30m or 500ms")
    return sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[int, ...] = (10, 25, 50, 100)
    step_duration: str = "60s"


@dataclass(frozen=True)
class ABTestSpec:
    split: int = 50
    duration: str = "30m"
    sticky_header: str = "X-User-Id"
    min_samples: int = 200
    confidence: float = 0.95
    require: str = "notWorse"


@dataclass(frozen=True)
class ShadowSpec:
    percent: int = 100
    duration: str = "10m"
    promote: str = "canary"


@dataclass(frozen=True)
class AnalysisSpec:
    interval: str = "15s"
    min_requests: int = 50
    max_error_rate: float = 0.01
    max_latency_p99_ms: float = 250.0
    min_agreement: float = 0.97
    min_accuracy: float = 0.9
    min_feedback: int = 20
    failure_limit: int = 2
    inconclusive_timeout: str = "5m"
    routing_timeout: str = "2m"


@dataclass(frozen=True)
class GateSpec:
    min_offline_accuracy: float = 0.9
    timeout: str = "5m"


@dataclass(frozen=True)
class AutoRolloutSpec:
    enabled: bool = False


@dataclass(frozen=True)
class RolloutSpec:
    model: str
    candidate_version: int
    stable_version: int | None = None
    strategy: str = "canary"
    canary: CanarySpec = field(default_factory=CanarySpec)
    abtest: ABTestSpec = field(default_factory=ABTestSpec)
    shadow: ShadowSpec = field(default_factory=ShadowSpec)
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    paused: bool = False
    auto_rollout: AutoRolloutSpec = field(default_factory=AutoRolloutSpec)

    # Durations in seconds, parsed once.
    @property
    def step_duration_s(self) -> float:
        return parse_duration(self.canary.step_duration, "canary.stepDuration")

    @property
    def abtest_duration_s(self) -> float:
        return parse_duration(self.abtest.duration, "abtest.duration")

    @property
    def shadow_duration_s(self) -> float:
        return parse_duration(self.shadow.duration, "shadow.duration")

    @property
    def interval_s(self) -> float:
        return parse_duration(self.analysis.interval, "analysis.interval")

    @property
    def inconclusive_timeout_s(self) -> float:
        return parse_duration(self.analysis.inconclusive_timeout, "analysis.inconclusiveTimeout")

    @property
    def routing_timeout_s(self) -> float:
        return parse_duration(self.analysis.routing_timeout, "analysis.routingTimeout")

    @property
    def gate_timeout_s(self) -> float:
        return parse_duration(self.gate.timeout, "gate.timeout")

    def plan_key(self) -> dict[str, Any]:
        """What, when changed, restarts the rollout from the gate (anything else re-plans in place).

        An unset stableVersion is left out rather than stored as null: the plan is persisted in .status through a
        JSON merge patch, which deletes null keys, and must compare equal when read back (see merge_patch.py).
        """
        key = {"model": self.model, "candidateVersion": self.candidate_version, "stableVersion": self.stable_version,
               "strategy": self.strategy}
        return {k: v for k, v in key.items() if v is not None}


# camelCase field name -> (python name, kind, default, limits). The CRD test reads this table.
def _int(v: Any, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise SpecError(f"{where}: {v!r} is not an integer")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise SpecError(f"{where}: {v} is outside [{lo}, {hi}]")
    return v


def _num(v: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpecError(f"{where}: {v!r} is not a number")
    v = float(v)
    if lo is not None and v < lo or hi is not None and v > hi:
        raise SpecError(f"{where}: {v} is outside [{lo}, {hi}]")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise SpecError(f"{where}: {v!r} is not a non-empty string")
    return v


def _section(spec: dict[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    sec = spec.get(name) or {}
    if not isinstance(sec, dict):
        raise SpecError(f"{name}: must be an object")
    unknown = set(sec) - known
    if unknown:
        raise SpecError(f"{name}: unknown field(s) {sorted(unknown)}")
    return sec


TOP_FIELDS = {"model", "candidateVersion", "stableVersion", "strategy", "canary", "abtest", "shadow", "analysis",
              "gate", "paused", "autoRollout"}


def parse_spec(spec: dict[str, Any]) -> RolloutSpec:
    """Validate a ModelRollout spec dict (as stored, possibly without API-server defaults) and fill defaults."""
    if not isinstance(spec, dict):
        raise SpecError("spec: must be an object")
    unknown = set(spec) - TOP_FIELDS
    if unknown:
        raise SpecError(f"spec: unknown field(s) {sorted(unknown)}")
    if "model" not in spec:
        raise SpecError("model: required")
    model = _str(spec["model"], "model")
    if len(model) > 63 or not MODEL_NAME_RE.match(model):
        raise SpecError(f"model: {model!r} must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at both ends")
    if "candidateVersion" not in spec:
        raise SpecError("candidateVersion: required")
    candidate = _int(spec["candidateVersion"], "candidateVersion", 1)
    stable = spec.get("stableVersion")
    stable = None if stable is None else _int(stable, "stableVersion", 1)
    if stable is not None and stable == candidate:
        raise SpecError(f"stableVersion: equals candidateVersion ({candidate}); nothing to roll out")
    strategy = spec.get("strategy", RolloutSpec.strategy)
    if strategy not in STRATEGIES:
        raise SpecError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    paused = spec.get("paused", False)
    if not isinstance(paused, bool):
        raise SpecError(f"paused: {paused!r} is not a boolean")

    d = CanarySpec()
    c = _section(spec, "canary", {"steps", "stepDuration"})
    steps_raw = c.get("steps", list(d.steps))
    if not isinstance(steps_raw, list) or not 1 <= len(steps_raw) <= MAX_STEPS:
        raise SpecError(f"canary.steps: must be a list of 1 to {MAX_STEPS} percentages")
    steps = tuple(_int(s, "canary.steps[]", 1, 100) for s in steps_raw)
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise SpecError(f"canary.steps: {list(steps)} must be strictly increasing")
    canary = CanarySpec(steps=steps, step_duration=c.get("stepDuration", d.step_duration))

    d2 = ABTestSpec()
    a = _section(spec, "abtest", {"split", "duration", "stickyHeader", "minSamples", "confidence", "require"})
    require = a.get("require", d2.require)
    if require not in ABTEST_REQUIRE:
        raise SpecError(f"abtest.require: {require!r} is not one of {', '.join(ABTEST_REQUIRE)}")
    abtest = ABTestSpec(
        split=_int(a.get("split", d2.split), "abtest.split", 1, 99),
        duration=a.get("duration", d2.duration),
        sticky_header=_str(a.get("stickyHeader", d2.sticky_header), "abtest.stickyHeader"),
        min_samples=_int(a.get("minSamples", d2.min_samples), "abtest.minSamples", 1),
        confidence=_num(a.get("confidence", d2.confidence), "abtest.confidence", 0.5, 0.9999),
        require=require,
    )

    d3 = ShadowSpec()
    s = _section(spec, "shadow", {"percent", "duration", "promote"})
    promote = s.get("promote", d3.promote)
    if promote not in SHADOW_PROMOTE:
        raise SpecError(f"shadow.promote: {promote!r} is not one of {', '.join(SHADOW_PROMOTE)}")
    shadow = ShadowSpec(
        percent=_int(s.get("percent", d3.percent), "shadow.percent", 1, 100),
        duration=s.get("duration", d3.duration),
        promote=promote,
    )

    d4 = AnalysisSpec()
    an = _section(spec, "analysis", {"interval", "minRequests", "maxErrorRate", "maxLatencyP99Ms", "minAgreement",
                                     "minAccuracy", "minFeedback", "failureLimit", "inconclusiveTimeout",
                                     "routingTimeout"})
    analysis = AnalysisSpec(
        interval=an.get("interval", d4.interval),
        min_requests=_int(an.get("minRequests", d4.min_requests), "analysis.minRequests", 1),
        max_error_rate=_num(an.get("maxErrorRate", d4.max_error_rate), "analysis.maxErrorRate", 0, 1),
        max_latency_p99_ms=_num(an.get("maxLatencyP99Ms", d4.max_latency_p99_ms), "analysis.maxLatencyP99Ms", 1),
        min_agreement=_num(an.get("minAgreement", d4.min_agreement), "analysis.minAgreement", 0, 1),
        min_accuracy=_num(an.get("minAccuracy", d4.min_accuracy), "analysis.minAccuracy", 0, 1),
        min_feedback=_int(an.get("minFeedback", d4.min_feedback), "analysis.minFeedback", 1),
        failure_limit=_int(an.get("failureLimit", d4.failure_limit), "analysis.failureLimit", 1, 100),
        inconclusive_timeout=an.get("inconclusiveTimeout", d4.inconclusive_timeout),
        routing_timeout=an.get("routingTimeout", d4.routing_timeout),
    )

    d5 = GateSpec()
    g = _section(spec, "gate", {"minOfflineAccuracy", "timeout"})
    gate = GateSpec(
        min_offline_accuracy=_num(g.get("minOfflineAccuracy", d5.min_offline_accuracy), "gate.minOfflineAccuracy", 0, 1),
        timeout=g.get("timeout", d5.timeout),
    )
    ar = _section(spec, "autoRollout", {"enabled"})
    enabled = ar.get("enabled", AutoRolloutSpec.enabled)
    if not isinstance(enabled, bool):
        raise SpecError(f"autoRollout.enabled: {enabled!r} is not a boolean")
    parsed = RolloutSpec(model=model, candidate_version=candidate, stable_version=stable, strategy=strategy,
                         canary=canary, abtest=abtest, shadow=shadow, analysis=analysis, gate=gate, paused=paused,
                         auto_rollout=AutoRolloutSpec(enabled=enabled))
    # Parse every duration now so that a bad one is refused up front, not mid-rollout.
    for prop in ("step_duration_s", "abtest_duration_s", "shadow_duration_s", "interval_s", "inconclusive_timeout_s",
                 "routing_timeout_s", "gate_timeout_s"):
        if getattr(parsed, prop) <= 0:
            raise SpecError(f"{prop.removesuffix('_s')}: must be longer than zero")
    return parsed


def defaults_as_crd() -> dict[str, dict[str, Any]]:
    """The code's defaults in the CRD's camelCase shape: {section: {field: default}} ('' is top level)."""
    return {
        "": {"strategy": RolloutSpec.strategy, "paused": False},
        "canary": {"steps": list(CanarySpec.steps), "stepDuration": CanarySpec.step_duration},
        "abtest": {"split": ABTestSpec.split, "duration": ABTestSpec.duration, "stickyHeader": ABTestSpec.sticky_header,
                   "minSamples": ABTestSpec.min_samples, "confidence": ABTestSpec.confidence,
                   "require": ABTestSpec.require},
        "shadow": {"percent": ShadowSpec.percent, "duration": ShadowSpec.duration, "promote": ShadowSpec.promote},
        "analysis": {"interval": AnalysisSpec.interval, "minRequests": AnalysisSpec.min_requests,
                     "maxErrorRate": AnalysisSpec.max_error_rate, "maxLatencyP99Ms": AnalysisSpec.max_latency_p99_ms,
                     "minAgreement": AnalysisSpec.min_agreement, "minAccuracy": AnalysisSpec.min_accuracy,
                     "minFeedback": AnalysisSpec.min_feedback, "failureLimit": AnalysisSpec.failure_limit,
                     "inconclusiveTimeout": AnalysisSpec.inconclusive_timeout,
                     "routingTimeout": AnalysisSpec.routing_timeout},
        "gate": {"minOfflineAccuracy": GateSpec.min_offline_accuracy, "timeout": GateSpec.timeout},
        "autoRollout": {"enabled": AutoRolloutSpec.enabled},
    }
