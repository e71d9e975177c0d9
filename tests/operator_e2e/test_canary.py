"""Canary rollouts end to end: real kopf operator, emulated API, real frontend and traffic."""

from __future__ import annotations

import time

import pytest

from tests.support.k8s_emulator.clients import kubectl

from .harness import (
    API_VERSION,
    FAST_ANALYSIS,
    KUBECTL,
    MODEL,
    Platform,
    Traffic,
    apply,
    example_rollout,
    model_config,
    parse_model_config,
)

pytestmark = pytest.mark.slow

def test_canary_promotes_a_good_candidate_across_an_operator_kill(platform: Platform, model_store,
                                                                   digits) -> None:
    floor = round(min(model_store.accuracy[1], model_store.accuracy[2]) - 0.15, 2)
    platform.seed(stable=1)
    platform.operator.start()
    rollout = example_rollout("canary", "mnist-v2", canary={"steps": [30, 60, 100], "stepDuration": "2s"},
                              analysis={**FAST_ANALYSIS, "minAccuracy": floor}, gate={"minOfflineAccuracy": floor})
    with Traffic(platform.frontend.base, *digits) as traffic:
        apply(platform.cluster, rollout)
        status = platform.wait_stage("mnist-v2", "Canary", 30)
        assert status["candidateWeight"] == 30
        # While the first step is judged, the model config holds both versions and the routing sends 30% to v2.
        assert parse_model_config(platform.serving_config()) == model_config([1, 2], {"stable": 1, "canary": 2})
        routing = platform.routing()
        assert routing["strategy"] == "canary" and routing["rollout"] == "default/mnist-v2"
        assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 70},
                                     {"version": 2, "label": "canary", "weight": 30}]

        # A lost operator pod mid-rollout: nothing changes while it is away, and its successor carries on.
        # (Events follow the status write they explain; wait for them so that the kill does not race them.)
        platform.wait_event("mnist-v2", "CanaryStep")
        platform.operator.kill()
        before = (platform.routing(), platform.status("mnist-v2")["step"])
        time.sleep(1.5)
        assert platform.routing() == before[0]
        platform.operator.start()
        final = platform.wait_phase("mnist-v2", {"Promoted", "RolledBack", "Failed"}, 90)
    assert final["phase"] == "Promoted", final
    assert final["step"] >= before[1]

    weights = platform.sync.candidate_weights(2)
    assert weights == sorted(weights), f"the candidate's weight went backwards: {weights}"
    assert {30, 60} <= set(weights) and weights[-1] == 100
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    routing = platform.routing()
    assert routing == {"model": MODEL, "strategy": "single", "routes": [{"version": 2, "label": "stable", "weight": 100}],
                       "sticky_header": None, "shadow": None, "rollout": "default/mnist-v2",
                       "generation": routing["generation"]}
    assert routing["generation"] > platform.seed_generation

    platform.wait_event("mnist-v2", "Promoted")
    reasons = platform.event_reasons("mnist-v2")
    assert reasons.count("Created") == 1 and reasons.count("GatePassed") == 1  # the restart did not start over
    assert {"CandidateAvailable", "CanaryStep", "AnalysisPassed", "Promoting", "Promoted"} <= set(reasons)
    assert "AnalysisFailed" not in reasons
    assert traffic.server_errors == 0 and traffic.versions.get(1, 0) > 0 and traffic.versions.get(2, 0) > 0
    assert platform.cluster.get(API_VERSION, "ModelVersion", "mnist-v2")["status"]["phase"] == "Stable"
    if KUBECTL is not None:  # what a person sees
        header, row = (line.split() for line in kubectl(platform.cluster, "get", "mr", "mnist-v2").stdout.splitlines())
        shown = dict(zip(header, row, strict=True))
        assert header == ["NAME", "MODEL", "STABLE", "CANDIDATE", "STRATEGY", "WEIGHT", "PHASE", "AGE"]
        assert (shown["NAME"], shown["CANDIDATE"], shown["STRATEGY"], shown["WEIGHT"], shown["PHASE"]) == (
            "mnist-v2", "2", "canary", "100", "Promoted")
        described = kubectl(platform.cluster, "describe", "mr", "mnist-v2").stdout
        assert "Phase:" in described and "Promoted" in described and "CanaryStep" in described.split("Events:")[1]


def test_canary_rolls_back_a_broken_candidate_within_failure_limit(platform: Platform, model_store,
                                                                   digits) -> None:
    floor = round(model_store.accuracy[2] - 0.15, 2)
    platform.seed(stable=2)
    platform.operator.start()
    # The offline gate would refuse v3 before any traffic (tests/operator_e2e/test_lifecycle.py); opened here so that
    # the live analysis has to catch it on feedback accuracy.
    rollout = example_rollout("canary", "mnist-v3", candidateVersion=3, stableVersion=2,
                              canary={"steps": [30, 100], "stepDuration": "20s"},
                              analysis={**FAST_ANALYSIS, "minAccuracy": floor}, gate={"minOfflineAccuracy": 0})
    with Traffic(platform.frontend.base, *digits) as traffic:
        apply(platform.cluster, rollout)
        platform.wait_stage("mnist-v3", "Canary", 30)
        first_check = time.monotonic()
        final = platform.wait_phase("mnist-v3", {"Promoted", "RolledBack", "Failed"}, 60)
    assert final["phase"] == "RolledBack" and final["reason"] == "LowAccuracy", final
    platform.wait_event("mnist-v3", "RolledBack")
    reasons = platform.event_reasons("mnist-v3")
    assert reasons.count("AnalysisFailed") == 2 and "RollingBack" in reasons and "Promoting" not in reasons
    # Two failed checks one interval apart, after the first window filled: well within the 20 s step.
    assert time.monotonic() - first_check < 20
    assert max(platform.sync.candidate_weights(3)) == 30
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    assert traffic.server_errors == 0 and traffic.versions.get(3, 0) > 0
