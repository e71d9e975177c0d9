"""The stages of a rollout, one function each: the gate, loading, the traffic stages (canary, A/B test, shadow)
and draining (promoting or rolling back). Each reads the facts of one Observation and moves the Status on; the
verdict module judges the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnist_operator import analysis as an
from mnist_operator import verdict
from mnist_operator.observation import CandidateInfo, Observation
from mnist_operator.render import stable_version_of_routing
from mnist_operator.spec import RolloutSpec, shown
from mnist_operator.status import TRAFFIC_STAGES, Phase, Stage, Status, parse_ts, ts, value_or
from mnist_operator.verdict import fmt


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def advance(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    """One step of the stage the rollout is in (Waiting and Done have none)."""
    stage = st.stage
    if stage == Stage.GATE:
        _gate(st, spec, obs, now, events)
    elif stage == Stage.LOADING:
        _loading(st, spec, obs, now, events)
    elif stage in TRAFFIC_STAGES:
        _traffic(st, spec, obs, now, events)
    elif stage in (Stage.PROMOTING, Stage.ROLLING_BACK):
        _drain(st, spec, obs, now, events)


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
                                                f"{fmt(c.test_accuracy)} >= {need}; loading it {beside}"))
    st.update(stage=Stage.LOADING, stage_started_at=ts(now), reason="LoadingCandidate",
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
        st.update(stage=Stage.PROMOTING, stage_started_at=ts(now), candidate_weight=100, outcome=Phase.PROMOTED,
                  reason="InitialVersion",
                  message=f"initial version: 100% to v{spec.candidate_version} once frontends follow (nothing "
                          "served before, nothing to compare against)")
        return
    first = Stage.SHADOW if spec.strategy == "shadow" else Stage.ABTEST if spec.strategy == "abtest" else Stage.CANARY
    events.append(Event("Normal", "CandidateAvailable",
                        f"v{spec.candidate_version} AVAILABLE after {waited:.1f}s; labels and routing written"))
    _enter_traffic(st, spec, obs, now, first, events)


def _enter_traffic(st: Status, spec: RolloutSpec, obs: Observation, now: float, stage: Stage,
                   events: list[Event]) -> None:
    st.update(stage=stage, stage_started_at=ts(now), step_started_at=ts(now), failed_checks=0, last_verdict=None,
              last_check_at=ts(now), baseline=_snap(obs), totals={}, inconclusive_since=None)
    if stage == Stage.CANARY:
        st.update(step=0, candidate_weight=spec.canary.steps[0], reason="CanaryStep",
                  message=f"step 1/{len(spec.canary.steps)}: {spec.canary.steps[0]}% to v{spec.candidate_version}")
        events.append(Event("Normal", "CanaryStep", st.message))
    elif stage == Stage.ABTEST:
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
    started = parse_ts(st.step_started_at if stage == Stage.CANARY else st.stage_started_at)
    held = now - started
    passed_here = st.last_verdict == "Passed" and (parse_ts(st.last_pass_at) or 0) >= started
    if stage == Stage.CANARY:
        if held >= spec.step_duration_s and passed_here:
            i = int(value_or(st.step, 0)) + 1
            steps = spec.canary.steps
            what = "promotion" if i >= len(steps) else f"step {i + 1}/{len(steps)}"
            if not _on_every_replica(st, spec, obs, now, events, what):
                return
            if i >= len(steps):
                _promote(st, spec, now, events, f"all {len(steps)} canary steps passed")
            else:
                st.update(step=i, candidate_weight=max(steps[i], int(value_or(st.candidate_weight, 0))),
                          step_started_at=ts(now), baseline=_snap(obs) or st.baseline, reason="CanaryStep",
                          message=f"step {i + 1}/{len(steps)}: {steps[i]}% to v{spec.candidate_version}")
                events.append(Event("Normal", "CanaryStep", st.message + f" after {held:.0f}s at the last step"))
    elif stage == Stage.SHADOW:
        if held >= spec.shadow_duration_s and passed_here:
            if not _on_every_replica(st, spec, obs, now, events,
                                     "promotion" if spec.shadow.promote == "switch" else "the canary"):
                return
            if spec.shadow.promote == "switch":
                _promote(st, spec, now, events, f"shadow passed for {held:.0f}s; switching")
            else:
                events.append(Event("Normal", "ShadowPassed", f"shadow passed for {held:.0f}s; starting the canary"))
                _enter_traffic(st, spec, obs, now, Stage.CANARY, events)
    elif stage == Stage.ABTEST and held >= spec.abtest_duration_s:
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
    seen = sh.total if stage == Stage.SHADOW else cs.requests
    numbers = verdict.window_report(stage, now - baseline.taken_at, cs, ss, sh)
    if seen < a.min_requests:
        st.last_analysis = dict(numbers, time=ts(now), verdict="Inconclusive")
        return _inconclusive(st, spec, now, events, "NotEnoughTraffic",
                             f"{seen:.0f} candidate requests in {numbers['windowSeconds']:.0f}s < minRequests {a.min_requests}")
    failures = verdict.window_failures(stage, a, cs, sh)
    messages = [message for _, message in failures]
    _add_totals(st, cs, ss)
    st.baseline = obs.metrics.to_json()
    st.inconclusive_since = None
    st.checks = int(value_or(st.checks, 0)) + 1
    summary = verdict.summary(stage, cs, ss, sh)
    st.last_analysis = dict(numbers, time=ts(now), verdict="Failed" if failures else "Passed", reasons=messages)
    if not failures:
        st.update(failed_checks=0, last_verdict="Passed", last_pass_at=ts(now))
        events.append(Event("Normal", "AnalysisPassed", summary))
        return True
    st.failed_checks = int(value_or(st.failed_checks, 0)) + 1
    st.last_verdict = "Failed"
    n, limit = st.failed_checks, a.failure_limit
    reason = failures[0][0]
    events.append(Event("Warning", "AnalysisFailed", f"check {n}/{limit} failed: {'; '.join(messages)} [{summary}]"))
    st.update(reason=reason, message=f"{n}/{limit} failed checks: {'; '.join(messages)}")
    if n >= limit:
        _rollback(st, now, events, Phase.ROLLED_BACK, reason,
                  f"{n} consecutive failed checks: {'; '.join(messages)}")
        return False
    return True


def _add_totals(st: Status, cs: an.VersionStats, ss: an.VersionStats) -> None:
    if st.totals is None:
        st.totals = {}
    verdict.add_totals(st.totals, cs, ss)


def _inconclusive(st: Status, spec: RolloutSpec, now: float, events: list[Event], reason: str, why: str) -> bool:
    since = parse_ts(st.inconclusive_since)
    if since is None:
        st.inconclusive_since = ts(now)
        since = now
        events.append(Event("Warning", reason, f"holding: {why}"))
    st.update(reason=reason, message=f"holding: {why}")
    if now - since >= spec.inconclusive_timeout_s:
        _rollback(st, now, events, Phase.FAILED, reason,
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
    found = verdict.abtest_verdict(st.totals, st.candidate_version, st.stable_version, spec)
    if found.report is not None:
        st.last_analysis = dict(st.last_analysis or {}, abtest=found.report)
    if found.wins:
        if _on_every_replica(st, spec, obs, now, events, "promotion"):  # else judged again, on more feedback
            _promote(st, spec, now, events, found.message)
    else:
        _rollback(st, now, events, found.outcome, found.reason, found.message)


def _promote(st: Status, spec: RolloutSpec, now: float, events: list[Event], why: str) -> None:
    st.update(stage=Stage.PROMOTING, stage_started_at=ts(now), candidate_weight=100, outcome=Phase.PROMOTED, reason="Promoting",
              message=f"all traffic to v{st.candidate_version}; unloading v{st.stable_version} once frontends "
                      f"follow: {why}")
    st.shadow_percent = None
    events.append(Event("Normal", "Promoting", f"{why}: 100% to v{st.candidate_version}"))


def _rollback(st: Status, now: float, events: list[Event], outcome: Phase, reason: str, why: str) -> None:
    st.update(stage=Stage.ROLLING_BACK, stage_started_at=ts(now), candidate_weight=0, outcome=outcome, reason=reason,
              message=f"rolling back to v{st.stable_version}: {why}")
    st.shadow_percent = None
    events.append(Event("Warning", "RollingBack", f"{why}: 100% back to stable v{st.stable_version}"))


def _fail_now(st: Status, now: float, events: list[Event], reason: str, why: str) -> None:
    """Failure before any traffic moved: nothing to drain."""
    st.update(phase=Phase.FAILED, stage=Stage.DONE, candidate_weight=0, reason=reason, message=why, finished_at=ts(now))
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
    if now - since >= spec.gate_timeout_s and st.stage != Stage.PROMOTING:
        st.replica_wait_since = None
        _rollback(st, now, events, Phase.FAILED, "CandidateNotAvailable",
                  f"{why} for {now - since:.0f}s (gate.timeout {spec.gate.timeout})")
        return False
    st.update(reason="WaitingForReplicas", message=f"{what} held: {why}")
    return False


WAITING_NOTE = " [waiting for frontends to load routing "


def _drain(st: Status, spec: RolloutSpec, obs: Observation, now: float, events: list[Event]) -> None:
    if st.outcome == Phase.PROMOTED and not _on_every_replica(st, spec, obs, now, events, "unloading the old version"):
        return  # the final config leaves the stable label on the candidate alone: a lagging replica moves it then
    target = int(value_or(st.routing_generation, 0))
    gens = an.routing_generations(obs.metrics) if obs.metrics and obs.metrics.reachable else []
    followed = bool(gens) and all(g is not None and g >= target for g in gens)
    waited = now - parse_ts(st.stage_started_at)
    # The note on a wait is the message's while it lasts: the final message below is the same whether or not a
    # tick found a frontend still on the older routing (a race of one poll with the frontends' own).
    reason_text = value_or(st.message, "").split(WAITING_NOTE)[0]
    if not followed and waited < spec.routing_timeout_s:
        st.message = reason_text + f"{WAITING_NOTE}{target}]"
        return
    note = (f"all {len(gens)} frontend(s) on routing generation >= {target}" if followed else
            f"frontends did not all report routing generation {target} within {spec.analysis.routing_timeout}")
    outcome = value_or(st.outcome, Phase.ROLLED_BACK)
    st.outcome = None
    if outcome == Phase.PROMOTED and st.initial:
        msg = (f"v{st.candidate_version} is stable: the initial version of {st.model}, nothing served "
               f"before ({note})")
        st.update(phase=Phase.PROMOTED, stage=Stage.DONE, candidate_weight=100, reason="InitialVersion", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    elif outcome == Phase.PROMOTED:
        msg = f"v{st.candidate_version} is stable; v{st.stable_version} unloaded ({note})"
        st.update(phase=Phase.PROMOTED, stage=Stage.DONE, candidate_weight=100, reason="Promoted", message=msg)
        events.append(Event("Normal", "Promoted", msg))
    else:
        msg = f"{reason_text}; v{st.candidate_version} unloaded ({note})"
        st.update(phase=outcome, stage=Stage.DONE, candidate_weight=0, message=msg)
        events.append(Event("Warning", str(outcome), msg))
    st.finished_at = ts(now)
