"""A/B test rollouts end to end: sticky split by X-User-Id, winner by feedback accuracy on real traffic."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from .harness import (
    FAST_ANALYSIS,
    MODEL,
    Platform,
    Traffic,
    apply,
    example_rollout,
    model_config,
    parse_model_config,
    wait_for,
)

pytestmark = pytest.mark.slow


def abtest(name: str, candidate: int, stable: int, floor: float, confidence: float) -> dict:
    return example_rollout("abtest", name, candidateVersion=candidate, stableVersion=stable,
                           abtest={"split": 50, "duration": "8s", "minSamples": 20, "confidence": confidence,
                                   "require": "notWorse"},
                           analysis={**FAST_ANALYSIS, "minAccuracy": floor}, gate={"minOfflineAccuracy": 0})


def probe_stickiness(platform: Platform, generation: int, image: np.ndarray, users: int = 16,
                     repeats: int = 3) -> dict[str, set[int]]:
    """Versions each of a few users gets over repeated requests, once the frontend serves the A/B routing."""
    wait_for(lambda: platform.frontend.serves_generation(generation), 10, "the frontend to load the A/B routing")
    seen: dict[str, set[int]] = {}
    body = {"instances": [image.tolist()]}
    with requests.Session() as http:
        for user in (f"probe-user-{i}" for i in range(users)):
            for _ in range(repeats):
                r = http.post(f"{platform.frontend.base}/v1/predict", json=body, headers={"X-User-Id": user}, timeout=10)
                assert r.status_code == 200, r.text
                seen.setdefault(user, set()).add(int(r.json()["version"]))
    return seen


def test_abtest_promotes_a_candidate_that_is_not_worse(platform: Platform, model_store, digits) -> None:
    floor = round(min(model_store.accuracy[1], model_store.accuracy[2]) - 0.15, 2)
    platform.seed(stable=1)
    platform.operator.start()
    with Traffic(platform.frontend.base, *digits, users=100) as traffic:
        # v1 and v2 are about equally accurate (the store's v2 was 0.5 points below v1 on the test digits): "not
        # worse at 95%" then loses one run in 20 or more by chance alone (it did). At 99.99% (z_c 3.72) a tie on a
        # few hundred answers per side promotes; the test is of the operator, not of luck.
        apply(platform.cluster, abtest("mnist-v2-ab", 2, 1, floor, confidence=0.9999))
        platform.wait_stage("mnist-v2-ab", "ABTest", 30)
        routing = platform.routing()
        assert routing["strategy"] == "abtest" and routing["sticky_header"] == "X-User-Id"
        assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 50},
                                     {"version": 2, "label": "candidate", "weight": 50}]
        assert parse_model_config(platform.serving_config()) == model_config([1, 2], {"stable": 1, "candidate": 2})
        sticky = probe_stickiness(platform, routing["generation"], digits[0][0])
        final = platform.wait_phase("mnist-v2-ab", {"Promoted", "RolledBack", "Failed"}, 90)
    assert final["phase"] == "Promoted", (final.get("reason"), final.get("message"))
    verdict = final["lastAnalysis"]["abtest"]
    assert verdict["candidateN"] >= 20 and verdict["stableN"] >= 20
    assert platform.wait_event("mnist-v2-ab", "Promoted")["type"] == "Normal"
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    # Sticky: while the test ran, each user kept one version, and both versions had users.
    assert all(len(seen) == 1 for seen in sticky.values()), sticky
    assert set().union(*sticky.values()) == {1, 2}
    assert traffic.versions.get(1, 0) > 0 and traffic.versions.get(2, 0) > 0 and traffic.server_errors == 0


def test_abtest_rolls_back_a_candidate_that_loses_on_feedback(platform: Platform, model_store, digits) -> None:
    floor = round(model_store.accuracy[2] - 0.15, 2)
    platform.seed(stable=2)
    platform.operator.start()
    with Traffic(platform.frontend.base, *digits, users=100) as traffic:
        apply(platform.cluster, abtest("mnist-v3-ab", 3, 2, floor, confidence=0.95))
        final = platform.wait_phase("mnist-v3-ab", {"Promoted", "RolledBack", "Failed"}, 90)
    assert final["phase"] == "RolledBack" and final["reason"] == "LostABTest", (final.get("reason"),
                                                                                 final.get("message"))
    verdict = final["lastAnalysis"]["abtest"]
    assert verdict["candidateAccuracy"] < verdict["stableAccuracy"]
    platform.wait_event("mnist-v3-ab", "RolledBack")
    reasons = platform.event_reasons("mnist-v3-ab")
    assert "ABTestStarted" in reasons and "RollingBack" in reasons and "Promoted" not in reasons
    assert platform.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert platform.routing()["model"] == MODEL
    assert parse_model_config(platform.serving_config()) == model_config([2], {"stable": 2})
    assert traffic.server_errors == 0 and traffic.versions.get(3, 0) > 0
