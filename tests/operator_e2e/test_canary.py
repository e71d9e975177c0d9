"""Canary rollouts end to end: kubectl apply, a real kopf operator on a real control plane, a real frontend and
traffic; what a person sees with kubectl get / describe."""

from __future__ import annotations

import itertools
import time

import pytest

from .harness import (
    API_VERSION,
    FAST_ANALYSIS,
    MODEL,
    Platform,
    Traffic,
    apply,
    describe_events,
    example_rollout,
    model_config,
    parse_model_config,
)

pytestmark = pytest.mark.slow


def distinct(values: list[int]) -> list[int]:
    """Values without consecutive repeats: the steps the weight went through."""
    return [v for v, _ in itertools.groupby(values)]


def test_canary_promotes_a_good_candidate_across_an_operator_kill(platform: Platform, model_store,
                                                                   digits) -> None:
    floor = round(min(model_store.accuracy[1], model_store.accuracy[2]) - 0.15, 2)
    platform.seed(stable=1)
    platform.operator.start()
    rollout = example_rollout("canary", "mnist-v2", canary={"steps": [30, 60, 100], "stepDuration": "2s"},
                              analysis={**FAST_ANALYSIS, "minAccuracy": floor}, gate={"minOfflineAccuracy": floor})
    with Traffic(platform.frontend.base, *digits) as traffic:
        apply(platform.cluster, rollout)
        status = platform.wait_stage("mnist-v2", "Canary", 60)
        assert status["candidateWeight"] == 30
        # While the first step is judged, the model config holds both versions and the routing sends 30% to v2.
        assert parse_model_config(platform.serving_config()) == model_config([1, 2], {"stable": 1, "canary": 2})
        routing = platform.routing()
        assert routing["strategy"] == "canary" and routing["rollout"] == f"{platform.namespace}/mnist-v2"
        assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 70},
                                     {"version": 2, "label": "canary", "weight": 30}]

        # A lost operator pod mid-rollout (SIGKILL: no goodbye); its successor resumes from the status.
        # (Events follow the status write they explain; wait for them so that the kill does not race them.)
        platform.wait_event("mnist-v2", "CanaryStep")
        platform.operator.kill()
        before = platform.status("mnist-v2")
        platform.operator.start()
        final = platform.wait_phase("mnist-v2", {"Promoted", "RolledBack", "Failed"}, 120)
    assert final["phase"] == "Promoted", (final.get("reason"), final.get("message"))
    assert final["step"] >= before["step"]

    # Every routing document the API server stored, in order (the sync watches it): the candidate's weight went
    # through each step once, in order, across the kill: never back, never a step skipped.
    assert distinct(platform.sync.candidate_weights(2)) == [0, 30, 60, 100], platform.sync.routing_history
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    routing = platform.routing()
    assert routing == {"model": MODEL, "strategy": "single", "routes": [{"version": 2, "label": "stable", "weight": 100}],
                       "sticky_header": None, "shadow": None, "rollout": f"{platform.namespace}/mnist-v2",
                       "generation": routing["generation"]}
    assert routing["generation"] > platform.seed_generation

    platform.wait_event("mnist-v2", "Promoted")
    reasons = platform.event_reasons("mnist-v2")
    assert reasons.count("Created") == 1 and reasons.count("GatePassed") == 1  # the restart did not start over
    assert {"CandidateAvailable", "CanaryStep", "AnalysisPassed", "Promoting", "Promoted"} <= set(reasons)
    assert "AnalysisFailed" not in reasons
    assert traffic.server_errors == 0 and traffic.versions.get(1, 0) > 0 and traffic.versions.get(2, 0) > 0
    assert platform.cluster.get(API_VERSION, "ModelVersion", "mnist-v2")["status"]["phase"] == "Stable"

    # What a person sees.
    header, row = (line.split() for line in platform.cluster.check(
        platform.cluster.kubectl("get", "mr", "mnist-v2")).splitlines())
    shown = dict(zip(header, row, strict=True))
    assert header == ["NAME", "MODEL", "STABLE", "CANDIDATE", "STRATEGY", "WEIGHT", "PHASE", "AGE"]
    assert (shown["NAME"], shown["CANDIDATE"], shown["STRATEGY"], shown["WEIGHT"], shown["PHASE"]) == (
        "mnist-v2", "2", "canary", "100", "Promoted")
    # (describe sorts Events by their timestamps, which have whole seconds: within a second the order is its own.)
    described = describe_events(platform.cluster, "mnist-v2")
    steps = sorted(message.split(":")[0] for kind, reason, message in described if reason == "CanaryStep")
    assert steps == ["step 1/3", "step 2/3", "step 3/3"], described
    shown_reasons = [(kind, reason) for kind, reason, _ in described]
    for kind, reason in (("Normal", "Created"), ("Normal", "GatePassed"), ("Normal", "CandidateAvailable"),
                         ("Normal", "Promoting"), ("Normal", "Promoted")):
        assert shown_reasons.count((kind, reason)) == 1, (reason, described)
    # The API's own order (resourceVersion): each step once, in order, across the restart.
    order = [r for r in reasons if r in ("Created", "GatePassed", "CanaryStep", "Promoting", "Promoted")]
    assert order == ["Created", "GatePassed", "CanaryStep", "CanaryStep", "CanaryStep", "Promoting", "Promoted"]


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
        platform.wait_stage("mnist-v3", "Canary", 60)
        first_check = time.monotonic()
        final = platform.wait_phase("mnist-v3", {"Promoted", "RolledBack", "Failed"}, 90)
    assert final["phase"] == "RolledBack" and final["reason"] == "LowAccuracy", final
    platform.wait_event("mnist-v3", "RolledBack")
    reasons = platform.event_reasons("mnist-v3")
    assert reasons.count("AnalysisFailed") == 2 and "RollingBack" in reasons and "Promoting" not in reasons
    # Two failed checks one interval apart, after the first window filled: well within the 20 s step.
    assert time.monotonic() - first_check < 20
    assert distinct(platform.sync.candidate_weights(3)) == [0, 30, 0], platform.sync.routing_history
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    assert traffic.server_errors == 0 and traffic.versions.get(3, 0) > 0
    assert platform.cluster.get(API_VERSION, "ModelVersion", "mnist-v3")["status"]["phase"] == "Rejected"
    # kubectl describe tells the story: two failed checks naming the accuracy, then the rollback, as Warnings.
    described = describe_events(platform.cluster, "mnist-v3")
    failed = sorted(message for kind, reason, message in described if (kind, reason) == ("Warning", "AnalysisFailed"))
    assert [m.split(" failed:")[0] for m in failed] == ["check 1/2", "check 2/2"], described
    assert all("feedback accuracy" in message for message in failed), failed
    shown_reasons = [(kind, reason) for kind, reason, _ in described]
    assert shown_reasons.count(("Warning", "RollingBack")) == 1 and shown_reasons.count(("Warning", "RolledBack")) == 1
