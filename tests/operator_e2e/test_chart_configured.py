"""The operator configured exactly as the Helm chart deploys it, against the chart's own ConfigMaps and RBAC.

helm installs charts/mnist-platform into the test's namespace on the real control plane (the API server validates
every object against its OpenAPI schema). The operator process gets the environment of the chart's operator
Deployment, changed only where the cluster is not there (TF Serving's address: the gate checks the model store
instead; the model store's path), and it logs in as the chart's ServiceAccount with a token from the TokenRequest
API, as its pod would: the chart's Role and ClusterRole must grant every call it makes, and nothing else does.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from .harness import (
    API_VERSION,
    FAST_ANALYSIS,
    Chart,
    Frontend,
    Traffic,
    apply,
    delete_rollout,
    example_rollout,
    frontend_as_chart_pod,
    model_config,
    parse_model_config,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_operator_as_the_chart_deploys_it_promotes_under_its_own_token_across_helm_upgrade(
        chart: Chart, frontend: Frontend, model_store, digits, tmp_path: Path) -> None:
    cluster = chart.cluster
    frontend_as_chart_pod(chart)
    sync = chart.sync(frontend).start()
    operator = chart.operator(model_store.base_path.parent, tmp_path)
    operator.start()
    floor = round(min(model_store.accuracy[1], model_store.accuracy[2]) - 0.15, 2)
    try:
        with Traffic(frontend.base, *digits) as traffic:
            # A fresh install has no routing in place yet, so this rollout names its stable version.
            apply(cluster, example_rollout("canary", "first", stableVersion=1,
                                           canary={"steps": [20, 100], "stepDuration": "60s"},
                                           analysis={**FAST_ANALYSIS, "minAccuracy": floor},
                                           gate={"minOfflineAccuracy": floor}))
            wait_for(lambda: (cluster.get(API_VERSION, "ModelRollout", "first") or {}).get("status", {})
                     .get("stage") == "Canary", 60, "the rollout to reach its first canary step")
            routing = chart.routing()
            assert routing is not None, "the operator did not write the routing into the chart's ConfigMap"
            assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 80},
                                         {"version": 2, "label": "canary", "weight": 20}]
            models = chart.models()
            assert models is not None and parse_model_config(models) == model_config([1, 2], {"stable": 1, "canary": 2})

            # helm upgrade in the middle of a step: the chart keeps what the operator wrote (lookup), moves nothing.
            chart.upgrade("--set", "frontend.replicas=3")
            assert chart.routing() == routing, "helm upgrade moved traffic"
            assert chart.models() == models, "helm upgrade rewrote the model config"

            # A shorter step re-plans in place; the rollout then goes through to the end under the chart's token.
            cluster.check(cluster.kubectl("patch", "mr", "first", "--type=merge",
                                          "-p", '{"spec": {"canary": {"stepDuration": "2s"}}}'))
            final = wait_for(lambda: (lambda st: st if st.get("phase") in ("Promoted", "RolledBack", "Failed")
                                      else None)(cluster.get(API_VERSION, "ModelRollout", "first").get("status", {})),
                             90, "the rollout to finish")
        assert final["phase"] == "Promoted", (final, operator.logs())
        assert chart.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
        assert parse_model_config(chart.models()) == model_config([2], {"stable": 2})
        assert [w for w, _ in itertools.groupby(sync.candidate_weights(2))] == [0, 20, 100], sync.routing_history
        assert traffic.server_errors == 0 and traffic.versions.get(2, 0) > 0

        # Deleting a rollout mid-way: the finalizer, under the same token, gives all traffic back to stable.
        apply(cluster, example_rollout("canary", "second", candidateVersion=3,
                                       canary={"steps": [10, 100], "stepDuration": "60s"},
                                       analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0}))
        wait_for(lambda: (chart.routing() or {}).get("rollout") == f"{cluster.namespace}/second"
                 and chart.routing()["routes"][-1]["weight"] == 10, 60, "the second rollout's first step")
        delete_rollout(cluster, "second")
        assert chart.routing()["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
        assert parse_model_config(chart.models()) == model_config([2], {"stable": 2})
        logs = operator.logs()
        assert "forbidden" not in logs.lower() and "HTTP 403" not in logs, logs
    finally:
        operator.stop()
        sync.stop()
    sync.check()


def test_first_rollout_after_install_as_the_notes_say(chart: Chart, model_store, tmp_path: Path) -> None:
    operator = chart.operator(model_store.base_path.parent, tmp_path)
    operator.start()
    cluster = chart.cluster
    try:
        example = yaml.safe_load((Path(__file__).resolve().parents[2] / "k8s" / "examples" / "canary.yaml")
                                 .read_text())
        # The test's tiny models (one epoch on a few thousand images) sit just below the example's 0.9 offline gate
        # that a model trained in the cluster passes; the gate is set just under them, the rest is the example's.
        example["spec"]["gate"]["minOfflineAccuracy"] = min(0.9, round(model_store.accuracy[2] - 0.01, 2))
        apply(cluster, example)

        def rollout_status() -> dict:
            return (cluster.get(API_VERSION, "ModelRollout", "mnist-v2-canary") or {}).get("status") or {}

        status = wait_for(lambda: (lambda st: st if st.get("stage") not in (None, "Waiting", "Gate") else None)(
            rollout_status()), 60, "the example rollout to get past the gate")
        assert status["phase"] == "Progressing", status
        # Nothing served before, so v2 is the initial version: labelled stable and given all traffic, no canary.
        routing = wait_for(chart.routing, 30, "the operator to write the routing into the chart's ConfigMap")
        assert routing["routes"] == [{"version": 2, "label": "stable", "weight": 100}], routing
        assert parse_model_config(chart.models()) == model_config([2], {"stable": 2})
        rollout = wait_for(lambda: (lambda st: st if st.get("reason") == "InitialVersion" else None)(rollout_status()),
                           30, "the rollout's status to say InitialVersion (the routing is written just before it)")
        assert rollout["candidateWeight"] == 100 and "stableVersion" not in rollout, rollout
    finally:
        operator.stop()
