"""The rest of a rollout's life through the API: refused specs, the gate, one rollout per model, deletion, reaction."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.support.cluster import Cluster

from .harness import (
    API_VERSION,
    EXAMPLES,
    FAST_ANALYSIS,
    Platform,
    apply,
    delete_rollout,
    example_rollout,
    model_config,
    parse_model_config,
    patch_rollout,
    try_apply,
    wait_for,
)

pytestmark = pytest.mark.slow

# Each invalid example is refused before the operator ever sees it, naming the field (kubectl's words, as a user
# reads them): by the API server's schema and CEL rules, or, for .inf, by kubectl itself (JSON has no infinity).
# tests/cluster/test_crds_validation.py owns the API server's refusals in full; this is what the operator relies on.
INVALID = {"bad-duration": "spec.canary.stepDuration", "duration-absurd": "spec.abtest.duration",
           "duration-too-long": "spec.analysis.inconclusiveTimeout", "latency-infinite": "unsupported value: +Inf",
           "missing-model": "spec.model", "split-100": "spec.abtest.split",
           "stable-equals-candidate": "stableVersion must differ from candidateVersion",
           "steps-not-increasing": "spec.canary.steps", "sticky-header-space": "spec.abtest.stickyHeader",
           "unknown-strategy": "spec.strategy", "weight-150": "spec.canary.steps[1]"}


def test_invalid_examples_are_refused_by_the_schema_with_the_field_named(cluster: Cluster) -> None:
    assert set(INVALID) == {p.stem for p in (EXAMPLES / "invalid").glob("*.yaml")}, "an invalid example unchecked"
    for example, field in INVALID.items():
        accepted, message = try_apply(cluster, yaml.safe_load((EXAMPLES / "invalid" / f"{example}.yaml").read_text()))
        assert not accepted and field in message, (example, message)
    assert cluster.list(API_VERSION, "ModelRollout") == []
    # An unknown field is refused too under --validate=strict (the API server's strict field validation).
    unknown = yaml.safe_load((EXAMPLES / "canary.yaml").read_text())
    unknown["spec"]["canary"]["stepDuraton"] = "30s"
    accepted, message = try_apply(cluster, unknown)
    assert not accepted and 'unknown field "spec.canary.stepDuraton"' in message, message
    for example in ("canary", "abtest", "shadow"):  # the valid ones are accepted as they are
        apply(cluster, yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text()))
    assert len(cluster.list(API_VERSION, "ModelRollout")) == 3


def test_an_edit_that_cannot_work_is_refused_mid_rollout_and_the_rollout_goes_on(platform: Platform) -> None:
    """What parse_spec would fail as InvalidSpec (steps going back, stable == candidate) the API server's CEL rules
    refuse first: a running rollout is never replanned from a spec that cannot work."""
    platform.seed(stable=1)
    platform.operator.start()
    apply(platform.cluster, example_rollout("canary", "steady", canary={"steps": [10, 100], "stepDuration": "60s"},
                                            analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0}))
    platform.wait_stage("steady", "Canary", 60)
    routing = platform.routing()
    for patch, words in (({"canary": {"steps": [50, 20]}}, "steps must be strictly increasing"),
                         ({"stableVersion": 2}, "stableVersion must differ from candidateVersion")):
        refused = platform.cluster.kubectl("patch", "mr", "steady", "--type=merge", "-p", json.dumps({"spec": patch}))
        assert refused.returncode != 0 and words in refused.stderr, refused.stderr
    rollout = platform.rollout("steady")
    assert rollout["metadata"]["generation"] == 1 and rollout["status"]["stage"] == "Canary", rollout["status"]
    assert rollout["status"]["candidateWeight"] == 10 and platform.routing() == routing
    assert "InvalidSpec" not in platform.event_reasons("steady")


def test_delete_mid_rollout_returns_traffic_to_stable_and_the_next_rollout_goes_through_the_gate(
        platform: Platform, model_store) -> None:
    floor = round(min(model_store.accuracy[1], model_store.accuracy[2]) - 0.15, 2)
    platform.seed(stable=1)
    platform.operator.start()
    apply(platform.cluster, example_rollout("canary", "first", canary={"steps": [40, 100], "stepDuration": "60s"},
                                    analysis={**FAST_ANALYSIS, "minAccuracy": floor},
                                    gate={"minOfflineAccuracy": floor}))
    platform.wait_stage("first", "Canary", 30)
    assert platform.routing()["routes"][1] == {"version": 2, "label": "canary", "weight": 40}

    # One active rollout per model: a second one waits, saying for which.
    apply(platform.cluster, example_rollout("canary", "second", candidateVersion=3, stableVersion=1))
    waiting = wait_for(lambda: platform.status("second").get("reason") == "WaitingForRollout"
                       and platform.status("second"), 30, "the second rollout to wait")
    assert waiting["phase"] == "Pending" and f"{platform.namespace}/first" in waiting["message"]

    delete_rollout(platform.cluster, "first")
    assert platform.cluster.get(API_VERSION, "ModelRollout", "first") is None
    routing = platform.routing()
    assert routing["strategy"] == "single" and routing["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
    assert parse_model_config(platform.serving_config()) == model_config([1], {"stable": 1})
    deleted_warning = [e for e in platform.events("first") if e["reason"] == "RolledBackOnDelete"]
    assert deleted_warning and deleted_warning[0]["type"] == "Warning"

    # Now the second may start: broken v3 fails the offline gate (CRD default 0.9) before any traffic reaches it.
    final = platform.wait_phase("second", {"Failed", "Promoted", "RolledBack"}, 30)
    assert final["phase"] == "Failed" and final["reason"] == "GateFailed", final
    assert all(r["version"] != 3 for doc in platform.sync.routing_history for r in doc["routes"])


def test_operator_reacts_to_changes_within_seconds(platform: Platform) -> None:
    """The issue asks for under 1 s; benchmarks/operator_bench.py measures it, this only guards the order of it."""
    platform.seed(stable=1)
    platform.operator.start()
    started = time.monotonic()
    apply(platform.cluster, example_rollout("canary", "quick", stableVersion=1, canary={"steps": [10, 100], "stepDuration": "60s"},
                                    analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0}))
    platform.wait_stage("quick", "Canary", 30)
    to_first_step = time.monotonic() - started
    started = time.monotonic()
    patch_rollout(platform.cluster, "quick", {"spec": {"paused": True}})
    paused = platform.wait_phase("quick", {"Paused"}, 30)
    to_pause = time.monotonic() - started
    print(f"create -> canary step 1: {to_first_step:.2f}s; patch paused -> Paused: {to_pause:.2f}s")
    assert to_pause < 5 and to_first_step < 10
    assert paused["stage"] == "Canary" and paused["candidateWeight"] == 10, paused
    assert platform.routing()["routes"][1]["weight"] == 10, platform.routing()
    assert platform.wait_event("quick", "Paused")["message"].endswith("candidate weight 10%")


def test_pausing_a_rollout_without_stable_version_holds_it_where_it_is(platform: Platform) -> None:
    platform.seed(stable=1)
    platform.operator.start()
    apply(platform.cluster, example_rollout("canary", "held", canary={"steps": [10, 100], "stepDuration": "60s"},
                                    analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0}))
    platform.wait_stage("held", "Canary", 30)
    patch_rollout(platform.cluster, "held", {"spec": {"paused": True}})
    paused = platform.wait_phase("held", {"Paused"}, 30)
    assert paused["stage"] == "Canary" and paused["candidateWeight"] == 10, paused


def test_model_store_discovery_registers_each_published_version_in_the_watched_namespace(
        platform: Platform, model_store) -> None:
    """No rollout needed: the operator's discovery finds versions 1, 2 and 3 in the store it mounts."""
    platform.operator.start()
    names = {f"mnist-v{v}": v for v in model_store.accuracy}
    registered = wait_for(lambda: (lambda found: found if set(names) <= set(found) else None)(
        {mv["metadata"]["name"]: mv for mv in platform.cluster.list(API_VERSION, "ModelVersion")
         if (mv.get("status") or {}).get("phase")}), 60, "every published version to be registered")
    for name, version in names.items():
        spec, status = registered[name]["spec"], registered[name]["status"]
        assert (spec["model"], spec["version"], status["phase"]) == ("mnist", version, "Registered"), registered[name]
        assert spec["testAccuracy"] == model_store.accuracy[version]
    elsewhere = [f"{mv['metadata']['namespace']}/{mv['metadata']['name']}"
                 for mv in platform.cluster.list(API_VERSION, "ModelVersion", namespace="default")]
    assert elsewhere == [], "registered outside the namespace the operator watches"
