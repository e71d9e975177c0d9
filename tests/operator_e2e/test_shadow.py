"""Shadow rollouts end to end: the candidate answers copies of real requests that no user sees."""

from __future__ import annotations

import pytest

from .harness import FAST_ANALYSIS, Platform, Traffic, apply, example_rollout, model_config, parse_model_config

pytestmark = pytest.mark.slow


def shadow(name: str, candidate: int, stable: int, min_agreement: float) -> dict:
    return example_rollout("shadow", name, candidateVersion=candidate, stableVersion=stable,
                           shadow={"percent": 100, "duration": "4s", "promote": "switch"},
                           analysis={**FAST_ANALYSIS, "minAgreement": min_agreement}, gate={"minOfflineAccuracy": 0})


def test_shadow_switches_to_a_candidate_that_agrees_with_stable(platform: Platform, model_store, digits) -> None:
    # Two models right on accuracy a and b agree on at least a + b - 1 of the digits.
    agreement = round(max(0.3, model_store.accuracy[1] + model_store.accuracy[2] - 1 - 0.15), 2)
    platform.seed(stable=1)
    platform.operator.start()
    with Traffic(platform.frontend.base, *digits) as traffic:
        apply(platform.cluster, shadow("mnist-v2-shadow", 2, 1, agreement))
        platform.wait_stage("mnist-v2-shadow", "Shadow", 30)
        routing = platform.routing()
        assert routing["strategy"] == "shadow" and routing["shadow"] == {"version": 2, "percent": 100}
        assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
        assert parse_model_config(platform.serving_config()) == model_config([1, 2], {"stable": 1, "shadow": 2})
        answered_by_2_during_shadow = traffic.versions.get(2, 0)
        final = platform.wait_phase("mnist-v2-shadow", {"Promoted", "RolledBack", "Failed"}, 90)
    assert final["phase"] == "Promoted", (final.get("reason"), final.get("message"))
    assert answered_by_2_during_shadow == 0  # users only ever saw stable answers while v2 was a shadow
    assert final["lastAnalysis"]["shadow"]["agreement"] >= agreement
    platform.wait_event("mnist-v2-shadow", "Promoted")
    reasons = platform.event_reasons("mnist-v2-shadow")
    assert {"ShadowStarted", "AnalysisPassed", "Promoting", "Promoted"} <= set(reasons)
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    assert traffic.server_errors == 0


def test_shadow_rolls_back_a_candidate_that_disagrees(platform: Platform, model_store, digits) -> None:
    platform.seed(stable=2)
    platform.operator.start()
    with Traffic(platform.frontend.base, *digits) as traffic:
        apply(platform.cluster, shadow("mnist-v3-shadow", 3, 2, 0.6))
        final = platform.wait_phase("mnist-v3-shadow", {"Promoted", "RolledBack", "Failed"}, 60)
    assert final["phase"] == "RolledBack" and final["reason"] == "LowAgreement", final
    platform.wait_event("mnist-v3-shadow", "RolledBack")
    reasons = platform.event_reasons("mnist-v3-shadow")
    assert reasons.count("AnalysisFailed") == 2 and "Promoting" not in reasons
    assert traffic.versions.get(3, 0) == 0  # never answered a user
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert platform.routing()["shadow"] is None
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
