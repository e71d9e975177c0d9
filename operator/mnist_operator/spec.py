"""ModelRollout spec: parse a spec dict into dataclasses, apply defaults, validate.

The defaults and limits here mirror the CRD's openAPIV3Schema (charts/mnist-platform/crds/); a test
checks that they agree, so the API server's defaulting and this code never disagree.
"""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

STRATEGIES = ("canary", "abtest", "shadow")
SHADOW_PROMOTE = ("canary", "switch")
ABTEST_REQUIRE = ("notWorse", "better")
# Every pattern is matched with fullmatch: Python's `$` also matches before a trailing newline, the API server's (Go
# RE2) does not, and a name with a newline in it is refused by TF Serving and the frontend alike.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
# At most 4 parts of at most 6 digits (and 3 decimals): the CRD's pattern alone bounds a duration's value (below
# 4 x 10^6 hours) and its length; MAX_DURATION_S, which the schema cannot say, is checked here.
DURATION_RE = re.compile(r"^([0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION_CHARS = 32
MAX_DURATION_S = 30 * 24 * 3600.0  # 720h: longer than any rollout stage, short enough that timers stay meaningful
# The frontend's routing parser takes an HTTP token (RFC 9110) of 1-128 characters as the sticky header; anything
# else makes every frontend refuse the routing file (services/frontend/frontend/routing.py; a test compares them).
STICKY_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
MAX_STEPS = 20
# TF Serving versions are int64, but the CRD's `maximum` is a float64 that the API server must convert to int64 (2^63 - 1
# as a float is 2^63: every ModelRollout was refused). 2^53 - 1 is exact in both, and in every JSON parser.
MAX_VERSION = 2**53 - 1
MAX_COUNT = 10**9  # minRequests, minSamples, minFeedback: more than any window or test ever sees
# The frontend's latency histogram ends at 10 s (its +Inf bucket reads as 10 s, like histogram_quantile), so a
# larger p99 threshold could never fail; 10000 is the largest meaningful one (and turns the latency check off).
MAX_LATENCY_P99_MS = 10_000.0


class SpecError(ValueError):
    """A spec that can never work; the message says which field and why."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4


def shown(value: Any) -> str:
    """A repr of input for messages, at most about 100 characters whatever the input (a YAML alias bomb's repr is
    gigabytes): reprlib only looks at the first few items and characters, so this costs little too."""
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int too long to print (sys.set_int_max_str_digits): name the type
        return f"<{type(value).__name__}>"


def shown_names(names: Any) -> str:
    """Unknown field names, sorted as text (keys of a YAML mapping need not be strings), at most 5 of them."""
    texts = sorted(shown(n) for n in names)
    more = f" and {len(texts) - 5} more" if len(texts) > 5 else ""
    return "[" + ", ".join(texts[:5]) + "]" + more


def parse_duration(text: str, where: str) -> float:
    """'90s', '1m30s', '500ms', '2h' -> seconds."""
    if not isinstance(text, str) or len(text) > MAX_DURATION_CHARS or not DURATION_RE.fullmatch(text):
        raise SpecError(f"{where}: {shown(text)} is not a duration like 30s, 5m, 1h30m or 500ms "
                        f"(at most 4 parts of at most 6 digits)")
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

    # Durations in seconds. parse_spec has parsed and checked every one; each access parses the text again (a few
    # microseconds), which keeps the spec a plain frozen record of what the CRD holds.
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


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; both bounds are required so that no count or version is unbounded."""
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():  # YAML/JSON 2.0; NaN and infinities are not integral
            v = int(v)
        else:
            raise SpecError(f"{where}: {shown(v)} is not an integer")
    if not lo <= v <= hi:
        raise SpecError(f"{where}: {shown(v)} is outside [{lo}, {hi}]")
    return v


def _num(v: Any, where: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi]. NaN must be refused by name: every comparison with it is False, so it passes any
    range check written as `v < lo or v > hi`, and a NaN threshold can never fail an analysis."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpecError(f"{where}: {shown(v)} is not a number")
    try:
        v = float(v)
    except OverflowError:  # an int too large for a float
        raise SpecError(f"{where}: {shown(v)} is outside [{lo}, {hi}]") from None
    if not math.isfinite(v):
        raise SpecError(f"{where}: {shown(v)} is not a finite number")
    if not lo <= v <= hi:
        raise SpecError(f"{where}: {shown(v)} is outside [{lo}, {hi}]")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise SpecError(f"{where}: {shown(v)} is not a non-empty string")
    return v


def _section(spec: dict[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    sec = spec.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise SpecError(f"{name}: must be an object, not {shown(sec)}")
    unknown = set(sec) - known
    if unknown:
        raise SpecError(f"{name}: unknown field(s) {shown_names(unknown)}")
    return sec


TOP_FIELDS = {"model", "candidateVersion", "stableVersion", "strategy", "canary", "abtest", "shadow", "analysis",
              "gate", "paused", "autoRollout"}


def parse_spec(spec: dict[str, Any]) -> RolloutSpec:
    """Validate a ModelRollout spec dict (as stored, possibly without API-server defaults) and fill defaults."""
    if not isinstance(spec, dict):
        raise SpecError("spec: must be an object")
    unknown = set(spec) - TOP_FIELDS
    if unknown:
        raise SpecError(f"spec: unknown field(s) {shown_names(unknown)}")
    if "model" not in spec:
        raise SpecError("model: required")
    model = _str(spec["model"], "model")
    if len(model) > 63 or not MODEL_NAME_RE.fullmatch(model):
        raise SpecError(f"model: {shown(model)} must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at "
                        "both ends")
    if "candidateVersion" not in spec:
        raise SpecError("candidateVersion: required")
    candidate = _int(spec["candidateVersion"], "candidateVersion", 1, MAX_VERSION)
    stable = spec.get("stableVersion")
    stable = None if stable is None else _int(stable, "stableVersion", 1, MAX_VERSION)
    if stable is not None and stable == candidate:
        raise SpecError(f"stableVersion: equals candidateVersion ({candidate}); nothing to roll out")
    strategy = spec.get("strategy", RolloutSpec.strategy)
    if not isinstance(strategy, str) or strategy not in STRATEGIES:  # a list or dict here is not even hashable
        raise SpecError(f"strategy: {shown(strategy)} is not one of {', '.join(STRATEGIES)}")
    paused = spec.get("paused", False)
    if not isinstance(paused, bool):
        raise SpecError(f"paused: {shown(paused)} is not a boolean")

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
    if not isinstance(require, str) or require not in ABTEST_REQUIRE:
        raise SpecError(f"abtest.require: {shown(require)} is not one of {', '.join(ABTEST_REQUIRE)}")
    sticky = a.get("stickyHeader", d2.sticky_header)
    if not isinstance(sticky, str) or not STICKY_HEADER_RE.fullmatch(sticky):
        raise SpecError(f"abtest.stickyHeader: {shown(sticky)} is not an HTTP header name (1-128 letters, digits "
                        "or !#$%&'*+.^_`|~-; no spaces)")
    abtest = ABTestSpec(
        split=_int(a.get("split", d2.split), "abtest.split", 1, 99),
        duration=a.get("duration", d2.duration),
        sticky_header=sticky,
        min_samples=_int(a.get("minSamples", d2.min_samples), "abtest.minSamples", 1, MAX_COUNT),
        confidence=_num(a.get("confidence", d2.confidence), "abtest.confidence", 0.5, 0.9999),
        require=require,
    )

    d3 = ShadowSpec()
    s = _section(spec, "shadow", {"percent", "duration", "promote"})
    promote = s.get("promote", d3.promote)
    if not isinstance(promote, str) or promote not in SHADOW_PROMOTE:
        raise SpecError(f"shadow.promote: {shown(promote)} is not one of {', '.join(SHADOW_PROMOTE)}")
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
        min_requests=_int(an.get("minRequests", d4.min_requests), "analysis.minRequests", 1, MAX_COUNT),
        max_error_rate=_num(an.get("maxErrorRate", d4.max_error_rate), "analysis.maxErrorRate", 0, 1),
        max_latency_p99_ms=_num(an.get("maxLatencyP99Ms", d4.max_latency_p99_ms), "analysis.maxLatencyP99Ms", 1,
                                MAX_LATENCY_P99_MS),
        min_agreement=_num(an.get("minAgreement", d4.min_agreement), "analysis.minAgreement", 0, 1),
        min_accuracy=_num(an.get("minAccuracy", d4.min_accuracy), "analysis.minAccuracy", 0, 1),
        min_feedback=_int(an.get("minFeedback", d4.min_feedback), "analysis.minFeedback", 1, MAX_COUNT),
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
        raise SpecError(f"autoRollout.enabled: {shown(enabled)} is not a boolean")
    parsed = RolloutSpec(model=model, candidate_version=candidate, stable_version=stable, strategy=strategy,
                         canary=canary, abtest=abtest, shadow=shadow, analysis=analysis, gate=gate, paused=paused,
                         auto_rollout=AutoRolloutSpec(enabled=enabled))
    # Parse every duration now so that a bad one is refused up front, not mid-rollout.
    for where, prop in DURATION_FIELDS.items():
        seconds = getattr(parsed, prop)
        if seconds <= 0:
            raise SpecError(f"{where}: must be longer than zero")
        if seconds > MAX_DURATION_S:
            raise SpecError(f"{where}: {seconds / 3600:g}h is longer than the limit of {MAX_DURATION_S / 3600:.0f}h")
    return parsed


# Field (as the CRD names it) -> the RolloutSpec property with its value in seconds.
DURATION_FIELDS = {"canary.stepDuration": "step_duration_s", "abtest.duration": "abtest_duration_s",
                   "shadow.duration": "shadow_duration_s", "analysis.interval": "interval_s",
                   "analysis.inconclusiveTimeout": "inconclusive_timeout_s",
                   "analysis.routingTimeout": "routing_timeout_s", "gate.timeout": "gate_timeout_s"}


def crd_name(field_name: str) -> str:
    """The CRD's camelCase name of a spec dataclass field: max_latency_p99_ms -> maxLatencyP99Ms."""
    first, *rest = field_name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def _crd_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def defaults_as_crd() -> dict[str, dict[str, Any]]:
    """The code's defaults in the CRD's camelCase shape: {section: {field: default}} ('' is top level).

    Read from the dataclasses' own fields, so a default is written once: a section is a field whose default is
    built by its dataclass; a top-level field without a default (model, candidateVersion) or defaulting to None
    (stableVersion: what serves now) has no CRD default.
    """
    out: dict[str, dict[str, Any]] = {"": {}}
    for f in fields(RolloutSpec):
        if isinstance(f.default_factory, type) and is_dataclass(f.default_factory):
            out[crd_name(f.name)] = {crd_name(g.name): _crd_default(g.default) for g in fields(f.default_factory)}
        elif f.default is not MISSING and f.default is not None:
            out[""][crd_name(f.name)] = _crd_default(f.default)
    return out
