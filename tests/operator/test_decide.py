"""The rollout state machine, scenario by scenario, on a deterministic simulated world."""

from __future__ import annotations

import json

import pytest
from mnist_operator.decide import (
    CandidateInfo,
    Observation,
    blocking_rollout,
    decide,
    desired_configs,
    on_delete,
)
from mnist_operator.render import stable_version_of_routing

from tests.operator.helpers import KEY, START, Behaviour, World, canary_spec


def test_good_canary_walks_every_step_and_is_promoted_with_the_old_version_unloaded():
    w = World(canary_spec())
    weights = []
    for _ in range(120):
        w.tick()
        weights.append(w.weight(2))
        if w.phase == "Promoted":
            break
    assert w.phase == "Promoted", w.status
    assert [x for i, x in enumerate(weights) if i == 0 or x != weights[i - 1]] == [0, 10, 50, 100]
    assert w.routing["strategy"] == "single" and w.routing["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert w.serving.versions == (2,) and w.serving.labels == {"stable": 2}
    assert {"GatePassed", "CandidateAvailable", "CanaryStep", "AnalysisPassed", "Promoting", "Promoted"} <= set(w.reasons)
    cond = {c["type"]: c for c in w.status["conditions"]}
    assert cond["Ready"]["status"] == "True" and cond["Degraded"]["status"] == "False"


def test_load_first_label_second_the_candidate_is_loaded_before_any_label_or_route_points_at_it():
    w = World(canary_spec(), candidate=CandidateInfo(True, 0.98, False, "loading"))
    w.tick()  # Pending -> Gate -> Loading in one tick
    w.tick()
    assert w.status["stage"] == "Loading"
    assert w.serving.versions == (1, 2) and w.serving.labels == {"stable": 1}
    assert w.weight(2) == 0
    w.candidate = CandidateInfo(True, 0.98, True, "AVAILABLE")
    w.tick()
    assert w.status["stage"] == "Canary"
    assert w.serving.labels == {"stable": 1, "canary": 2} and w.weight(2) == 10


def test_candidate_never_available_fails_and_reverts_the_model_config_to_stable_only():
    w = World(canary_spec(), candidate=CandidateInfo(True, 0.98, False, "TF Serving: LOADING"))
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "CandidateNotAvailable"
    assert w.serving.versions == (1,) and w.weight(1) == 100


def test_offline_gate_refuses_a_weak_candidate_before_any_traffic():
    w = World(canary_spec(), candidate=CandidateInfo(True, 0.42, True, "metrics.json"))
    w.run(10)
    assert w.phase == "Failed" and w.status["reason"] == "GateFailed"
    assert "0.4200 < gate.minOfflineAccuracy 0.9" in w.status["message"]
    assert w.weight(2) == 0 and w.serving is None  # refused before it wrote anything


def test_missing_candidate_waits_then_fails_after_gate_timeout():
    w = World(canary_spec(), candidate=CandidateInfo(False, None, False, "store"))
    w.tick()
    assert w.phase == "Progressing" and w.status["reason"] == "CandidateNotFound"
    w.run(30)
    assert w.phase == "Failed" and w.status["reason"] == "CandidateNotFound"


def test_erroring_canary_is_rolled_back_within_failure_limit_checks():
    w = World(canary_spec(), behaviours={1: Behaviour(), 2: Behaviour(error_rate=0.2)})
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "HighErrorRate"
    failed = [d for d in w.decisions for e in d.events if e.reason == "AnalysisFailed"]
    assert len(failed) == 2  # failureLimit
    assert w.routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
    assert w.serving.versions == (1,)
    assert "error rate 0.2000 > 0.01" in w.status["message"]


def test_rolled_back_message_is_the_same_whether_or_not_a_frontend_lagged_one_poll():
    """The drain's "waiting for frontends" note lives while the wait does: the final message does not keep it."""
    finals = {}
    for lag in (False, True):
        w = World(canary_spec(), behaviours={1: Behaviour(), 2: Behaviour(error_rate=0.2)})
        _run_until(w, "RollingBack")
        if lag:
            w.frontends_follow = False
            w.tick()
            assert "waiting for frontends to load routing" in w.status["message"]
            w.frontends_follow = True
        w.run(30)
        assert w.phase == "RolledBack"
        finals[lag] = w.status["message"]
    assert "[waiting" not in finals[True] and finals[True] == finals[False]


def test_slow_canary_is_rolled_back_for_latency():
    w = World(canary_spec(), behaviours={1: Behaviour(), 2: Behaviour(latency_s=0.9)})
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "HighLatency"
    assert w.status["lastAnalysis"]["candidate"]["p99Ms"] > 250


def test_inaccurate_canary_is_rolled_back_on_feedback_accuracy():
    w = World(canary_spec(), behaviours={1: Behaviour(), 2: Behaviour(accuracy=0.1)})
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "LowAccuracy"


def test_no_metrics_holds_the_step_and_fails_after_inconclusive_timeout_with_traffic_back_to_stable():
    w = World(canary_spec())
    for _ in range(5):
        w.tick()
    assert w.weight(2) == 10
    w.metrics_up = False
    w.tick(3)
    assert w.status["reason"] == "MetricsUnavailable" and w.weight(2) == 10
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "MetricsUnavailable"
    assert w.weight(1) == 100


def test_low_traffic_is_inconclusive_not_passed():
    w = World(canary_spec(), rps=0.5)
    for _ in range(15):
        w.tick()
    assert w.weight(2) == 10 and w.status["reason"] == "NotEnoughTraffic"
    assert "AnalysisPassed" not in w.reasons


def test_pod_restart_mid_step_is_a_counter_reset_not_a_failure():
    w = World(canary_spec())
    for _ in range(12):
        w.tick()
    w.restart_pod("pod-a")
    w.run(120)
    assert w.phase == "Promoted"


def test_pause_freezes_weights_and_timers_and_resume_continues():
    w = World(canary_spec())
    for _ in range(5):
        w.tick()
    weight = w.weight(2)
    w.spec = {**w.spec, "paused": True}
    w.generation += 1
    for _ in range(60):
        w.tick()
    assert w.phase == "Paused" and w.weight(2) == weight
    w.spec = {**w.spec, "paused": False}
    w.generation += 1
    w.tick()
    assert w.phase == "Progressing" and "Resumed" in w.reasons
    w.run(120)
    assert w.phase == "Promoted"


def test_changing_steps_mid_canary_replans_without_lowering_the_weight():
    w = World(canary_spec(canary={"steps": [10, 50, 100], "stepDuration": "10s"}))
    while w.weight(2) < 50:
        w.tick()
    w.spec = canary_spec(canary={"steps": [20, 30, 80], "stepDuration": "10s"})
    w.generation += 1
    seen = []
    for _ in range(100):
        w.tick()
        seen.append(w.weight(2))
        if w.phase == "Promoted":
            break
    assert min(seen) >= 50 and 80 in seen and w.phase == "Promoted"
    assert "Replanned" in w.reasons


def test_changing_the_candidate_mid_rollout_sends_traffic_back_to_stable_and_starts_again():
    w = World(canary_spec(), behaviours={1: Behaviour(), 2: Behaviour(), 3: Behaviour()})
    while w.weight(2) < 10:
        w.tick()
    w.spec = canary_spec(candidateVersion=3)
    w.generation += 1
    w.tick()
    assert w.weight(2) == 0 and "Replanned" in w.reasons
    w.run(120)
    assert w.phase == "Promoted" and w.routing["routes"][0]["version"] == 3


def test_abtest_with_an_equal_candidate_is_promoted_under_not_worse():
    spec = canary_spec(strategy="abtest", abtest={"split": 50, "duration": "20s", "minSamples": 100})
    w = World(spec)
    w.tick()  # gate passed, candidate loading
    w.tick()  # AVAILABLE: labels and routing
    assert w.routing["strategy"] == "abtest" and w.routing["sticky_header"] == "X-User-Id"
    assert w.weight(2) == 50 and w.routing["routes"][1]["label"] == "candidate"
    w.run(120)
    assert w.phase == "Promoted", w.status


def test_abtest_with_a_worse_candidate_is_rolled_back_naming_the_test():
    spec = canary_spec(strategy="abtest", abtest={"split": 50, "duration": "20s", "minSamples": 100})
    w = World(spec, behaviours={1: Behaviour(accuracy=0.97), 2: Behaviour(accuracy=0.90)})
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "LostABTest"
    assert "z=" in w.status["message"]
    assert w.status["lastAnalysis"]["abtest"]["candidateN"] >= 100


def test_abtest_requiring_better_keeps_stable_on_a_tie():
    spec = canary_spec(strategy="abtest", abtest={"split": 50, "duration": "20s", "minSamples": 100,
                                                  "require": "better"})
    w = World(spec)
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "LostABTest"


def test_abtest_without_enough_feedback_fails_instead_of_guessing():
    spec = canary_spec(strategy="abtest", abtest={"split": 50, "duration": "20s", "minSamples": 100000})
    w = World(spec)
    w.run(120)
    assert w.phase == "Failed" and w.status["reason"] == "NotEnoughFeedback"
    assert w.weight(1) == 100


def test_shadow_copies_traffic_without_user_weight_then_switches():
    spec = canary_spec(strategy="shadow", shadow={"percent": 50, "duration": "10s", "promote": "switch"})
    w = World(spec)
    for _ in range(3):
        w.tick()
    assert w.routing["strategy"] == "shadow" and w.routing["shadow"] == {"version": 2, "percent": 50}
    assert w.weight(2) == 0 and w.serving.labels == {"stable": 1, "shadow": 2}
    w.run(120)
    assert w.phase == "Promoted"
    assert "CanaryStep" not in w.reasons


def test_shadow_then_canary_runs_the_steps_after_the_shadow():
    spec = canary_spec(strategy="shadow", shadow={"percent": 100, "duration": "10s", "promote": "canary"})
    w = World(spec)
    w.run(200)
    assert w.phase == "Promoted" and "ShadowPassed" in w.reasons and "CanaryStep" in w.reasons


def test_shadow_with_low_agreement_is_rolled_back_and_the_shadow_removed():
    spec = canary_spec(strategy="shadow", shadow={"percent": 100, "duration": "30s"})
    w = World(spec, behaviours={1: Behaviour(), 2: Behaviour(agreement=0.5)})
    w.run(120)
    assert w.phase == "RolledBack" and w.status["reason"] == "LowAgreement"
    assert w.routing["shadow"] is None and w.routing["strategy"] == "single"


def test_promotion_waits_for_frontends_to_load_the_new_routing_before_unloading():
    w = World(canary_spec(analysis={"routingTimeout": "30s"}))
    while w.status is None or w.status.get("stage") != "Promoting":
        w.tick()
    w.frontends_follow = False
    for _ in range(10):
        w.tick()
    assert w.status["stage"] == "Promoting" and w.serving.versions == (1, 2)
    w.frontends_follow = True
    w.tick()
    assert w.phase == "Promoted" and w.serving.versions == (2,)


def test_second_rollout_of_the_same_model_waits_in_pending_with_the_reason():
    w = World(canary_spec(), blocked_by="default/other")
    w.tick()
    d = w.decisions[-1]
    assert w.phase == "Pending" and w.status["reason"] == "WaitingForRollout"
    assert d.routing is None and d.serving is None  # it writes nothing while it waits
    w.blocked_by = None
    w.run(120)
    assert w.phase == "Promoted"


def test_arbitration_active_first_then_oldest():
    others = [("ns/a", "2026-01-01T00:00:00Z", "Progressing"), ("ns/b", "2026-01-01T00:00:01Z", None)]
    assert blocking_rollout("ns/c", "2025-01-01T00:00:00Z", None, others) == "ns/a"
    assert blocking_rollout("ns/a", "2026-01-01T00:00:00Z", "Progressing", others) is None
    waiting = [("ns/b", "2026-01-01T00:00:01Z", "Pending")]
    assert blocking_rollout("ns/c", "2026-01-01T00:00:02Z", "Pending", waiting) == "ns/b"
    assert blocking_rollout("ns/a", "2026-01-01T00:00:00Z", "Pending", waiting) is None
    assert blocking_rollout("ns/c", "2026-01-01T00:00:02Z", None, [("ns/d", "2020", "Promoted")]) is None


def test_invalid_spec_is_failed_with_the_field_named_and_no_config_written():
    obs = Observation(rollout=KEY)
    d = decide({"model": "mnist", "candidateVersion": 2, "canary": {"steps": [50, 10]}}, None, obs, START)
    assert d.status["phase"] == "Failed" and d.status["reason"] == "InvalidSpec"
    assert "canary.steps" in d.status["message"] and d.routing is None and d.serving is None
    assert [e.reason for e in d.events] == ["InvalidSpec"]


def test_spec_turned_invalid_mid_rollout_sends_traffic_back_to_stable():
    w = World(canary_spec())
    while w.weight(2) < 10:
        w.tick()
    w.spec = {**w.spec, "strategy": "bluegreen"}
    w.generation += 1
    w.tick()
    assert w.phase == "Failed" and w.weight(1) == 100 and w.serving.versions == (1,)


def test_deleting_mid_rollout_restores_stable_and_deleting_a_finished_one_touches_nothing():
    w = World(canary_spec())
    while w.weight(2) < 10:
        w.tick()
    d = on_delete(w.status, KEY, "/models/mnist", w.routing)
    assert d.serving.versions == (1,) and [(r.version, r.weight) for r in d.routing.routes] == [(1, 100)]
    # Stamped past both the status's generation and the document's, so every frontend sees a new routing.
    assert d.routing_generation == max(w.status["routingGeneration"], w.routing["generation"]) + 1
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "RolledBackOnDelete")]
    assert "100% back to stable v1, v2 unloaded" in d.events[0].message
    assert on_delete(w.status, KEY, "/models/mnist", dict(w.routing, rollout="default/other")) is None
    w.run(200)
    assert on_delete(w.status, KEY, "/models/mnist", w.routing) is None


def test_configs_follow_from_status_alone_so_a_restart_rewrites_the_same_routing():
    w = World(canary_spec())
    for _ in range(40):
        w.tick()
        if w.phase in ("Promoted",):
            break
        serving, routing = desired_configs(w.status, KEY, "/models/mnist")
        if routing is not None:
            assert [(r.version, r.weight) for r in routing.routes] == [
                (r["version"], r["weight"]) for r in w.routing["routes"]]


def test_stable_version_defaults_to_what_the_routing_serves_now():
    w = World(canary_spec(), stable=7, behaviours={7: Behaviour(), 2: Behaviour()})
    w.tick()
    assert w.status["stableVersion"] == 7


def test_routing_with_traffic_but_no_stable_route_fails_with_what_to_set():
    routing = {"model": "mnist", "strategy": "canary", "routes": [{"version": 6, "label": "canary", "weight": 100}]}
    d = decide(canary_spec(), None, Observation(rollout=KEY, candidate=CandidateInfo(True, 0.99, True),
                                                current_routing=routing), START)
    assert d.status["phase"] == "Failed" and d.status["reason"] == "NoStableVersion"
    assert "stableVersion" in d.status["message"] and d.routing is None and d.serving is None


def _run_until(w: World, stage: str, ticks: int = 60) -> None:
    for _ in range(ticks):
        w.tick()
        if w.status.get("stage") == stage or w.phase in ("Promoted", "RolledBack", "Failed"):
            return


@pytest.mark.parametrize("strategy", ["canary", "abtest", "shadow"])
def test_nothing_served_yet_is_an_initial_rollout_gate_load_then_stable_without_canary_steps(strategy):
    w = World(canary_spec(strategy=strategy), stable=None, candidate=CandidateInfo(True, 0.98, False, "loading"))
    w.tick()  # Pending -> Gate (initial) -> Loading
    events = [e for d in w.decisions for e in d.events]
    initial = [e for e in events if e.reason == "InitialVersion"]
    assert len(initial) == 1 and initial[0].message == (
        "no version served yet: v2 becomes stable after passing the gate, nothing to compare against")
    assert w.status["stage"] == "Loading" and "stableVersion" not in w.status and w.status["initial"] is True
    # Load first: the candidate alone, no label on it yet, and no routing written while nothing is loaded.
    assert w.serving.versions == (2,) and w.serving.labels == {} and w.routing is None
    w.candidate = CandidateInfo(True, 0.98, True, "AVAILABLE")
    w.tick()
    assert w.status["stage"] == "Promoting" and w.status["reason"] == "InitialVersion"
    # Label second, route third: labelled stable, then all traffic to it.
    assert w.serving.labels == {"stable": 2} and w.routing["routes"] == [{"version": 2, "label": "stable",
                                                                          "weight": 100}]
    w.run(30)
    assert w.phase == "Promoted" and w.status["reason"] == "InitialVersion", w.status
    assert "initial version of mnist" in w.status["message"]
    cond = {c["type"]: c for c in w.status["conditions"]}
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["reason"] == "InitialVersion"
    assert cond["Degraded"]["status"] == "False"
    assert not {"CanaryStep", "ABTestStarted", "ShadowStarted", "AnalysisPassed", "AnalysisFailed"} & set(w.reasons)
    assert w.routing["strategy"] == "single" and w.serving.versions == (2,)
    # What serves now is what the next rollout compares against.
    assert stable_version_of_routing(w.routing) == 2


def test_initial_rollout_waits_for_the_frontends_before_it_is_promoted():
    w = World(canary_spec(), stable=None, frontends_follow=False)
    _run_until(w, "Promoting")
    w.tick()
    w.tick()
    assert w.phase == "Progressing" and "waiting for frontends" in w.status["message"]
    w.frontends_follow = True
    w.run(10)
    assert w.phase == "Promoted" and "all 2 frontend(s)" in w.status["message"]


def test_initial_rollout_still_passes_the_offline_gate():
    w = World(canary_spec(), stable=None, candidate=CandidateInfo(True, 0.42, True, "metrics.json"))
    w.run(10)
    assert w.phase == "Failed" and w.status["reason"] == "GateFailed"
    assert w.serving is None and w.routing is None  # refused before it wrote anything


def test_initial_candidate_never_available_fails_and_routes_nothing():
    w = World(canary_spec(), stable=None, candidate=CandidateInfo(True, 0.98, False, "TF Serving: LOADING"))
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "CandidateNotAvailable"
    assert "nothing served before" in w.status["message"] and w.routing is None


def test_deleting_an_unfinished_initial_rollout_touches_nothing():
    w = World(canary_spec(), stable=None)
    _run_until(w, "Promoting")
    assert w.status["stage"] == "Promoting"
    assert on_delete(w.status, KEY, "/models/mnist", w.routing) is None  # no earlier version to go back to


def test_an_explicit_stable_version_still_wins_over_an_initial_rollout():
    w = World(canary_spec(stableVersion=1), stable=None)
    _run_until(w, "Canary")
    assert w.status["stage"] == "Canary" and w.status["stableVersion"] == 1 and "initial" not in w.status
    assert "InitialVersion" not in w.reasons


def test_initial_rollout_decides_the_same_from_its_persisted_status():
    w = World(canary_spec(), stable=None)
    while w.phase not in ("Promoted", "Failed"):
        before = json.loads(json.dumps(w.status)) if w.status else None
        d = w.tick()
        if before is not None:
            again = decide(w.spec, before, w.last_obs, w.now)
            assert again.status == d.status and again.routing == d.routing and again.serving == d.serving
    assert w.phase == "Promoted"


def test_routing_generation_only_increases_when_the_routing_changes():
    w = World(canary_spec())
    gens = []
    for _ in range(80):
        w.tick()
        gens.append(w.routing["generation"])
        if w.phase == "Promoted":
            break
    assert gens == sorted(gens)
    assert len(set(gens)) == 1 + 3 + 1  # initial, 3 steps... and the promotion to single


def test_a_rollout_for_a_model_the_routing_does_not_serve_is_refused_before_writing():
    w = World(canary_spec(model="fashion"))
    w.tick()
    assert w.phase == "Failed" and w.status["reason"] == "ModelNotServed"
    assert w.decisions[-1].routing is None and w.routing["model"] == "mnist"


# --- the stable version gets the candidate's checks -----------------------------------------------------------------

def _named_versions(w: World) -> set[int]:
    """Every version any written config named (routing routes and shadow, TF Serving versions and labels)."""
    named: set[int] = set()
    for d in w.decisions:
        if d.routing is not None:
            named |= {r.version for r in d.routing.routes} | ({d.routing.shadow[0]} if d.routing.shadow else set())
        if d.serving is not None:
            named |= set(d.serving.versions) | set(d.serving.labels.values())
    return named


def test_a_stable_version_that_does_not_exist_is_refused_and_nothing_routes_to_it():
    """The issue: `stableVersion: 99` passed the gate and 75% of traffic went to a version not in the store."""
    w = World(canary_spec(stableVersion=99))
    w.tick()
    assert w.phase == "Progressing" and w.status["reason"] == "StableNotFound"
    assert "waiting for stable v99: not found" in w.status["message"] and "stableVersion" not in w.status
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "StableNotFound", w.status
    assert "stable v99 not found after 10s" in w.status["message"]
    warnings = [e for d in w.decisions for e in d.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["StableNotFound"]
    assert 99 not in _named_versions(w) and not _named_versions(w), "nothing may be written"
    assert w.routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}] and w.routing["generation"] == 1
    cond = {c["type"]: c for c in w.status["conditions"]}
    assert cond["Degraded"]["status"] == "True" and cond["Degraded"]["reason"] == "StableNotFound"


def test_a_stable_version_that_is_published_but_not_loaded_fails_with_stable_not_available():
    w = World(canary_spec(stableVersion=3), version_facts={3: CandidateInfo(True, 0.97, False, "TF Serving: LOADING")})
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "StableNotAvailable"
    assert "stable v3 not AVAILABLE" in w.status["message"] and "TF Serving: LOADING" in w.status["message"]
    assert 3 not in _named_versions(w)


def test_the_stable_version_the_routing_serves_is_checked_too():
    """Unset stableVersion: the version the routing serves as stable must still be in TF Serving."""
    w = World(canary_spec(), version_facts={1: CandidateInfo(False, None, False, "TF Serving: not loaded")})
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "StableNotFound"
    assert not _named_versions(w)


def test_a_stable_version_published_within_the_gate_timeout_is_used():
    w = World(canary_spec(stableVersion=3), version_facts={3: CandidateInfo(False, None, False, "store")},
              behaviours={1: Behaviour(), 2: Behaviour(), 3: Behaviour()})
    for _ in range(3):
        w.tick()
    assert w.status["reason"] == "StableNotFound" and w.phase == "Progressing"
    w.version_facts = {3: CandidateInfo(True, 0.97, True, "store")}
    _run_until(w, "Canary")
    assert w.status["stage"] == "Canary" and w.status["stableVersion"] == 3
    assert [(r["version"], r["weight"]) for r in w.routing["routes"]] == [(3, 90), (2, 10)]


def test_replanning_to_a_missing_stable_version_keeps_traffic_on_the_checked_one():
    w = World(canary_spec())
    _run_until(w, "Canary")
    assert w.weight(2) == 10
    w.spec = canary_spec(stableVersion=99)
    w.generation += 1
    w.tick()
    assert w.status["reason"] == "StableNotFound" and w.weight(1) == 100 and w.status["stableVersion"] == 1
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "StableNotFound"
    assert w.routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
    assert 99 not in _named_versions(w)


# ---------------------------------------------------------------------------------- every TF Serving replica first

LAGGING = CandidateInfo(True, 0.98, False, "AVAILABLE on 2 of 3 TF Serving replicas; http://10.0.0.3:8501: not loaded")


def _until(w: World, predicate, max_ticks: int = 200) -> None:
    for _ in range(max_ticks):
        w.tick()
        if predicate(w):
            return
    raise AssertionError(f"never reached: {w.status}")


def test_a_canary_step_waits_until_every_replica_has_the_candidate():
    """A replica that joined mid-rollout has not loaded the candidate: more traffic to it would be NOT_FOUND there."""
    w = World(canary_spec(gate={"timeout": "60s"}))
    _until(w, lambda w: w.weight(2) == 10)
    w.candidate = LAGGING
    w.run(30)
    assert w.weight(2) == 10 and w.status["stage"] == "Canary" and w.status["reason"] == "WaitingForReplicas"
    assert "step 2/3 held: v2 is not AVAILABLE on every TF Serving replica (AVAILABLE on 2 of 3" in w.status["message"]
    assert w.reasons.count("WaitingForReplicas") == 1  # one Event per hold, not one per tick
    assert w.serving.labels == {"stable": 1, "canary": 2}
    w.candidate = CandidateInfo(True, 0.98, True, "AVAILABLE on all 3 TF Serving replica(s)")
    w.tick()
    assert w.weight(2) == 50 and "replicaWaitSince" not in w.status


def test_promotion_never_moves_the_stable_label_before_every_replica_has_the_candidate():
    """TF Serving refuses to move an existing label to a version it has not loaded, even with
    --allow_version_labels_for_unavailable_models (server_core.cc, UpdateModelVersionLabelMap)."""
    w = World(canary_spec(gate={"timeout": "60s"}))
    _until(w, lambda w: w.weight(2) == 50)
    w.candidate = LAGGING
    w.run(40)
    assert w.status["stage"] == "Canary" and w.weight(2) == 50 and w.serving.labels["stable"] == 1
    w.candidate = CandidateInfo(True, 0.98, True, "all")
    w.run(60)
    assert w.phase == "Promoted" and w.serving.labels == {"stable": 2}


def test_the_promoted_final_config_waits_for_every_replica_too():
    """{candidate alone, stable -> candidate} moves the label for a replica that skipped the promoting config."""
    w = World(canary_spec())
    _until(w, lambda w: w.status["stage"] == "Promoting")
    assert w.serving.versions == (1, 2) and w.serving.labels == {"stable": 2}
    w.candidate = LAGGING
    w.run(30)
    assert w.status["stage"] == "Promoting" and w.serving.versions == (1, 2)
    assert w.status["message"].startswith("unloading the old version held")
    w.candidate = CandidateInfo(True, 0.98, True, "all")
    w.run(10)
    assert w.phase == "Promoted" and w.serving.versions == (2,)


def test_a_candidate_some_replica_never_loads_is_rolled_back_after_gate_timeout():
    w = World(canary_spec())
    _until(w, lambda w: w.weight(2) == 10)
    w.candidate = LAGGING
    w.run(60)
    assert w.phase == "Failed" and w.status["reason"] == "CandidateNotAvailable"
    assert "not AVAILABLE on every TF Serving replica" in w.status["message"]
    assert w.routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
    assert w.serving.versions == (1,) and w.serving.labels == {"stable": 1}


def test_an_abtest_winner_is_promoted_only_once_every_replica_has_it():
    spec = canary_spec(strategy="abtest", abtest={"split": 50, "duration": "20s", "minSamples": 50},
                       gate={"timeout": "60s"})
    w = World(spec, version_facts={})
    _until(w, lambda w: w.status["stage"] == "ABTest")
    w.candidate = LAGGING
    w.run(30)
    assert w.status["stage"] == "ABTest" and w.status["reason"] == "WaitingForReplicas"
    assert w.serving.labels == {"stable": 1, "candidate": 2}
    w.candidate = CandidateInfo(True, 0.98, True, "all")
    w.run(30)
    assert w.phase == "Promoted"
