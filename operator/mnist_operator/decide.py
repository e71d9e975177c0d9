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

This module is the tick (arbitration, pause, replanning, conditions, the routing generation) and the public entry
the shells import; the parts live beside it: status.py (the Status type), observation.py (the facts gathered),
configs.py (configs from a status), stages.py (one function per stage) and verdict.py (judging the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnist_operator.configs import CANDIDATE_LABEL, as_status, deleted_configs, desired_configs, final_configs
from mnist_operator.merge_patch import without_nulls
from mnist_operator.observation import CandidateInfo, Observation
from mnist_operator.render import RoutingState, ServingState, routing_document
from mnist_operator.spec import RolloutSpec, SpecError, parse_spec
from mnist_operator.stages import Event, advance, serves_nothing, stable_to_check
from mnist_operator.status import ACTIVE, TERMINAL, TRAFFIC_STAGES, Phase, Stage, Status, parse_ts, ts, value_or

# The public entry: the shells, tests and benchmarks import these names from here.
__all__ = ["ABTEST", "ACTIVE", "CANARY", "CANDIDATE_LABEL", "DONE", "FACT_STAGES", "FAILED", "GATE", "LOADING",
           "PAUSED", "PENDING", "PROGRESSING", "PROMOTED", "PROMOTING", "ROLLED_BACK", "ROLLING_BACK", "SHADOW",
           "TERMINAL", "TRAFFIC_STAGES", "WAITING", "CandidateInfo", "Decision", "Event", "Observation", "Phase",
           "Stage", "Status", "blocking_rollout", "decide", "desired_configs", "final_configs", "on_delete",
           "parse_ts", "serves_nothing", "stable_to_check", "ts", "FactsNeeded", "facts_needed", "next_delay",
           "TERMINAL_RECHECK_S", "restores_on_delete", "steady_delay"]

PENDING, PROGRESSING, PAUSED, PROMOTED, ROLLED_BACK, FAILED = (
    Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)
WAITING, GATE, LOADING, CANARY, ABTEST, SHADOW, PROMOTING, ROLLING_BACK, DONE = (
    Stage.WAITING, Stage.GATE, Stage.LOADING, Stage.CANARY, Stage.ABTEST, Stage.SHADOW, Stage.PROMOTING,
    Stage.ROLLING_BACK, Stage.DONE)
# Stages whose decisions need the candidate's facts (the shells gather them only then): the gate and loading, and
# every later step that sends more traffic to the candidate or moves a label to it.
FACT_STAGES = (None, WAITING, GATE, LOADING, *TRAFFIC_STAGES, PROMOTING)
TERMINAL_RECHECK_S = 60.0  # a finished rollout is looked at again this often (its configs are re-asserted)


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


# ------------------------------------------------------------------------------------ what the shells do around a tick


@dataclass(frozen=True)
class FactsNeeded:
    """Which facts a shell gathers before the next decision: each costs API or HTTP calls."""

    arbitration: bool  # the other rollouts of the model (blocking_rollout): until this one is active
    candidate: bool  # the candidate's facts (and the TF Serving replicas to ask)
    stable: bool  # the stable version's facts: the gate checks it before any config names it
    metrics: bool  # a metrics snapshot: while traffic is judged or frontends are followed


def facts_needed(status: Status | dict[str, Any]) -> FactsNeeded:
    """The facts a rollout in this status needs for its next decision."""
    st = as_status(status)
    return FactsNeeded(arbitration=st.phase not in ACTIVE, candidate=st.stage in FACT_STAGES,
                       stable=st.stage in (None, WAITING, GATE),
                       metrics=st.stage in (*TRAFFIC_STAGES, LOADING, PROMOTING, ROLLING_BACK))


def next_delay(status: Status | dict[str, Any], spec: dict[str, Any], max_tick_s: float,
               before: Status | dict[str, Any] | None = None) -> float:
    """How long until the next decision is useful: at once after a stage change (`before` is the status the tick
    started from), sooner while a fact is awaited or traffic judged, rarely once finished."""
    st = as_status(status)
    if before is not None and as_status(before).stage != st.stage:
        return 0.0  # a new stage often has its next fact ready already (e.g. the candidate is AVAILABLE)
    if st.phase in TERMINAL:
        return TERMINAL_RECHECK_S
    try:
        interval = parse_spec(spec).interval_s
    except SpecError:
        return TERMINAL_RECHECK_S
    if st.stage in (GATE, LOADING, PROMOTING, ROLLING_BACK):
        return min(0.5, max_tick_s)  # polling for a fact (AVAILABLE, frontends on new routing): look often
    return steady_delay(interval, max_tick_s)


def steady_delay(interval_s: float, max_tick_s: float) -> float:
    """The cadence while traffic is judged: twice per analysis interval, within 0.2 s and max_tick_s. Local mode
    keeps it at every stage (docs/DEVELOPMENT.md says why)."""
    return max(0.2, min(interval_s / 2, max_tick_s))


def restores_on_delete(status: Status | dict[str, Any], rollout: str, base_path: str) -> bool:
    """Whether deleting this rollout writes anything (on_delete may still find the routing someone else's)."""
    return deleted_configs(status, rollout, base_path) is not None


def on_delete(status: Status | dict[str, Any], rollout: str, base_path: str,
              current_routing: dict[str, Any] | None) -> Decision | None:
    """What deleting an unfinished rollout writes: all traffic back to stable and the candidate unloaded, stamped one
    routing generation past both the status's and the document in place. None: touch nothing (finished, never
    started, an initial rollout with nothing to go back to, or the model's routing now belongs to another rollout)."""
    st = as_status(status)
    configs = deleted_configs(st, rollout, base_path)
    if configs is None:
        return None
    if isinstance(current_routing, dict) and current_routing.get("rollout") not in (None, rollout):
        return None  # someone else owns the model's routing now
    serving, routing = configs
    gen = max(int(value_or(st.routing_generation, 0)), int((current_routing or {}).get("generation") or 0)) + 1
    msg = f"deleted mid-rollout: 100% back to stable v{st.stable_version}, v{st.candidate_version} unloaded"
    return Decision(st.to_json(), serving, routing, gen, [Event("Warning", "RolledBackOnDelete", msg)])


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
        st = Status(routing_generation=value_or(st.routing_generation, 0))

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
                                                f"{value_or(st.candidate_weight, 0)}%"))
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

    advance(st, spec, obs, now, events)
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
        w = int(value_or(st.candidate_weight, 0))
        steps = spec.canary.steps
        st.step = steps.index(w) if w in steps else sum(1 for s in steps if s < w) - 1
        events.append(Event("Normal", "Replanned", f"canary steps now {list(steps)}: holding at {w}%, "
                                                   f"step {st.step + 1} of {len(steps)}"))
    if st.stage == ABTEST:
        st.sticky_header = spec.abtest.sticky_header
    if st.stage == SHADOW:
        st.shadow_percent = spec.shadow.percent


# -------------------------------------------------------------------------------------------------- finishing a tick


def _stamp_generation(st: Status, routing: RoutingState | None, obs: Observation) -> int:
    """Routing generation: unchanged when the document in place already says the same, else one more."""
    current = obs.current_routing if isinstance(obs.current_routing, dict) else {}
    cur_gen = current.get("generation") if isinstance(current.get("generation"), int) else 0
    mine = int(value_or(st.routing_generation, 0))
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
    phase, reason, msg = st.phase, value_or(st.reason, ""), value_or(st.message, "")
    degraded = phase in (ROLLED_BACK, FAILED) or int(value_or(st.failed_checks, 0)) > 0 or bool(st.inconclusive_since)
    wanted = {
        "Ready": (phase == PROMOTED, (reason or "Promoted") if phase == PROMOTED  # Promoted | InitialVersion
                  else (phase if phase in TERMINAL else "InProgress"), msg),
        "Progressing": (phase == PROGRESSING, reason if phase in (PROGRESSING, PENDING) else phase, msg),
        "Degraded": (degraded, reason if degraded else "Healthy", msg if degraded else "no failed or inconclusive checks"),
    }
    old = {c.get("type"): c for c in value_or(st.conditions, []) if isinstance(c, dict)}
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
