"""The rollout state machine: one pure function, decide(spec, status, observation, now) -> Decision.

Everything needed to continue lives in the returned status (a JSON-able dict that the shell stores in the
ModelRollout's .status, or in memory for local mode), so re-running decide() from a persisted status after a
restart continues exactly where it was. The configs are rendered from status alone (desired_configs), never
from memory, so a restart re-writes the same bytes and traffic never jumps.

Stages (status.stage) inside the phases:
  Waiting (Pending) -> Gate -> Loading -> [Shadow ->] Canary | ABTest | Shadow -> Promoting -> Done (Promoted)
                                     \\-> RollingBack -> Done (RolledBack | Failed)
Load first, label second: Loading writes a model config with both versions and only the stable label; labels
and routing for the candidate are written on the tick where the candidate is seen AVAILABLE.
Route first, unload second: Promoting / RollingBack move all traffic first and unload the other version only
when every frontend reports the new routing generation (or analysis.routingTimeout passed).
Every replica first: `available` facts are about every ready TF Serving replica (replicas.py), and a canary step
up, a promotion (the stable label moves to the candidate) and the promoted final config (the candidate alone)
wait until every replica reports the candidate AVAILABLE, so no replica is sent a version or a label it lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from mnist_operator import analysis as an
from mnist_operator.merge_patch import without_nulls
from mnist_operator.render import Route, RoutingState, ServingState, routing_document, stable_version_of_routing
from mnist_operator.spec import RolloutSpec, SpecError, parse_spec, shown
from mnist_operator.status import ACTIVE, TERMINAL, TRAFFIC_STAGES, Phase, Stage, Status, parse_ts, ts

# The names the shells and tests use; the enums in status.py are the one definition.
PENDING, PROGRESSING, PAUSED, PROMOTED, ROLLED_BACK, FAILED = (
    Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)
WAITING, GATE, LOADING, CANARY, ABTEST, SHADOW, PROMOTING, ROLLING_BACK, DONE = (
    Stage.WAITING, Stage.GATE, Stage.LOADING, Stage.CANARY, Stage.ABTEST, Stage.SHADOW, Stage.PROMOTING,
    Stage.ROLLING_BACK, Stage.DONE)
# Stages whose decisions need the candidate's facts (the shells gather them only then): the gate and loading, and
# every later step that sends more traffic to the candidate or moves a label to it.
FACT_STAGES = (None, WAITING, GATE, LOADING, *TRAFFIC_STAGES, PROMOTING)
CANDIDATE_LABEL = {CANARY: "canary", ABTEST: "candidate", SHADOW: "shadow"}


def _or(value: Any, default: Any) -> Any:
    """A field's value, or `default` where it is absent (what dict.get(key, default) did on the JSON)."""
    return default if value is None else value


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class CandidateInfo:
    """What the world says about one model version (the candidate, or the stable one in Observation.versions)."""

    exists: bool = False
    test_accuracy: float | None = None
    available: bool = False  # AVAILABLE on every ready TF Serving replica (or the model store check without one)
    detail: str = ""  # where the facts came from, for messages


@dataclass(frozen=True)
class Observation:
    """Facts gathered by the shell before a decision (no I/O happens inside decide)."""

    rollout: str  # "namespace/name"
    generation: int = 1
    metrics: an.Snapshot | None = None
    candidate: CandidateInfo = field(default_factory=CandidateInfo)
    serving_base_path: str = "/models/mnist"
    current_routing: dict[str, Any] | None = None  # the routing document in place now
    blocked_by: str | None = None  # another rollout that holds this model
    # Facts about the stable version (stable_to_check), gathered like the candidate's: the gate routes nothing to a
    # version that is not published and AVAILABLE. A version missing here counts as not found.
    versions: dict[int, CandidateInfo] = field(default_factory=dict)


@dataclass
class Decision:
    status: dict[str, Any]  # the JSON to store (Status.to_json())
    serving: ServingState | None
    routing: RoutingState | None
    routing_generation: int
    events: list[Event]

    @property
    def routing_document(self) -> dict[str, Any] | None:
        return None if self.routing is None else routing_document(self.routing, self.routing_generation)


def _fmt(x: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if x is None else pattern.format(x)


def _as_status(status: Status | dict[str, Any] | None) -> Status:
    return status if isinstance(status, Status) else Status.from_json(status)


# ---------------------------------------------------------------------------------------------- configs from status


def desired_configs(status: Status | dict[str, Any], rollout: str,
                    base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """The model config and routing implied by a status; (None, None) where this rollout must not write."""
    st = _as_status(status)
    stage = st.stage
    model, stable, cand = st.model, st.stable_version, st.candidate_version
    if st.phase in TERMINAL or stage in (None, WAITING) or model is None:
        return None, None
    if stable is None:
        return _initial_configs(st, rollout, base_path)
    only_stable_routing = RoutingState(model=model, strategy="single", routes=(Route(stable, "stable", 100),),
                                       rollout=rollout)
    if stage == GATE:
        return ServingState(model, base_path, (stable,), {"stable": stable}), only_stable_routing
    if stage == LOADING:
        return ServingState(model, base_path, (stable, cand), {"stable": stable}), only_stable_routing
    if stage == ROLLING_BACK:
        return ServingState(model, base_path, (stable, cand), {"stable": stable}), only_stable_routing
    if stage == PROMOTING:
        routing = RoutingState(model=model, strategy="single", routes=(Route(cand, "stable", 100),), rollout=rollout)
        return ServingState(model, base_path, (stable, cand), {"stable": cand}), routing
    if stage in TRAFFIC_STAGES:
        label = CANDIDATE_LABEL[stage]
        serving = ServingState(model, base_path, (stable, cand), {"stable": stable, label: cand})
        if stage == SHADOW:
            routing = RoutingState(model=model, strategy="shadow", routes=(Route(stable, "stable", 100),),
                                   shadow=(cand, int(_or(st.shadow_percent, 100))), rollout=rollout)
        else:
            w = int(_or(st.candidate_weight, 0))
            routes = tuple(r for r in (Route(stable, "stable", 100 - w), Route(cand, label, w)) if r.weight > 0)
            sticky = st.sticky_header if stage == ABTEST else None
            routing = RoutingState(model=model, strategy="abtest" if stage == ABTEST else "canary", routes=routes,
                                   sticky_header=sticky, rollout=rollout)
        return serving, routing
    return None, None


def _initial_configs(st: Status, rollout: str, base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """An initial rollout (nothing served before): load the candidate alone, then label it stable and route to it."""
    model, cand, stage = st.model, st.candidate_version, st.stage
    if not st.initial or cand is None:
        return None, None
    if stage == LOADING:  # load first: no label may name a version TF Serving has not loaded yet
        return ServingState(model, base_path, (cand,), {}), None
    if stage == PROMOTING:
        return (ServingState(model, base_path, (cand,), {"stable": cand}),
                RoutingState(model=model, strategy="single", routes=(Route(cand, "stable", 100),), rollout=rollout))
    return None, None  # Gate: nothing serves and nothing is written yet


def final_configs(status: Status | dict[str, Any], rollout: str,
                  base_path: str) -> tuple[ServingState, RoutingState] | None:
    """What a finished rollout leaves behind (also what deletion of an unfinished one restores)."""
    st = _as_status(status)
    model, stable, cand = st.model, st.stable_version, st.candidate_version
    promoted = st.phase == PROMOTED
    if model is None or (stable is None and not promoted) or (promoted and cand is None):
        return None  # an initial rollout that did not finish has no stable version to go back to: touch nothing
    keep = cand if promoted else stable
    return (ServingState(model, base_path, (keep,), {"stable": keep}),
            RoutingState(model=model, strategy="single", routes=(Route(keep, "stable", 100),), rollout=rollout))


def on_delete(status: Status | dict[str, Any], rollout: str,
              base_path: str) -> tuple[ServingState, RoutingState] | None:
    """Configs to write when an unfinished rollout is deleted: everything back to stable; None: touch nothing."""
    st = _as_status(status)
    if st.phase in TERMINAL or st.stage in (None, WAITING):
        return None
    return final_configs(replace(st, phase=ROLLED_BACK), rollout, base_path)


# ------------------------------------------------------------------------------------------------------- arbitration


def blocking_rollout(me: str, my_created: str, my_phase: str | None,
                     others: list[tuple[str, str, str | None]]) -> str | None:
    """Which other rollout of the same model goes first, if any. others: (key, creationTimestamp, phase).

    An active one (Progressing/Paused) always wins; otherwise the oldest unfinished one (then by name) goes first.
    Every operator replica computes the same order, so two rollouts created together never both start.
    """
    contenders = [(k, c, p) for k, c, p in others if k != me and p not in TERMINAL]
    if my_phase in ACTIVE:
        older_active = [k for k, c, p in contenders if p in ACTIVE and (c, k) < (my_created, me)]
        return older_active[0] if older_active else None
    active = [k for k, _, p in contenders if p in ACTIVE]
    if active:
        return sorted(active)[0]
    older = sorted((c, k) for k, c, _ in contenders if (c, k) < (my_created, me))
    return older[0][1] if older else None


# ----------------------------------------------------------------------------------------------------------- decide

_PAUSE_TIMERS = ("stage_started_at", "step_started_at", "inconclusive_since", "last_check_at", "replica_wait_since")


def decide(spec_dict: dict[str, Any], status: dict[str, Any] | None, obs: Observation, now: float) -> Decision:
    """One tick of one rollout."""
    # A private copy without nulls: a stored status has none (a merge patch deletes null keys), so a status read
    # back after a patch and the one decided from are the same thing (merge_patch.py).
    st = Status.from_json(without_nulls(status or {}))
    events: list[Event] = []
    try:
        spec = parse_spec(spec_dict)
    except SpecError as exc:
        return _invalid_spec(st, obs, now, str(exc), events)

    if st.phase in TERMINAL:
        restart = st.plan != spec.plan_key() or st.reason == "InvalidSpec"
        if not (restart and st.observed_generation != obs.generation):
            st.observed_generation = obs.generation
            return _finish(st, spec, obs, now, events)
        events.append(Event("Normal", "Replanned", f"spec changed after {st.phase}: starting again"))
        st = Status(routing_generation=_or(st.routing_generation, 0))

    if not st.phase:
        st.update(phase=PENDING, stage=WAITING, started_at=ts(now), stage_started_at=ts(now), failed_checks=0,
                  candidate_weight=0, step=-1, checks=0, reason="Created", message="waiting for its turn")
        events.append(Event("Normal", "Created", f"rollout of {spec.model} v{spec.candidate_version} "
                                                 f"({spec.strategy}) accepted"))

    if st.observed_generation not in (None, obs.generation) and st.plan:
        _replan(st, spec, obs, now, events)
    st.observed_generation = obs.generation

    if st.phase == PENDING:
        if obs.blocked_by:
            if st.blocked_by != obs.blocked_by:
                events.append(Event("Normal", "Waiting", f"{obs.blocked_by} is rolling out {spec.model}; "
                                                         "this rollout starts when it finishes"))
            st.update(blocked_by=obs.blocked_by, reason="WaitingForRollout",
                      message=f"waiting: {obs.blocked_by} holds model {spec.model}")
            return _finish(st, spec, obs, now, events)
        st.blocked_by = None
        st.update(phase=PROGRESSING, stage=GATE, stage_started_at=ts(now), plan=spec.plan_key(), model=spec.model,
                  candidate_version=spec.candidate_version, strategy=spec.strategy, reason="Gate",
                  message="checking the candidate")

    if spec.paused and st.phase == PROGRESSING:
        st.update(phase=PAUSED, paused_at=ts(now), reason="Paused", message=f"paused at {st.stage}")
        events.append(Event("Normal", "Paused", f"paused at stage {st.stage}, candidate weight "
                                                f"{_or(st.candidate_weight, 0)}%"))
    elif not spec.paused and st.phase == PAUSED:
        held = now - (parse_ts(st.paused_at) or now)
        st.paused_at = None
        for name in _PAUSE_TIMERS:  # timers frozen while paused: shifted by the pause
            if getattr(st, name):
                setattr(st, name, ts(parse_ts(getattr(st, name)) + held))
        st.baseline = obs.metrics.to_json() if obs.metrics and obs.metrics.reachable else None
        st.update(phase=PROGRESSING, reason="Resumed", message=f"resumed at {st.stage}")
        events.append(Event("Normal", "Resumed", f"resumed after {held:.0f}s at stage {st.stage}"))
    if st.phase == PAUSED:
        return _finish(st, spec, obs, now, events)

    stage = st.stage
    if stage == GATE:
        _gate(st, spec, obs, now, events)
    elif stage == LOADING:
        _loading(st, spec, obs, now, events)
    elif stage in TRAFFIC_STAGES:
        _traffic(st, spec, obs, now, events)
    elif stage in (PROMOTING, ROLLING_BACK):
        _drain(st, spec, obs, now, events)
    return _finish(st, spec, obs, now, events)


def _invalid_spec(st: Status, obs: Observation, now: float, why: str, events: list[Event]) -> Decision:
    already = st.phase == FAILED and st.reason == "InvalidSpec" and st.message == why
    if not already:
        events.append(Event("Warning", "InvalidSpec", why))
    st.update(phase=FAILED, stage=DONE, reason="InvalidSpec", message=why, candidate_weight=0,
              observed_generation=obs.generation)
    if st.started_at is None:
        st.started_at = ts(now)
    serving = routing = None
    if _owns_routing(obs):  # it had written configs: put stable back, now
        configs = final_configs(st, obs.rollout, obs.serving_base_path)
        if configs:
            serving, routing = configs
            if not already:
                events.append(Event("Warning", "RolledBack", f"traffic back to stable v{st.stable_version}: {why}"))
    _set_conditions(st, now)
    gen = _stamp_generation(st, routing, obs)
    return Decision(st.to_json(), serving, routing, gen, events)


def _replan(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    """The spec changed mid-rollout: restart from the gate if what is rolled out changed, else adapt in place."""
    if st.plan != spec.plan_key():
        old = st.plan
        # Still holding the model: straight back to the gate, which writes stable-only configs this very tick.
        st.keep_only("started_at", "routing_generation", "observed_generation", "stable_version", "model", "phase")
        active = st.phase in ACTIVE
        st.update(stage=GATE if active else WAITING, stage_started_at=ts(now), failed_checks=0,
                  candidate_weight=0, step=-1, checks=0, reason="Replanned", plan=spec.plan_key(),
                  candidate_version=spec.candidate_version, strategy=spec.strategy,
                  message="spec changed: starting again from the gate")
        if not active:
            st.phase = PENDING
        events.append(Event("Normal", "Replanned", f"{old} -> {spec.plan_key()}: traffic back to stable, "
                                                   "starting again from the gate"))
        return
    if st.stage == CANARY:
        w = int(_or(st.candidate_weight, 0))
        steps = spec.canary.steps
        st.step = steps.index(w) if w in steps else sum(1 for s in steps if s < w) - 1
        events.append(Event("Normal", "Replanned", f"canary steps now {list(steps)}: holding at {w}%, "
                                                   f"step {st.step + 1} of {len(steps)}"))
    if st.stage == ABTEST:
        st.sticky_header = spec.abtest.sticky_header
    if st.stage == SHADOW:
        st.shadow_percent = spec.shadow.percent


def stable_to_check(spec: RolloutSpec, routing: dict[str, Any] | None) -> int | None:
    """The stable version the gate will use: the spec's, else what the routing in place serves as stable.

    The shells call this to know which version's facts to gather (Observation.versions); the gate resolves the
    same way, so the facts are about the version it is about to route to.
    """
    return spec.stable_version if spec.stable_version is not None else stable_version_of_routing(routing)


def serves_nothing(routing: dict[str, Any] | None) -> bool:
    """No routing document in place, or one without a route that carries traffic (a fresh install)."""
    if not isinstance(routing, dict):
        return True
    routes = routing.get("routes")
    return not isinstance(routes, list) or not any(
        isinstance(r, dict) and isinstance(r.get("weight"), int) and r["weight"] > 0 for r in routes)


def _gate(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    served = obs.current_routing.get("model") if isinstance(obs.current_routing, dict) else None
    if served not in (None, spec.model):
        _fail_now(st, now, events, "ModelNotServed",
                  f"the routing config in place serves model {shown(served)}, not {spec.model!r}: one routing "
                  "config per model (see MNIST_OPERATOR_ROUTING_CONFIGMAP)")
        return
    stable = stable_to_check(spec, obs.current_routing)
    if stable is None and not serves_nothing(obs.current_routing):
        _fail_now(st, now, events, "NoStableVersion",
                  "the routing config in place serves no version labelled stable and spec.stableVersion is unset: "
                  "set stableVersion")
        return
    if stable is None:
        # Initial rollout: nothing serves this model yet, so there is nothing to compare the candidate against.
        # Same gate, load first, then it becomes stable at once (no canary/A-B/shadow stage).
        if not st.initial:
            st.initial = True
            events.append(Event("Normal", "InitialVersion",
                                f"no version served yet: v{spec.candidate_version} becomes stable after passing "
                                "the gate, nothing to compare against"))
        st.stable_version = None
    elif stable == spec.candidate_version:
        _fail_now(st, now, events, "CandidateAlreadyStable", f"v{stable} already serves as stable")
        return
    else:
        st.initial = None
        if not _stable_ready(st, spec, obs, now, events, stable):
            return
        st.stable_version = stable  # from here on the configs name it: it is published and AVAILABLE
    c = obs.candidate
    waited = now - parse_ts(st.stage_started_at)
    if not c.exists:
        if waited >= spec.gate_timeout_s:
            _fail_now(st, now, events, "CandidateNotFound",
                      f"v{spec.candidate_version} not found after {waited:.0f}s ({c.detail or 'model store'})")
        else:
            st.update(reason="CandidateNotFound", message=f"waiting for v{spec.candidate_version} to be published")
        return
    need = spec.gate.min_offline_accuracy
    if need > 0 and c.test_accuracy is None:
        _fail_now(st, now, events, "NoOfflineAccuracy",
                  f"v{spec.candidate_version} has no test accuracy ({c.detail}); gate needs >= {need}")
        return
    if c.test_accuracy is not None and c.test_accuracy < need:
        _fail_now(st, now, events, "GateFailed",
                  f"offline test accuracy {c.test_accuracy:.4f} < gate.minOfflineAccuracy {need}")
        return
    beside = f"beside stable v{stable}" if stable is not None else "alone (nothing serves yet)"
    events.append(Event("Normal", "GatePassed", f"v{spec.candidate_version} offline accuracy "
                                                f"{_fmt(c.test_accuracy)} >= {need}; loading it {beside}"))
    st.update(stage=LOADING, stage_started_at=ts(now), reason="LoadingCandidate",
              message=f"waiting for v{spec.candidate_version} to be AVAILABLE")


def _stable_ready(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event],
                  stable: int) -> bool:
    """The stable version gets the candidate's checks (published, then AVAILABLE, within gate.timeout) before any
    config names it: routing users to a version TF Serving does not have answers every one of them with a 503.

    Until it passes, status.stableVersion is not set to it, so nothing is written that names it (a replanned rollout
    keeps routing to the stable version it had checked before).
    """
    facts = obs.versions.get(stable) or CandidateInfo(detail="not looked up yet")
    if facts.exists and facts.available:
        return True
    reason, what = (("StableNotFound", "not found") if not facts.exists else
                    ("StableNotAvailable", "not AVAILABLE"))
    waited = now - parse_ts(st.stage_started_at)
    if waited >= spec.gate_timeout_s:
        _fail_now(st, now, events, reason,
                  f"stable v{stable} {what} after {waited:.0f}s ({facts.detail or 'model store'}); nothing was routed "
                  f"to it: set spec.stableVersion to a published, loaded version, or leave it unset for the one "
                  f"that serves now")
    else:
        st.update(reason=reason, message=f"waiting for stable v{stable}: {what} ({facts.detail or 'model store'})")
    return False


def _loading(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    waited = now - parse_ts(st.stage_started_at)
    if not obs.candidate.available:
        if waited >= spec.gate_timeout_s:
            after = ("nothing served before, so nothing is routed to it (the model config still names it)"
                     if st.initial else "model config reverted to stable only")
            _fail_now(st, now, events, "CandidateNotAvailable",
                      f"v{spec.candidate_version} not AVAILABLE after {waited:.0f}s ({obs.candidate.detail}); {after}")
        return
    if st.initial:
        events.append(Event("Normal", "CandidateAvailable",
                            f"v{spec.candidate_version} AVAILABLE after {waited:.1f}s; labelled stable, all traffic "
                            "routed to it"))
        st.update(stage=PROMOTING, stage_started_at=ts(now), candidate_weight=100, outcome=PROMOTED,
                  reason="InitialVersion",
                  message=f"initial version: 100% to v{spec.candidate_version} once frontends follow (nothing "
                          "served before, nothing to compare against)")
        return
    first = SHADOW if spec.strategy == "shadow" else ABTEST if spec.strategy == "abtest" else CANARY
    events.append(Event("Normal", "CandidateAvailable",
                        f"v{spec.candidate_version} AVAILABLE after {waited:.1f}s; labels and routing written"))
    _enter_traffic(st, spec, obs, now, first, events)


def _enter_traffic(st: Status, spec: RolloutSpec, obs: Observation, now: float, stage: Stage,
                   events: list[Event]) -> None:
    st.update(stage=stage, stage_started_at=ts(now), step_started_at=ts(now), failed_checks=0, last_verdict=None,
              last_check_at=ts(now), baseline=_snap(obs), totals={}, inconclusive_since=None)
    if stage == CANARY:
        st.update(step=0, candidate_weight=spec.canary.steps[0], reason="CanaryStep",
                  message=f"step 1/{len(spec.canary.steps)}: {spec.canary.steps[0]}% to v{spec.candidate_version}")
        events.append(Event("Normal", "CanaryStep", st.message))
    elif stage == ABTEST:
        st.update(candidate_weight=spec.abtest.split, sticky_header=spec.abtest.sticky_header,
                  reason="ABTestRunning",
                  message=f"A/B test {100 - spec.abtest.split}/{spec.abtest.split} for {spec.abtest.duration}")
        events.append(Event("Normal", "ABTestStarted", st.message + f", sticky by {spec.abtest.sticky_header}"))
    else:
        st.update(candidate_weight=0, shadow_percent=spec.shadow.percent, reason="ShadowRunning",
                  message=f"shadowing {spec.shadow.percent}% of requests to v{spec.candidate_version} "
                          f"for {spec.shadow.duration}")
        events.append(Event("Normal", "ShadowStarted", st.message))


def _snap(obs: Observation) -> dict[str, Any] | None:
    return obs.metrics.to_json() if obs.metrics is not None and obs.metrics.reachable else None


def _traffic(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    stage = st.stage
    last = parse_ts(st.last_check_at) or 0.0
    if now - last >= spec.interval_s:
        st.last_check_at = ts(now)
        if not _analyse(st, spec, obs, now, events):
            return  # rolling back or failed
    started = parse_ts(st.step_started_at if stage == CANARY else st.stage_started_at)
    held = now - started
    passed_here = st.last_verdict == "Passed" and (parse_ts(st.last_pass_at) or 0) >= started
    if stage == CANARY:
        if held >= spec.step_duration_s and passed_here:
            i = int(_or(st.step, 0)) + 1
            steps = spec.canary.steps
            what = "promotion" if i >= len(steps) else f"step {i + 1}/{len(steps)}"
            if not _on_every_replica(st, spec, obs, now, events, what):
                return
            if i >= len(steps):
                _promote(st, spec, now, events, f"all {len(steps)} canary steps passed")
            else:
                st.update(step=i, candidate_weight=max(steps[i], int(_or(st.candidate_weight, 0))),
                          step_started_at=ts(now), baseline=_snap(obs) or st.baseline, reason="CanaryStep",
                          message=f"step {i + 1}/{len(steps)}: {steps[i]}% to v{spec.candidate_version}")
                events.append(Event("Normal", "CanaryStep", st.message + f" after {held:.0f}s at the last step"))
    elif stage == SHADOW:
        if held >= spec.shadow_duration_s and passed_here:
            if not _on_every_replica(st, spec, obs, now, events,
                                     "promotion" if spec.shadow.promote == "switch" else "the canary"):
                return
            if spec.shadow.promote == "switch":
                _promote(st, spec, now, events, f"shadow passed for {held:.0f}s; switching")
            else:
                events.append(Event("Normal", "ShadowPassed", f"shadow passed for {held:.0f}s; starting the canary"))
                _enter_traffic(st, spec, obs, now, CANARY, events)
    elif stage == ABTEST and held >= spec.abtest_duration_s:
        _abtest_verdict(st, spec, obs, now, events)


def _analyse(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> bool:
    """One analysis: updates status; False when it ended the traffic stage (rollback or failure)."""
    stage, stable, cand = st.stage, st.stable_version, st.candidate_version
    a = spec.analysis
    if obs.metrics is None or not obs.metrics.reachable:
        why = "no frontend metrics reachable" + (f" ({'; '.join(obs.metrics.errors)[:300]})" if obs.metrics else "")
        return _inconclusive(st, spec, now, events, "MetricsUnavailable", why)
    baseline = an.Snapshot.from_json(st.baseline) if st.baseline else None
    if baseline is None:
        st.update(baseline=obs.metrics.to_json(), inconclusive_since=None, message="first reachable metrics: baseline")
        return True
    window = an.window_counters(baseline, obs.metrics)
    cs, ss = an.version_stats(window, cand), an.version_stats(window, stable)
    sh = an.shadow_stats(window, stable, cand)
    seen = sh.total if stage == SHADOW else cs.requests
    numbers = {"windowSeconds": round(now - baseline.taken_at, 3),
               "candidate": _stats_json(cs), "stable": _stats_json(ss)}
    if stage == SHADOW:
        numbers["shadow"] = {"compared": sh.compared, "agreement": sh.agreement, "errors": sh.errors,
                             "errorRate": sh.error_rate, "p99Ms": sh.p99_ms}
    if seen < a.min_requests:
        st.last_analysis = dict(numbers, time=ts(now), verdict="Inconclusive")
        return _inconclusive(st, spec, now, events, "NotEnoughTraffic",
                             f"{seen:.0f} candidate requests in {numbers['windowSeconds']:.0f}s < minRequests {a.min_requests}")
    failures: list[tuple[str, str]] = []  # (reason, message): the first failure's reason names the rollback
    if stage == SHADOW:
        if sh.agreement is not None and sh.compared >= a.min_requests and sh.agreement < a.min_agreement:
            failures.append(("LowAgreement", f"agreement {sh.agreement:.4f} < {a.min_agreement}"))
        if sh.error_rate is not None and sh.error_rate > a.max_error_rate:
            failures.append(("HighErrorRate", f"shadow error rate {sh.error_rate:.4f} > {a.max_error_rate}"))
        if sh.p99_ms is not None and sh.p99_ms > a.max_latency_p99_ms:
            failures.append(("HighLatency", f"shadow p99 {sh.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms"))
    else:
        if cs.error_rate is not None and cs.error_rate > a.max_error_rate:
            failures.append(("HighErrorRate", f"error rate {cs.error_rate:.4f} > {a.max_error_rate}"))
        if cs.p99_ms is not None and cs.p99_ms > a.max_latency_p99_ms:
            failures.append(("HighLatency", f"p99 {cs.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms"))
        if stage == CANARY and cs.feedback >= a.min_feedback and cs.accuracy is not None \
                and cs.accuracy < a.min_accuracy:
            failures.append(("LowAccuracy",
                             f"feedback accuracy {cs.accuracy:.4f} < {a.min_accuracy} (n={cs.feedback:.0f})"))
    messages = [message for _, message in failures]
    _add_totals(st, cs, ss)
    st.baseline = obs.metrics.to_json()
    st.inconclusive_since = None
    st.checks = int(_or(st.checks, 0)) + 1
    summary = _summary(stage, cs, ss, sh)
    st.last_analysis = dict(numbers, time=ts(now), verdict="Failed" if failures else "Passed", reasons=messages)
    if not failures:
        st.update(failed_checks=0, last_verdict="Passed", last_pass_at=ts(now))
        events.append(Event("Normal", "AnalysisPassed", summary))
        return True
    st.failed_checks = int(_or(st.failed_checks, 0)) + 1
    st.last_verdict = "Failed"
    n, limit = st.failed_checks, a.failure_limit
    reason = failures[0][0]
    events.append(Event("Warning", "AnalysisFailed", f"check {n}/{limit} failed: {'; '.join(messages)} [{summary}]"))
    st.update(reason=reason, message=f"{n}/{limit} failed checks: {'; '.join(messages)}")
    if n >= limit:
        _rollback(st, now, events, ROLLED_BACK, reason,
                  f"{n} consecutive failed checks: {'; '.join(messages)}")
        return False
    return True


def _stats_json(s: an.VersionStats) -> dict[str, Any]:
    return {"version": s.version, "requests": s.requests, "errorRate": s.error_rate, "p99Ms": s.p99_ms,
            "feedback": s.feedback, "accuracy": s.accuracy}


def _summary(stage: str, cs: an.VersionStats, ss: an.VersionStats, sh: an.ShadowStats) -> str:
    def one(s: an.VersionStats) -> str:
        return (f"v{s.version}: {s.requests:.0f} req, err {_fmt(s.error_rate)}, p99 {_fmt(s.p99_ms, '{:.1f}ms')}, "
                f"acc {_fmt(s.accuracy)} (n={s.feedback:.0f})")
    text = f"candidate {one(cs)} | stable {one(ss)}"
    if stage == SHADOW:
        text += (f" | shadow: {sh.compared:.0f} compared, agreement {_fmt(sh.agreement)}, "
                 f"err {_fmt(sh.error_rate)}, p99 {_fmt(sh.p99_ms, '{:.1f}ms')}")
    return text


def _add_totals(st: Status, cs: an.VersionStats, ss: an.VersionStats) -> None:
    """Accumulate feedback per stage from reset-safe windows (the A/B verdict is judged on the whole test)."""
    if st.totals is None:
        st.totals = {}
    for who, s in (("candidate", cs), ("stable", ss)):
        t = st.totals.setdefault(who, {"requests": 0.0, "errors": 0.0, "correct": 0.0, "wrong": 0.0})
        t["requests"] += s.requests
        t["errors"] += s.errors
        t["correct"] += s.correct
        t["wrong"] += s.wrong


def _inconclusive(st: Status, spec: RolloutSpec, now: float, events: list[Event], reason: str, why: str) -> bool:
    since = parse_ts(st.inconclusive_since)
    if since is None:
        st.inconclusive_since = ts(now)
        since = now
        events.append(Event("Warning", reason, f"holding: {why}"))
    st.update(reason=reason, message=f"holding: {why}")
    if now - since >= spec.inconclusive_timeout_s:
        _rollback(st, now, events, FAILED, reason,
                  f"inconclusive for {now - since:.0f}s (analysis.inconclusiveTimeout {spec.analysis.inconclusive_timeout}):"
                  f" {why}")
        return False
    return True


def _abtest_verdict(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    if obs.metrics is None or not obs.metrics.reachable or not st.baseline:
        _inconclusive(st, spec, now, events, "MetricsUnavailable", "A/B test ended but no metrics reachable to close it")
        return
    window = an.window_counters(an.Snapshot.from_json(st.baseline), obs.metrics)
    _add_totals(st, an.version_stats(window, st.candidate_version), an.version_stats(window, st.stable_version))
    st.baseline = obs.metrics.to_json()
    t = st.totals
    c, s = t["candidate"], t["stable"]
    nc, ns = c["correct"] + c["wrong"], s["correct"] + s["wrong"]
    pc = c["correct"] / nc if nc else 0.0
    ps = s["correct"] / ns if ns else 0.0
    ab = spec.abtest
    numbers = (f"candidate v{st.candidate_version} accuracy {pc:.4f} (n={nc:.0f}) vs stable v{st.stable_version} "
               f"{ps:.4f} (n={ns:.0f})")
    if min(nc, ns) < ab.min_samples:
        _rollback(st, now, events, FAILED, "NotEnoughFeedback",
                  f"A/B test over: {numbers}; each side needs abtest.minSamples {ab.min_samples}")
        return
    z = an.one_sided_z(pc, nc, ps, ns)
    zc = an.z_for_confidence(ab.confidence)
    st.last_analysis = dict(st.last_analysis or {}, abtest={"z": None if math.isinf(z) else z, "zCritical": zc,
                                                            "candidateAccuracy": pc, "stableAccuracy": ps,
                                                            "candidateN": nc, "stableN": ns})
    rule = (f"z={z:.2f}, critical {zc:.2f} at confidence {ab.confidence} "
            f"({'candidate must be better' if ab.require == 'better' else 'candidate must not be worse'})")
    wins = z >= zc if ab.require == "better" else z > -zc
    if wins and pc >= spec.analysis.min_accuracy:
        if _on_every_replica(st, spec, obs, now, events, "promotion"):  # else judged again, on more feedback
            _promote(st, spec, now, events, f"A/B test won: {numbers}; {rule}")
    elif wins:
        _rollback(st, now, events, ROLLED_BACK, "LowAccuracy",
                  f"A/B test: {numbers}; candidate below analysis.minAccuracy {spec.analysis.min_accuracy}")
    else:
        _rollback(st, now, events, ROLLED_BACK, "LostABTest", f"A/B test lost: {numbers}; {rule}")


def _promote(st: Status, spec: RolloutSpec, now: float, events: list[Event], why: str) -> None:
    st.update(stage=PROMOTING, stage_started_at=ts(now), candidate_weight=100, outcome=PROMOTED, reason="Promoting",
              message=f"all traffic to v{st.candidate_version}; unloading v{st.stable_version} once frontends "
                      f"follow: {why}")
    st.shadow_percent = None
    events.append(Event("Normal", "Promoting", f"{why}: 100% to v{st.candidate_version}"))


def _rollback(st: Status, now: float, events: list[Event], outcome: Phase, reason: str, why: str) -> None:
    st.update(stage=ROLLING_BACK, stage_started_at=ts(now), candidate_weight=0, outcome=outcome, reason=reason,
              message=f"rolling back to v{st.stable_version}: {why}")
    st.shadow_percent = None
    events.append(Event("Warning", "RollingBack", f"{why}: 100% back to stable v{st.stable_version}"))


def _fail_now(st: Status, now: float, events: list[Event], reason: str, why: str) -> None:
    """Failure before any traffic moved: nothing to drain."""
    st.update(phase=FAILED, stage=DONE, candidate_weight=0, reason=reason, message=why, finished_at=ts(now))
    events.append(Event("Warning", reason, why))


def _on_every_replica(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event],
                      what: str) -> bool:
    """True when every ready TF Serving replica reports the candidate AVAILABLE; else hold `what` and say why.

    A replica that joined mid-rollout (a new pod, or one restarted) loads the candidate only once its config says
    so: more traffic to the candidate would reach it as NOT_FOUND, and moving the stable label to a version it has
    not loaded is refused by TF Serving. Held longer than gate.timeout: rolled back (CandidateNotAvailable), since
    the rollout cannot go on and would otherwise hold traffic on a candidate forever.
    """
    if obs.candidate.available:
        st.replica_wait_since = None
        return True
    since = parse_ts(st.replica_wait_since)
    why = f"v{st.candidate_version} is not AVAILABLE on every TF Serving replica ({obs.candidate.detail})"
    if since is None:
        st.replica_wait_since, since = ts(now), now
        events.append(Event("Normal", "WaitingForReplicas", f"{what} held: {why}"))
    if now - since >= spec.gate_timeout_s and st.stage != PROMOTING:
        st.replica_wait_since = None
        _rollback(st, now, events, FAILED, "CandidateNotAvailable",
                  f"{why} for {now - since:.0f}s (gate.timeout {spec.gate.timeout})")
        return False
    st.update(reason="WaitingForReplicas", message=f"{what} held: {why}")
    return False


def _drain(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    if st.outcome == PROMOTED and not _on_every_replica(st, spec, obs, now, events, "unloading the old version"):
        return  # the final config leaves the stable label on the candidate alone: a lagging replica moves it then
    target = int(_or(st.routing_generation, 0))
    gens = an.routing_generations(obs.metrics) if obs.metrics and obs.metrics.reachable else []
    followed = bool(gens) and all(g is not None and g >= target for g in gens)
    waited = now - parse_ts(st.stage_started_at)
    if not followed and waited < spec.routing_timeout_s:
        st.message = _or(st.message, "").split(" [")[0] + f" [waiting for frontends to load routing {target}]"
        return
    note = (f"all {len(gens)} frontend(s) on routing generation >= {target}" if followed else
            f"frontends did not all report routing generation {target} within {spec.analysis.routing_timeout}")
    outcome = _or(st.outcome, ROLLED_BACK)
    st.outcome = None
    if outcome == PROMOTED and st.initial:
        msg = (f"v{st.candidate_version} is stable: the initial version of {st.model}, nothing served "
               f"before ({note})")
        st.update(phase=PROMOTED, stage=DONE, candidate_weight=100, reason="InitialVersion", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    elif outcome == PROMOTED:
        msg = f"v{st.candidate_version} is stable; v{st.stable_version} unloaded ({note})"
        st.update(phase=PROMOTED, stage=DONE, candidate_weight=100, reason="Promoted", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    else:
        msg = f"{_or(st.message, '')}; v{st.candidate_version} unloaded ({note})"
        st.update(phase=outcome, stage=DONE, candidate_weight=0, message=msg)
        events.append(Event("Warning", str(outcome), msg))
    st.finished_at = ts(now)


# -------------------------------------------------------------------------------------------------- finishing a tick


def _stamp_generation(st: Status, routing: RoutingState | None, obs: Observation) -> int:
    """Routing generation: unchanged when the document in place already says the same, else one more."""
    current = obs.current_routing if isinstance(obs.current_routing, dict) else {}
    cur_gen = current.get("generation") if isinstance(current.get("generation"), int) else 0
    mine = int(_or(st.routing_generation, 0))
    if routing is None:
        return max(mine, cur_gen)
    doc = routing_document(routing, 0)
    same = {k: v for k, v in current.items() if k != "generation"} == {k: v for k, v in doc.items()
                                                                      if k != "generation"}
    gen = cur_gen if same and cur_gen >= mine else max(mine, cur_gen) + (0 if same else 1)
    st.routing_generation = gen
    return gen


def _finish(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> Decision:
    if st.phase in TERMINAL:
        # Re-asserted until someone else writes routing, so a write lost to a crash is redone after a restart.
        serving, routing = (final_configs(st, obs.rollout, obs.serving_base_path) if _owns_routing(obs)
                            else None) or (None, None)
    else:
        serving, routing = desired_configs(st, obs.rollout, obs.serving_base_path)
    gen = _stamp_generation(st, routing, obs)
    _set_conditions(st, now)
    return Decision(st.to_json(), serving, routing, gen, events)  # what is stored: no nulls (merge patch)


def _owns_routing(obs: Observation) -> bool:
    return isinstance(obs.current_routing, dict) and obs.current_routing.get("rollout") == obs.rollout


def _set_conditions(st: Status, now: float) -> None:
    phase, reason, msg = st.phase, _or(st.reason, ""), _or(st.message, "")
    degraded = phase in (ROLLED_BACK, FAILED) or int(_or(st.failed_checks, 0)) > 0 or bool(st.inconclusive_since)
    wanted = {
        "Ready": (phase == PROMOTED, (reason or "Promoted") if phase == PROMOTED  # Promoted | InitialVersion
                  else (phase if phase in TERMINAL else "InProgress"), msg),
        "Progressing": (phase == PROGRESSING, reason if phase in (PROGRESSING, PENDING) else phase, msg),
        "Degraded": (degraded, reason if degraded else "Healthy", msg if degraded else "no failed or inconclusive checks"),
    }
    old = {c.get("type"): c for c in _or(st.conditions, []) if isinstance(c, dict)}
    out = []
    for ctype, (ok, why, text) in wanted.items():
        status = "True" if ok else "False"
        prev = old.get(ctype, {})
        changed = prev.get("status") != status
        out.append({"type": ctype, "status": status, "reason": str(why) if why else "Unknown",
                    "message": text[:1000],
                    "lastTransitionTime": ts(now) if changed or not prev.get("lastTransitionTime")
                    else prev["lastTransitionTime"]})
    st.conditions = out
