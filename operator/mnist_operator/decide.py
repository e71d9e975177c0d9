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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mnist_operator import analysis as an
from mnist_operator.merge_patch import without_nulls
from mnist_operator.render import Route, RoutingState, ServingState, routing_document, stable_version_of_routing
from mnist_operator.spec import RolloutSpec, SpecError, parse_spec, shown

PENDING, PROGRESSING, PAUSED, PROMOTED, ROLLED_BACK, FAILED = (
    "Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Failed")
TERMINAL = (PROMOTED, ROLLED_BACK, FAILED)
ACTIVE = (PROGRESSING, PAUSED)

WAITING, GATE, LOADING, CANARY, ABTEST, SHADOW, PROMOTING, ROLLING_BACK, DONE = (
    "Waiting", "Gate", "Loading", "Canary", "ABTest", "Shadow", "Promoting", "RollingBack", "Done")
TRAFFIC_STAGES = (CANARY, ABTEST, SHADOW)
# Stages whose decisions need the candidate's facts (the shells gather them only then): the gate and loading, and
# every later step that sends more traffic to the candidate or moves a label to it.
FACT_STAGES = (None, WAITING, GATE, LOADING, *TRAFFIC_STAGES, PROMOTING)
CANDIDATE_LABEL = {CANARY: "canary", ABTEST: "candidate", SHADOW: "shadow"}


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
    status: dict[str, Any]
    serving: ServingState | None
    routing: RoutingState | None
    routing_generation: int
    events: list[Event]

    @property
    def routing_document(self) -> dict[str, Any] | None:
        return None if self.routing is None else routing_document(self.routing, self.routing_generation)


def ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _fmt(x: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if x is None else pattern.format(x)


# ---------------------------------------------------------------------------------------------- configs from status


def desired_configs(status: dict[str, Any], rollout: str,
                    base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """The model config and routing implied by a status; (None, None) where this rollout must not write."""
    stage = status.get("stage")
    model, stable, cand = status.get("model"), status.get("stableVersion"), status.get("candidateVersion")
    if status.get("phase") in TERMINAL or stage in (None, WAITING) or model is None:
        return None, None
    if stable is None:
        return _initial_configs(status, rollout, base_path)
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
                                   shadow=(cand, int(status.get("shadowPercent", 100))), rollout=rollout)
        else:
            w = int(status.get("candidateWeight", 0))
            routes = tuple(r for r in (Route(stable, "stable", 100 - w), Route(cand, label, w)) if r.weight > 0)
            sticky = status.get("stickyHeader") if stage == ABTEST else None
            routing = RoutingState(model=model, strategy="abtest" if stage == ABTEST else "canary", routes=routes,
                                   sticky_header=sticky, rollout=rollout)
        return serving, routing
    return None, None


def _initial_configs(status: dict[str, Any], rollout: str,
                     base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """An initial rollout (nothing served before): load the candidate alone, then label it stable and route to it."""
    model, cand, stage = status["model"], status.get("candidateVersion"), status.get("stage")
    if not status.get("initial") or cand is None:
        return None, None
    if stage == LOADING:  # load first: no label may name a version TF Serving has not loaded yet
        return ServingState(model, base_path, (cand,), {}), None
    if stage == PROMOTING:
        return (ServingState(model, base_path, (cand,), {"stable": cand}),
                RoutingState(model=model, strategy="single", routes=(Route(cand, "stable", 100),), rollout=rollout))
    return None, None  # Gate: nothing serves and nothing is written yet


def final_configs(status: dict[str, Any], rollout: str, base_path: str) -> tuple[ServingState, RoutingState] | None:
    """What a finished rollout leaves behind (also what deletion of an unfinished one restores)."""
    model, stable, cand = status.get("model"), status.get("stableVersion"), status.get("candidateVersion")
    promoted = status.get("phase") == PROMOTED
    if model is None or (stable is None and not promoted) or (promoted and cand is None):
        return None  # an initial rollout that did not finish has no stable version to go back to: touch nothing
    keep = cand if promoted else stable
    return (ServingState(model, base_path, (keep,), {"stable": keep}),
            RoutingState(model=model, strategy="single", routes=(Route(keep, "stable", 100),), rollout=rollout))


def on_delete(status: dict[str, Any], rollout: str, base_path: str) -> tuple[ServingState, RoutingState] | None:
    """Configs to write when an unfinished rollout is deleted: everything back to stable; None: touch nothing."""
    if status.get("phase") in TERMINAL or status.get("stage") in (None, WAITING):
        return None
    back = dict(status, phase=ROLLED_BACK)
    return final_configs(back, rollout, base_path)


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


def decide(spec_dict: dict[str, Any], status: dict[str, Any] | None, obs: Observation, now: float) -> Decision:
    """One tick of one rollout."""
    # A private copy without nulls: a stored status has none (a merge patch deletes null keys), so a status read
    # back after a patch and the one decided from are the same thing (merge_patch.py).
    st = without_nulls(status or {})
    events: list[Event] = []
    try:
        spec = parse_spec(spec_dict)
    except SpecError as exc:
        return _invalid_spec(st, obs, now, str(exc), events)

    if st.get("phase") in TERMINAL:
        restart = st.get("plan") != spec.plan_key() or st.get("reason") == "InvalidSpec"
        if not (restart and st.get("observedGeneration") != obs.generation):
            st["observedGeneration"] = obs.generation
            return _finish(st, spec, obs, now, events)
        events.append(Event("Normal", "Replanned", f"spec changed after {st['phase']}: starting again"))
        st = {"routingGeneration": st.get("routingGeneration", 0)}

    if not st.get("phase"):
        st.update(phase=PENDING, stage=WAITING, startedAt=ts(now), stageStartedAt=ts(now), failedChecks=0,
                  candidateWeight=0, step=-1, checks=0, reason="Created", message="waiting for its turn")
        events.append(Event("Normal", "Created", f"rollout of {spec.model} v{spec.candidate_version} "
                                                 f"({spec.strategy}) accepted"))

    if st.get("observedGeneration") not in (None, obs.generation) and st.get("plan"):
        _replan(st, spec, obs, now, events)
    st["observedGeneration"] = obs.generation

    if st["phase"] == PENDING:
        if obs.blocked_by:
            if st.get("blockedBy") != obs.blocked_by:
                events.append(Event("Normal", "Waiting", f"{obs.blocked_by} is rolling out {spec.model}; "
                                                         "this rollout starts when it finishes"))
            st.update(blockedBy=obs.blocked_by, reason="WaitingForRollout",
                      message=f"waiting: {obs.blocked_by} holds model {spec.model}")
            return _finish(st, spec, obs, now, events)
        st.pop("blockedBy", None)
        st.update(phase=PROGRESSING, stage=GATE, stageStartedAt=ts(now), plan=spec.plan_key(), model=spec.model,
                  candidateVersion=spec.candidate_version, strategy=spec.strategy, reason="Gate",
                  message="checking the candidate")

    if spec.paused and st["phase"] == PROGRESSING:
        st.update(phase=PAUSED, pausedAt=ts(now), reason="Paused", message=f"paused at {st.get('stage')}")
        events.append(Event("Normal", "Paused", f"paused at stage {st.get('stage')}, candidate weight "
                                                f"{st.get('candidateWeight', 0)}%"))
    elif not spec.paused and st["phase"] == PAUSED:
        held = now - (parse_ts(st.pop("pausedAt", None)) or now)
        for key in ("stageStartedAt", "stepStartedAt", "inconclusiveSince", "lastCheckAt", "replicaWaitSince"):
            if st.get(key):
                st[key] = ts(parse_ts(st[key]) + held)
        st["baseline"] = obs.metrics.to_json() if obs.metrics and obs.metrics.reachable else None
        st.update(phase=PROGRESSING, reason="Resumed", message=f"resumed at {st.get('stage')}")
        events.append(Event("Normal", "Resumed", f"resumed after {held:.0f}s at stage {st.get('stage')}"))
    if st["phase"] == PAUSED:
        return _finish(st, spec, obs, now, events)

    stage = st["stage"]
    if stage == GATE:
        _gate(st, spec, obs, now, events)
    elif stage == LOADING:
        _loading(st, spec, obs, now, events)
    elif stage in TRAFFIC_STAGES:
        _traffic(st, spec, obs, now, events)
    elif stage in (PROMOTING, ROLLING_BACK):
        _drain(st, spec, obs, now, events)
    return _finish(st, spec, obs, now, events)


def _invalid_spec(st: dict[str, Any], obs: Observation, now: float, why: str, events: list[Event]) -> Decision:
    already = st.get("phase") == FAILED and st.get("reason") == "InvalidSpec" and st.get("message") == why
    if not already:
        events.append(Event("Warning", "InvalidSpec", why))
    st.update(phase=FAILED, stage=DONE, reason="InvalidSpec", message=why, candidateWeight=0,
              observedGeneration=obs.generation)
    st.setdefault("startedAt", ts(now))
    serving = routing = None
    if _owns_routing(obs):  # it had written configs: put stable back, now
        configs = final_configs(st, obs.rollout, obs.serving_base_path)
        if configs:
            serving, routing = configs
            if not already:
                events.append(Event("Warning", "RolledBack", f"traffic back to stable v{st['stableVersion']}: {why}"))
    _set_conditions(st, now)
    gen = _stamp_generation(st, routing, obs)
    return Decision(without_nulls(st), serving, routing, gen, events)


def _replan(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    """The spec changed mid-rollout: restart from the gate if what is rolled out changed, else adapt in place."""
    if st.get("plan") != spec.plan_key():
        old = st.get("plan")
        # Still holding the model: straight back to the gate, which writes stable-only configs this very tick.
        keep = {k: st[k] for k in ("startedAt", "routingGeneration", "observedGeneration", "stableVersion", "model",
                                   "phase") if k in st}
        st.clear()
        st.update(keep)
        st.update(stage=GATE if keep.get("phase") in ACTIVE else WAITING, stageStartedAt=ts(now), failedChecks=0,
                  candidateWeight=0, step=-1, checks=0, reason="Replanned", plan=spec.plan_key(),
                  candidateVersion=spec.candidate_version, strategy=spec.strategy,
                  message="spec changed: starting again from the gate")
        if keep.get("phase") not in ACTIVE:
            st["phase"] = PENDING
        events.append(Event("Normal", "Replanned", f"{old} -> {spec.plan_key()}: traffic back to stable, "
                                                   "starting again from the gate"))
        return
    if st.get("stage") == CANARY:
        w = int(st.get("candidateWeight", 0))
        steps = spec.canary.steps
        st["step"] = steps.index(w) if w in steps else sum(1 for s in steps if s < w) - 1
        events.append(Event("Normal", "Replanned", f"canary steps now {list(steps)}: holding at {w}%, "
                                                   f"step {st['step'] + 1} of {len(steps)}"))
    if st.get("stage") == ABTEST:
        st["stickyHeader"] = spec.abtest.sticky_header
    if st.get("stage") == SHADOW:
        st["shadowPercent"] = spec.shadow.percent


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


def _gate(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
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
        if not st.get("initial"):
            st["initial"] = True
            events.append(Event("Normal", "InitialVersion",
                                f"no version served yet: v{spec.candidate_version} becomes stable after passing "
                                "the gate, nothing to compare against"))
        st.pop("stableVersion", None)
    elif stable == spec.candidate_version:
        _fail_now(st, now, events, "CandidateAlreadyStable", f"v{stable} already serves as stable")
        return
    else:
        st.pop("initial", None)
        if not _stable_ready(st, spec, obs, now, events, stable):
            return
        st["stableVersion"] = stable  # from here on the configs name it: it is published and AVAILABLE
    c = obs.candidate
    waited = now - parse_ts(st["stageStartedAt"])
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
    st.update(stage=LOADING, stageStartedAt=ts(now), reason="LoadingCandidate",
              message=f"waiting for v{spec.candidate_version} to be AVAILABLE")


def _stable_ready(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event],
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
    waited = now - parse_ts(st["stageStartedAt"])
    if waited >= spec.gate_timeout_s:
        _fail_now(st, now, events, reason,
                  f"stable v{stable} {what} after {waited:.0f}s ({facts.detail or 'model store'}); nothing was routed "
                  f"to it: set spec.stableVersion to a published, loaded version, or leave it unset for the one "
                  f"that serves now")
    else:
        st.update(reason=reason, message=f"waiting for stable v{stable}: {what} ({facts.detail or 'model store'})")
    return False


def _loading(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    waited = now - parse_ts(st["stageStartedAt"])
    if not obs.candidate.available:
        if waited >= spec.gate_timeout_s:
            after = ("nothing served before, so nothing is routed to it (the model config still names it)"
                     if st.get("initial") else "model config reverted to stable only")
            _fail_now(st, now, events, "CandidateNotAvailable",
                      f"v{spec.candidate_version} not AVAILABLE after {waited:.0f}s ({obs.candidate.detail}); {after}")
        return
    if st.get("initial"):
        events.append(Event("Normal", "CandidateAvailable",
                            f"v{spec.candidate_version} AVAILABLE after {waited:.1f}s; labelled stable, all traffic "
                            "routed to it"))
        st.update(stage=PROMOTING, stageStartedAt=ts(now), candidateWeight=100, outcome=PROMOTED,
                  reason="InitialVersion",
                  message=f"initial version: 100% to v{spec.candidate_version} once frontends follow (nothing "
                          "served before, nothing to compare against)")
        return
    first = SHADOW if spec.strategy == "shadow" else ABTEST if spec.strategy == "abtest" else CANARY
    events.append(Event("Normal", "CandidateAvailable",
                        f"v{spec.candidate_version} AVAILABLE after {waited:.1f}s; labels and routing written"))
    _enter_traffic(st, spec, obs, now, first, events)


def _enter_traffic(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, stage: str,
                   events: list[Event]) -> None:
    st.update(stage=stage, stageStartedAt=ts(now), stepStartedAt=ts(now), failedChecks=0, lastVerdict=None,
              lastCheckAt=ts(now), baseline=_snap(obs), totals={}, inconclusiveSince=None)
    if stage == CANARY:
        st.update(step=0, candidateWeight=spec.canary.steps[0], reason="CanaryStep",
                  message=f"step 1/{len(spec.canary.steps)}: {spec.canary.steps[0]}% to v{spec.candidate_version}")
        events.append(Event("Normal", "CanaryStep", st["message"]))
    elif stage == ABTEST:
        st.update(candidateWeight=spec.abtest.split, stickyHeader=spec.abtest.sticky_header, reason="ABTestRunning",
                  message=f"A/B test {100 - spec.abtest.split}/{spec.abtest.split} for {spec.abtest.duration}")
        events.append(Event("Normal", "ABTestStarted", st["message"] + f", sticky by {spec.abtest.sticky_header}"))
    else:
        st.update(candidateWeight=0, shadowPercent=spec.shadow.percent, reason="ShadowRunning",
                  message=f"shadowing {spec.shadow.percent}% of requests to v{spec.candidate_version} "
                          f"for {spec.shadow.duration}")
        events.append(Event("Normal", "ShadowStarted", st["message"]))


def _snap(obs: Observation) -> dict[str, Any] | None:
    return obs.metrics.to_json() if obs.metrics is not None and obs.metrics.reachable else None


def _traffic(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    stage = st["stage"]
    last = parse_ts(st.get("lastCheckAt")) or 0.0
    if now - last >= spec.interval_s:
        st["lastCheckAt"] = ts(now)
        if not _analyse(st, spec, obs, now, events):
            return  # rolling back or failed
    started = parse_ts(st["stepStartedAt"] if stage == CANARY else st["stageStartedAt"])
    held = now - started
    passed_here = st.get("lastVerdict") == "Passed" and (parse_ts(st.get("lastPassAt")) or 0) >= started
    if stage == CANARY:
        if held >= spec.step_duration_s and passed_here:
            i = int(st.get("step", 0)) + 1
            steps = spec.canary.steps
            what = "promotion" if i >= len(steps) else f"step {i + 1}/{len(steps)}"
            if not _on_every_replica(st, spec, obs, now, events, what):
                return
            if i >= len(steps):
                _promote(st, spec, now, events, f"all {len(steps)} canary steps passed")
            else:
                st.update(step=i, candidateWeight=max(steps[i], int(st.get("candidateWeight", 0))),
                          stepStartedAt=ts(now), baseline=_snap(obs) or st.get("baseline"), reason="CanaryStep",
                          message=f"step {i + 1}/{len(steps)}: {steps[i]}% to v{spec.candidate_version}")
                events.append(Event("Normal", "CanaryStep", st["message"] + f" after {held:.0f}s at the last step"))
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


def _analyse(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> bool:
    """One analysis: updates status; False when it ended the traffic stage (rollback or failure)."""
    stage, stable, cand = st["stage"], st["stableVersion"], st["candidateVersion"]
    a = spec.analysis
    if obs.metrics is None or not obs.metrics.reachable:
        why = "no frontend metrics reachable" + (f" ({'; '.join(obs.metrics.errors)[:300]})" if obs.metrics else "")
        return _inconclusive(st, spec, now, events, "MetricsUnavailable", why)
    baseline = an.Snapshot.from_json(st["baseline"]) if st.get("baseline") else None
    if baseline is None:
        st.update(baseline=obs.metrics.to_json(), inconclusiveSince=None, message="first reachable metrics: baseline")
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
        st["lastAnalysis"] = dict(numbers, time=ts(now), verdict="Inconclusive")
        return _inconclusive(st, spec, now, events, "NotEnoughTraffic",
                             f"{seen:.0f} candidate requests in {numbers['windowSeconds']:.0f}s < minRequests {a.min_requests}")
    failures: list[str] = []
    if stage == SHADOW:
        if sh.agreement is not None and sh.compared >= a.min_requests and sh.agreement < a.min_agreement:
            failures.append(f"agreement {sh.agreement:.4f} < {a.min_agreement}")
        if sh.error_rate is not None and sh.error_rate > a.max_error_rate:
            failures.append(f"shadow error rate {sh.error_rate:.4f} > {a.max_error_rate}")
        if sh.p99_ms is not None and sh.p99_ms > a.max_latency_p99_ms:
            failures.append(f"shadow p99 {sh.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms")
    else:
        if cs.error_rate is not None and cs.error_rate > a.max_error_rate:
            failures.append(f"error rate {cs.error_rate:.4f} > {a.max_error_rate}")
        if cs.p99_ms is not None and cs.p99_ms > a.max_latency_p99_ms:
            failures.append(f"p99 {cs.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms")
        if stage == CANARY and cs.feedback >= a.min_feedback and cs.accuracy is not None \
                and cs.accuracy < a.min_accuracy:
            failures.append(f"feedback accuracy {cs.accuracy:.4f} < {a.min_accuracy} (n={cs.feedback:.0f})")
    _add_totals(st, cs, ss)
    st["baseline"] = obs.metrics.to_json()
    st["inconclusiveSince"] = None
    st["checks"] = int(st.get("checks", 0)) + 1
    summary = _summary(stage, cs, ss, sh)
    st["lastAnalysis"] = dict(numbers, time=ts(now), verdict="Failed" if failures else "Passed",
                              reasons=failures)
    if not failures:
        st.update(failedChecks=0, lastVerdict="Passed", lastPassAt=ts(now))
        events.append(Event("Normal", "AnalysisPassed", summary))
        return True
    st["failedChecks"] = int(st.get("failedChecks", 0)) + 1
    st["lastVerdict"] = "Failed"
    n, limit = st["failedChecks"], a.failure_limit
    reason = _failure_reason(failures)
    events.append(Event("Warning", "AnalysisFailed", f"check {n}/{limit} failed: {'; '.join(failures)} [{summary}]"))
    st.update(reason=reason, message=f"{n}/{limit} failed checks: {'; '.join(failures)}")
    if n >= limit:
        _rollback(st, now, events, ROLLED_BACK, reason,
                  f"{n} consecutive failed checks: {'; '.join(failures)}")
        return False
    return True


def _failure_reason(failures: list[str]) -> str:
    first = failures[0]
    for key, reason in (("agreement", "LowAgreement"), ("error rate", "HighErrorRate"), ("p99", "HighLatency"),
                        ("accuracy", "LowAccuracy")):
        if key in first:
            return reason
    return "AnalysisFailed"


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


def _add_totals(st: dict[str, Any], cs: an.VersionStats, ss: an.VersionStats) -> None:
    """Accumulate feedback per stage from reset-safe windows (the A/B verdict is judged on the whole test)."""
    totals = st.setdefault("totals", {})
    for who, s in (("candidate", cs), ("stable", ss)):
        t = totals.setdefault(who, {"requests": 0.0, "errors": 0.0, "correct": 0.0, "wrong": 0.0})
        t["requests"] += s.requests
        t["errors"] += s.errors
        t["correct"] += s.correct
        t["wrong"] += s.wrong


def _inconclusive(st: dict[str, Any], spec: RolloutSpec, now: float, events: list[Event], reason: str,
                  why: str) -> bool:
    since = parse_ts(st.get("inconclusiveSince"))
    if since is None:
        st["inconclusiveSince"] = ts(now)
        since = now
        events.append(Event("Warning", reason, f"holding: {why}"))
    st.update(reason=reason, message=f"holding: {why}")
    if now - since >= spec.inconclusive_timeout_s:
        _rollback(st, now, events, FAILED, reason,
                  f"inconclusive for {now - since:.0f}s (analysis.inconclusiveTimeout {spec.analysis.inconclusive_timeout}):"
                  f" {why}")
        return False
    return True


def _abtest_verdict(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    if obs.metrics is None or not obs.metrics.reachable or not st.get("baseline"):
        _inconclusive(st, spec, now, events, "MetricsUnavailable", "A/B test ended but no metrics reachable to close it")
        return
    window = an.window_counters(an.Snapshot.from_json(st["baseline"]), obs.metrics)
    _add_totals(st, an.version_stats(window, st["candidateVersion"]), an.version_stats(window, st["stableVersion"]))
    st["baseline"] = obs.metrics.to_json()
    t = st["totals"]
    c, s = t["candidate"], t["stable"]
    nc, ns = c["correct"] + c["wrong"], s["correct"] + s["wrong"]
    pc = c["correct"] / nc if nc else 0.0
    ps = s["correct"] / ns if ns else 0.0
    ab = spec.abtest
    numbers = (f"candidate v{st['candidateVersion']} accuracy {pc:.4f} (n={nc:.0f}) vs stable v{st['stableVersion']} "
               f"{ps:.4f} (n={ns:.0f})")
    if min(nc, ns) < ab.min_samples:
        _rollback(st, now, events, FAILED, "NotEnoughFeedback",
                  f"A/B test over: {numbers}; each side needs abtest.minSamples {ab.min_samples}")
        return
    z = an.one_sided_z(pc, nc, ps, ns)
    zc = an.z_for_confidence(ab.confidence)
    st["lastAnalysis"] = dict(st.get("lastAnalysis") or {}, abtest={"z": None if math.isinf(z) else z, "zCritical": zc,
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


def _promote(st: dict[str, Any], spec: RolloutSpec, now: float, events: list[Event], why: str) -> None:
    st.update(stage=PROMOTING, stageStartedAt=ts(now), candidateWeight=100, outcome=PROMOTED, reason="Promoting",
              message=f"all traffic to v{st['candidateVersion']}; unloading v{st['stableVersion']} once frontends "
                      f"follow: {why}")
    st.pop("shadowPercent", None)
    events.append(Event("Normal", "Promoting", f"{why}: 100% to v{st['candidateVersion']}"))


def _rollback(st: dict[str, Any], now: float, events: list[Event], outcome: str, reason: str, why: str) -> None:
    st.update(stage=ROLLING_BACK, stageStartedAt=ts(now), candidateWeight=0, outcome=outcome, reason=reason,
              message=f"rolling back to v{st['stableVersion']}: {why}")
    st.pop("shadowPercent", None)
    events.append(Event("Warning", "RollingBack", f"{why}: 100% back to stable v{st['stableVersion']}"))


def _fail_now(st: dict[str, Any], now: float, events: list[Event], reason: str, why: str) -> None:
    """Failure before any traffic moved: nothing to drain."""
    st.update(phase=FAILED, stage=DONE, candidateWeight=0, reason=reason, message=why, finishedAt=ts(now))
    events.append(Event("Warning", reason, why))


def _on_every_replica(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event],
                      what: str) -> bool:
    """True when every ready TF Serving replica reports the candidate AVAILABLE; else hold `what` and say why.

    A replica that joined mid-rollout (a new pod, or one restarted) loads the candidate only once its config says
    so: more traffic to the candidate would reach it as NOT_FOUND, and moving the stable label to a version it has
    not loaded is refused by TF Serving. Held longer than gate.timeout: rolled back (CandidateNotAvailable), since
    the rollout cannot go on and would otherwise hold traffic on a candidate forever.
    """
    if obs.candidate.available:
        st.pop("replicaWaitSince", None)
        return True
    since = parse_ts(st.get("replicaWaitSince"))
    why = f"v{st['candidateVersion']} is not AVAILABLE on every TF Serving replica ({obs.candidate.detail})"
    if since is None:
        st["replicaWaitSince"], since = ts(now), now
        events.append(Event("Normal", "WaitingForReplicas", f"{what} held: {why}"))
    if now - since >= spec.gate_timeout_s and st.get("stage") != PROMOTING:
        st.pop("replicaWaitSince", None)
        _rollback(st, now, events, FAILED, "CandidateNotAvailable",
                  f"{why} for {now - since:.0f}s (gate.timeout {spec.gate.timeout})")
        return False
    st.update(reason="WaitingForReplicas", message=f"{what} held: {why}")
    return False


def _drain(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    if st.get("outcome") == PROMOTED and not _on_every_replica(st, spec, obs, now, events, "unloading the old version"):
        return  # the final config leaves the stable label on the candidate alone: a lagging replica moves it then
    target = int(st.get("routingGeneration", 0))
    gens = an.routing_generations(obs.metrics) if obs.metrics and obs.metrics.reachable else []
    followed = bool(gens) and all(g is not None and g >= target for g in gens)
    waited = now - parse_ts(st["stageStartedAt"])
    if not followed and waited < spec.routing_timeout_s:
        st["message"] = st.get("message", "").split(" [")[0] + f" [waiting for frontends to load routing {target}]"
        return
    note = (f"all {len(gens)} frontend(s) on routing generation >= {target}" if followed else
            f"frontends did not all report routing generation {target} within {spec.analysis.routing_timeout}")
    outcome = st.pop("outcome", ROLLED_BACK)
    if outcome == PROMOTED and st.get("initial"):
        msg = (f"v{st['candidateVersion']} is stable: the initial version of {st.get('model')}, nothing served "
               f"before ({note})")
        st.update(phase=PROMOTED, stage=DONE, candidateWeight=100, reason="InitialVersion", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    elif outcome == PROMOTED:
        msg = f"v{st['candidateVersion']} is stable; v{st['stableVersion']} unloaded ({note})"
        st.update(phase=PROMOTED, stage=DONE, candidateWeight=100, reason="Promoted", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    else:
        msg = f"{st.get('message', '')}; v{st['candidateVersion']} unloaded ({note})"
        st.update(phase=outcome, stage=DONE, candidateWeight=0, message=msg)
        events.append(Event("Warning", outcome, msg))
    st["finishedAt"] = ts(now)


# -------------------------------------------------------------------------------------------------- finishing a tick


def _stamp_generation(st: dict[str, Any], routing: RoutingState | None, obs: Observation) -> int:
    """Routing generation: unchanged when the document in place already says the same, else one more."""
    current = obs.current_routing if isinstance(obs.current_routing, dict) else {}
    cur_gen = current.get("generation") if isinstance(current.get("generation"), int) else 0
    mine = int(st.get("routingGeneration", 0))
    if routing is None:
        return max(mine, cur_gen)
    doc = routing_document(routing, 0)
    same = {k: v for k, v in current.items() if k != "generation"} == {k: v for k, v in doc.items()
                                                                      if k != "generation"}
    gen = cur_gen if same and cur_gen >= mine else max(mine, cur_gen) + (0 if same else 1)
    st["routingGeneration"] = gen
    return gen


def _finish(st: dict[str, Any], spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> Decision:
    if st.get("phase") in TERMINAL:
        # Re-asserted until someone else writes routing, so a write lost to a crash is redone after a restart.
        serving, routing = (final_configs(st, obs.rollout, obs.serving_base_path) if _owns_routing(obs)
                            else None) or (None, None)
    else:
        serving, routing = desired_configs(st, obs.rollout, obs.serving_base_path)
    gen = _stamp_generation(st, routing, obs)
    _set_conditions(st, now)
    return Decision(without_nulls(st), serving, routing, gen, events)  # what is stored: no nulls (merge patch)


def _owns_routing(obs: Observation) -> bool:
    return isinstance(obs.current_routing, dict) and obs.current_routing.get("rollout") == obs.rollout


def _set_conditions(st: dict[str, Any], now: float) -> None:
    phase, reason, msg = st.get("phase"), st.get("reason", ""), st.get("message", "")
    degraded = phase in (ROLLED_BACK, FAILED) or int(st.get("failedChecks", 0)) > 0 or bool(st.get("inconclusiveSince"))
    wanted = {
        "Ready": (phase == PROMOTED, (reason or "Promoted") if phase == PROMOTED  # Promoted | InitialVersion
                  else (phase if phase in TERMINAL else "InProgress"), msg),
        "Progressing": (phase == PROGRESSING, reason if phase in (PROGRESSING, PENDING) else phase, msg),
        "Degraded": (degraded, reason if degraded else "Healthy", msg if degraded else "no failed or inconclusive checks"),
    }
    old = {c.get("type"): c for c in st.get("conditions", []) if isinstance(c, dict)}
    out = []
    for ctype, (ok, why, text) in wanted.items():
        status = "True" if ok else "False"
        prev = old.get(ctype, {})
        changed = prev.get("status") != status
        out.append({"type": ctype, "status": status, "reason": why or "Unknown", "message": text[:1000],
                    "lastTransitionTime": ts(now) if changed or not prev.get("lastTransitionTime")
                    else prev["lastTransitionTime"]})
    st["conditions"] = out
