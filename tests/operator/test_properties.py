"""Property tests of the pure core: weights, rollbacks and restarts under random specs, behaviours and mishaps."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mnist_operator import merge_patch
from mnist_operator.decide import TERMINAL, CandidateInfo, decide, desired_configs
from mnist_operator.render import routing_document

from tests.operator.helpers import KEY, Behaviour, World, canary_spec

ACTIONS = ("none", "none", "none", "restart_pod", "metrics_down", "metrics_up", "pause", "resume", "lag", "follow",
           "new_pod", "replica_joins", "replica_loaded")
# A TF Serving replica that joined mid-rollout and has not loaded the candidate yet, then has.
LAGGING = CandidateInfo(True, 0.98, False, "AVAILABLE on 1 of 2 TF Serving replicas")
LOADED = CandidateInfo(True, 0.98, True, "AVAILABLE on all 2 TF Serving replica(s)")


@st.composite
def scenarios(draw):
    strategy = draw(st.sampled_from(["canary", "abtest", "shadow"]))
    steps = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=4)))
    spec = canary_spec(
        strategy=strategy,
        canary={"steps": steps, "stepDuration": f"{draw(st.integers(1, 8))}s"},
        abtest={"split": draw(st.integers(1, 99)), "duration": f"{draw(st.integers(3, 20))}s",
                "minSamples": draw(st.integers(1, 200)), "require": draw(st.sampled_from(["notWorse", "better"]))},
        shadow={"percent": draw(st.integers(1, 100)), "duration": f"{draw(st.integers(2, 15))}s",
                "promote": draw(st.sampled_from(["canary", "switch"]))},
        analysis={"interval": f"{draw(st.integers(1, 4))}s", "failureLimit": draw(st.integers(1, 3)),
                  "minRequests": draw(st.integers(1, 60)), "inconclusiveTimeout": f"{draw(st.integers(3, 30))}s",
                  "routingTimeout": f"{draw(st.integers(1, 10))}s"},
    )
    candidate = Behaviour(error_rate=draw(st.sampled_from([0.0, 0.0, 0.005, 0.3])),
                          latency_s=draw(st.sampled_from([0.004, 0.02, 0.4])),
                          accuracy=draw(st.sampled_from([0.98, 0.95, 0.1])),
                          agreement=draw(st.sampled_from([0.999, 0.9, 0.4])))
    actions = draw(st.lists(st.sampled_from(ACTIONS), min_size=20, max_size=120))
    dts = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=len(actions), max_size=len(actions)))
    return spec, candidate, list(zip(actions, dts, strict=True))


def apply(w: World, action: str) -> None:
    if action == "restart_pod" and w.routing is not None:
        w.restart_pod("pod-a")
    elif action == "new_pod":
        w.pods[f"pod-{len(w.pods)}"] = type(w.pods["pod-a"])()
    elif action == "metrics_down":
        w.metrics_up = False
    elif action == "metrics_up":
        w.metrics_up = True
    elif action in ("pause", "resume"):
        w.spec = {**w.spec, "paused": action == "pause"}
        w.generation += 1
    elif action == "lag":
        w.frontends_follow = False
    elif action == "follow":
        w.frontends_follow = True
    elif action == "replica_joins":
        w.candidate = LAGGING
    elif action == "replica_loaded":
        w.candidate = LOADED


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_hold_through_any_run(scenario):
    spec, candidate, script = scenario
    w = World(spec, behaviours={1: Behaviour(), 2: candidate})
    prev_weight, prev_status, prev_labels = 0, None, {"stable": 1}
    tail = [("resume", 2.0), ("metrics_up", 2.0), ("follow", 2.0), ("replica_loaded", 2.0)] + [("none", 2.0)] * 150
    for action, dt in script + tail:
        apply(w, action)
        before = copy.deepcopy(w.status)
        weight_before = w.weight(2)
        w.tick(dt)
        obs = w.last_obs
        d = w.decisions[-1]
        st_ = w.status
        # Every config TF Serving is given is loadable from scratch: each label names a version it lists...
        if d.serving is not None:
            assert set(d.serving.labels.values()) <= set(d.serving.versions), d.serving
            # ...and a label is added or moved to the candidate only while every replica has it AVAILABLE, so a
            # replica that skipped configs never meets a move to a version it has not loaded (server_core.cc).
            moved = {k: v for k, v in d.serving.labels.items() if prev_labels.get(k) != v}
            assert 2 not in moved.values() or obs.candidate.available, (moved, st_)
            prev_labels = dict(d.serving.labels)
        # More traffic goes to the candidate only while every replica has it.
        assert w.weight(2) <= weight_before or obs.candidate.available, st_
        # Routing is always a valid split.
        assert sum(r["weight"] for r in w.routing["routes"]) == 100
        assert all(0 < r["weight"] <= 100 for r in w.routing["routes"])
        assert 0 <= st_.get("candidateWeight", 0) <= 100
        # Weights never go backwards without a rollback (or a replan, which is not exercised here).
        w_now = w.weight(2)
        if w_now < prev_weight:
            assert st_["stage"] in ("RollingBack", "Done") and st_.get("outcome", st_["phase"]) != "Promoted", st_
        prev_weight = w_now
        # Restart safety: deciding again from the persisted (JSON) status gives the very same decision...
        if before is not None:
            again = decide(w.spec, json.loads(json.dumps(before)), obs, w.now)
            assert json.dumps(again.status, sort_keys=True) == json.dumps(d.status, sort_keys=True)
            assert again.routing == d.routing and again.serving == d.serving and again.events == d.events
        # ...and a restarted operator re-renders exactly the routing in place: no traffic jump.
        if st_["phase"] not in TERMINAL:
            _, routing = desired_configs(st_, KEY, "/models/mnist")
            if routing is not None:
                assert routing_document(routing, w.routing["generation"]) == w.routing
        prev_status = st_
        if st_["phase"] in TERMINAL and w.decisions[-1].routing is not None:
            break
    # The run ends: a finished rollout either promoted the candidate or restored stable completely.
    assert prev_status is not None
    if prev_status["phase"] == "Promoted":
        assert w.routing["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
        assert w.serving.versions == (2,)
    elif prev_status["phase"] in ("RolledBack", "Failed"):
        assert w.weight(2) == 0 and w.routing["shadow"] is None
        if w.serving is not None:
            assert w.serving.versions == (1,) and w.serving.labels == {"stable": 1}
    else:
        assert prev_status["phase"] in ("Progressing", "Paused")


@settings(max_examples=40, deadline=None)
@given(bad=st.sampled_from([Behaviour(error_rate=0.5), Behaviour(latency_s=2.0), Behaviour(accuracy=0.05)]),
       limit=st.integers(1, 3))
def test_a_bad_canary_is_always_rolled_back_within_failure_limit_checks(bad, limit):
    w = World(canary_spec(analysis={"failureLimit": limit, "interval": "2s"},
                          canary={"steps": [10, 50, 100], "stepDuration": "30s"}),
              behaviours={1: Behaviour(), 2: bad})
    w.run(200)
    assert w.phase == "RolledBack"
    checks = [e for d in w.decisions for e in d.events if e.reason in ("AnalysisPassed", "AnalysisFailed")]
    assert [e.reason for e in checks] == ["AnalysisFailed"] * limit
    assert w.routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]


def _with_nulls(status: dict) -> dict:
    """The same status as a writer that keeps nulls would send it (what the operator did before merge_patch.py)."""
    out = json.loads(json.dumps(status))
    out["plan"] = {"stableVersion": None, **out.get("plan", {})}
    out.setdefault("inconclusiveSince", None)
    out.setdefault("lastVerdict", None)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.lists(st.sampled_from(["pause", "resume", "steps", "threshold", "none"]), min_size=3,
                             max_size=12), st.sampled_from([1, None]))
def test_a_status_stored_through_a_merge_patch_leads_to_the_identical_decision(scenario, edits, serving):
    """stableVersion unset (read from the routing, or nothing serves): edits that keep the plan never restart it."""
    spec, candidate, script = scenario
    assert "stableVersion" not in spec
    w = World(spec, behaviours={1: Behaviour(), 2: candidate}, stable=serving)
    edit_at = {i * max(1, len(script) // len(edits)): e for i, e in enumerate(edits)}
    for i, (action, dt) in enumerate(script):
        apply(w, action)
        edit = edit_at.get(i, "none")
        if edit in ("pause", "resume"):
            apply(w, edit)
        elif edit == "steps":
            w.spec = {**w.spec, "canary": {**w.spec["canary"], "steps": [5, 100]}}
            w.generation += 1
        elif edit == "threshold":
            w.spec = {**w.spec, "analysis": {**w.spec["analysis"], "maxErrorRate": 0.02}}
            w.generation += 1
        before = w.status
        w.tick(dt)
        d = w.decisions[-1]
        # The decided status holds no null, so the merge patch stores it unchanged...
        assert w.status == d.status == merge_patch.without_nulls(d.status)
        assert merge_patch.apply({}, d.status) == d.status
        # ...and a status whose nulls a merge patch removed decides exactly as the one that still had them.
        if before is not None:
            with_nulls = _with_nulls(before)
            a = decide(w.spec, with_nulls, w.last_obs, w.now)
            b = decide(w.spec, merge_patch.apply({}, with_nulls), w.last_obs, w.now)
            assert a.status == b.status == d.status
            assert (a.routing, a.serving, a.events) == (b.routing, b.serving, b.events) == (d.routing, d.serving,
                                                                                          d.events)
        # The plan never changed, so nothing ever restarts from the gate.
        assert not [e for e in d.events if "starting again" in e.message], d.events
        if w.phase in TERMINAL:
            break


def test_pausing_without_stable_version_after_a_merge_patch_store_holds_the_canary_step():
    """The e2e bug in miniature: stableVersion unset, status stored via merge patch, then paused: stays at 10%."""
    w = World(canary_spec(canary={"steps": [10, 100], "stepDuration": "60s"}))
    while (w.status or {}).get("stage") != "Canary":
        w.tick()
    assert "stableVersion" not in w.status["plan"] and w.weight(2) == 10
    w.spec = {**w.spec, "paused": True}
    w.generation += 1
    w.tick()
    assert w.status["phase"] == "Paused" and w.status["stage"] == "Canary" and w.weight(2) == 10, w.status
    assert not [e for d in w.decisions for e in d.events if "starting again from the gate" in e.message]


FACTS = {"published, AVAILABLE": CandidateInfo(True, 0.97, True, "t"), "missing": CandidateInfo(False, None, False, "t"),
         "published, not loaded": CandidateInfo(True, 0.97, False, "t")}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stable=st.sampled_from([None, 1, 3, 99]), timeline=st.lists(st.sampled_from(sorted(FACTS)), min_size=1,
                                                                    max_size=30))
def test_no_config_ever_names_a_stable_version_not_seen_published_and_available(stable, timeline):
    """Whatever the stable version's facts do over time, a config names it only after the gate saw it AVAILABLE."""
    spec = canary_spec(**({} if stable is None else {"stableVersion": stable}))
    target = stable or 1
    w = World(spec, behaviours={1: Behaviour(), 2: Behaviour(), 3: Behaviour(), 99: Behaviour()})
    seen_ready = False
    for i in range(60):
        facts = FACTS[timeline[min(i, len(timeline) - 1)]]
        w.version_facts = {target: facts}
        d = w.tick()
        seen_ready = seen_ready or (facts.exists and facts.available)
        named = ({r.version for r in d.routing.routes} if d.routing else set()) | (
            set(d.serving.versions) if d.serving else set())
        assert target not in named or seen_ready, (i, w.status)
        if w.phase in TERMINAL:
            break
    if not seen_ready:
        assert w.phase != "Promoted" and w.weight(2) == 0
        assert w.status.get("reason") in ("StableNotFound", "StableNotAvailable") or w.phase == "Progressing"
