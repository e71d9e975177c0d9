"""The operator configured exactly as the Helm chart deploys it, against the chart's own ConfigMaps.

helm installs charts/mnist-platform into the emulated API; the operator process gets the environment of the
chart's operator Deployment, changed only where the cluster is not there (TF Serving's address: the gate checks
the model store instead; the model store's path), and it authenticates as the chart's ServiceAccount, so the chart's Role and
ClusterRole must grant every call it makes. A rollout then writes the ConfigMaps the chart created, and a
`helm upgrade` in the middle of it moves no traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.k8s_emulator import EmulatedCluster
from tests.support.k8s_emulator.clients import find_helm, run_tool

from .harness import (
    FAST_ANALYSIS,
    REPO_ROOT,
    OperatorProcess,
    apply,
    delete_rollout,
    example_rollout,
    model_config,
    parse_model_config,
    wait_for,
)

HELM = find_helm()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(HELM is None, reason="helm is missing: run `make tools`")]
RELEASE = "mnist"
VALUES = ["--set", "trainer.runAtInstall=false"]  # no post-install training Job: no controller would run it here


def helm(cluster: EmulatedCluster, *args: str) -> None:
    assert HELM is not None
    result = run_tool(cluster, [HELM, *args], timeout=120)
    assert result.returncode == 0, result.stderr


def chart_operator(cluster: EmulatedCluster) -> tuple[dict[str, str], str]:
    """The operator container's environment (fieldRefs resolved) and ServiceAccount, from the Deployment helm made."""
    deployments = cluster.list("apps/v1", "Deployment", "default", label_selector="app.kubernetes.io/component=operator")
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    pod = deployments[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = "default"
    return env, pod["serviceAccountName"]


def data(cluster: EmulatedCluster, name: str, key: str) -> str | None:
    cm = cluster.get("v1", "ConfigMap", name)
    assert cm is not None, f"the chart did not create ConfigMap {name}"
    return (cm.get("data") or {}).get(key)


def test_operator_as_the_chart_deploys_it_drives_the_charts_configmaps_and_survives_helm_upgrade(
        k8s_api: EmulatedCluster, model_store, tmp_path: Path) -> None:
    helm(k8s_api, "install", RELEASE, str(REPO_ROOT / "charts" / "mnist-platform"), "--disable-openapi-validation",
         *VALUES)
    env, service_account = chart_operator(k8s_api)
    # The operator acts as the chart's ServiceAccount: every call it makes must be granted by the chart's RBAC.
    kubeconfig = str(k8s_api.kubeconfig_for_service_account("default", service_account))
    routing_cm, routing_key = env["MNIST_OPERATOR_ROUTING_CONFIGMAP"], env["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"]
    serving_cm, serving_key = env["MNIST_OPERATOR_SERVING_CONFIGMAP"], env["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"]
    operator = OperatorProcess(k8s_api, {**env, "KUBECONFIG": kubeconfig, "MNIST_OPERATOR_KUBECONFIG": kubeconfig,
                                         "MNIST_OPERATOR_SERVING_REST": "",
                                         "MNIST_OPERATOR_MODEL_BASE_PATH": str(model_store.base_path.parent),
                                         "MNIST_OPERATOR_MAX_TICK_S": "0.5"}, tmp_path)
    operator.start()
    try:
        # A fresh install has no routing in place yet, so this first rollout names its stable version.
        apply_rollout = example_rollout("canary", "first", stableVersion=1,
                                        canary={"steps": [20, 100], "stepDuration": "60s"},
                                        analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0})
        apply(k8s_api, apply_rollout)
        wait_for(lambda: (k8s_api.get("ml.mnist-platform.dev/v1alpha1", "ModelRollout", "first") or {})
                 .get("status", {}).get("stage") == "Canary", 30, "the rollout to reach its first canary step")

        routing = json.loads(data(k8s_api, routing_cm, routing_key) or "null")
        assert routing is not None, f"the operator did not write {routing_key} into the chart's {routing_cm}"
        assert routing["routes"] == [{"version": 1, "label": "stable", "weight": 80},
                                     {"version": 2, "label": "canary", "weight": 20}]
        models = data(k8s_api, serving_cm, serving_key)
        assert models is not None and parse_model_config(models) == model_config([1, 2], {"stable": 1, "canary": 2})

        helm(k8s_api, "upgrade", RELEASE, str(REPO_ROOT / "charts" / "mnist-platform"), "--disable-openapi-validation",
             *VALUES, "--set", "frontend.replicas=3")
        assert json.loads(data(k8s_api, routing_cm, routing_key) or "null") == routing, "helm upgrade moved traffic"
        assert data(k8s_api, serving_cm, serving_key) == models, "helm upgrade rewrote the model config"

        delete_rollout(k8s_api, "first")
        back = json.loads(data(k8s_api, routing_cm, routing_key) or "null")
        assert back["routes"] == [{"version": 1, "label": "stable", "weight": 100}]
        assert "Forbidden" not in operator.logs() and "HTTP 403" not in operator.logs(), operator.logs()
    finally:
        operator.stop()


def test_first_rollout_after_install_as_the_notes_say(k8s_api: EmulatedCluster, model_store, tmp_path: Path) -> None:
    helm(k8s_api, "install", RELEASE, str(REPO_ROOT / "charts" / "mnist-platform"), "--disable-openapi-validation",
         *VALUES)
    env, _ = chart_operator(k8s_api)
    operator = OperatorProcess(k8s_api, {**env, "MNIST_OPERATOR_SERVING_REST": "",
                                         "MNIST_OPERATOR_MODEL_BASE_PATH": str(model_store.base_path.parent)}, tmp_path)
    operator.start()
    try:
        example = yaml.safe_load((REPO_ROOT / "k8s" / "examples" / "canary.yaml").read_text())
        # The test's tiny models (one epoch on a few thousand images) sit just below the example's 0.9 offline gate
        # that a model trained in the cluster passes; the gate is set just under them, the rest is the example's.
        example["spec"]["gate"]["minOfflineAccuracy"] = min(0.9, round(model_store.accuracy[2] - 0.01, 2))
        apply(k8s_api, example)
        status = wait_for(lambda: (k8s_api.get("ml.mnist-platform.dev/v1alpha1", "ModelRollout", "mnist-v2-canary")
                                   or {}).get("status", {}).get("stage") not in (None, "Waiting", "Gate") and
                          k8s_api.get("ml.mnist-platform.dev/v1alpha1", "ModelRollout", "mnist-v2-canary")["status"],
                          30, "the example rollout to get past the gate")
        assert status["phase"] == "Progressing", status
        # Nothing served before, so v2 is the initial version: labelled stable and given all traffic, no canary.
        routing_cm, routing_key = env["MNIST_OPERATOR_ROUTING_CONFIGMAP"], env["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"]
        routing = wait_for(lambda: json.loads(data(k8s_api, routing_cm, routing_key) or "null"), 30,
                           f"the operator to write {routing_key} into the chart's {routing_cm}")
        assert routing["routes"] == [{"version": 2, "label": "stable", "weight": 100}], routing
        serving_cm, serving_key = env["MNIST_OPERATOR_SERVING_CONFIGMAP"], env["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"]
        models = data(k8s_api, serving_cm, serving_key)
        assert models is not None and parse_model_config(models) == model_config([2], {"stable": 2})

        def initial_version_status() -> dict | None:
            st = k8s_api.get("ml.mnist-platform.dev/v1alpha1", "ModelRollout", "mnist-v2-canary")["status"]
            return st if st.get("reason") == "InitialVersion" else None

        rollout = wait_for(initial_version_status, 30,
                           "the rollout's status to say InitialVersion (the routing is written just before it)")
        assert rollout["candidateWeight"] == 100 and "stableVersion" not in rollout, rollout
    finally:
        operator.stop()
