"""The operator configured exactly as the Helm chart deploys it, against the chart's own ConfigMaps and RBAC.

helm installs charts/mnist-platform into the test's namespace on the real control plane (the API server validates
every object against its OpenAPI schema). The operator process gets the environment of the chart's operator
Deployment, changed only where the cluster is not there (TF Serving's address: the gate checks the model store
instead; the model store's path), and it logs in as the chart's ServiceAccount with a token from the TokenRequest
API, as its pod would: the chart's Role and ClusterRole must grant every call it makes, and nothing else does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster

from .harness import (
    API_VERSION,
    CHART,
    FAST_ANALYSIS,
    ConfigMapSync,
    Frontend,
    OperatorProcess,
    Traffic,
    apply,
    delete_rollout,
    example_rollout,
    frontend_pod,
    model_config,
    parse_model_config,
    release_rollouts,
    wait_for,
    wait_pod_ready,
)

pytestmark = pytest.mark.slow
RELEASE = "mnist"


@dataclass
class Chart:
    """The release in the test's namespace: the operator's environment and ServiceAccount, as helm made them."""

    cluster: Cluster
    values: list[str]
    env: dict[str, str]
    service_account: str

    def upgrade(self, *more: str) -> None:
        self.cluster.check(self.cluster.helm("upgrade", RELEASE, str(CHART), *self.values, *more))

    def data(self, name_var: str, key_var: str) -> str | None:
        """The key of one of the chart's ConfigMaps, named as the operator's environment names it."""
        cm = self.cluster.get("v1", "ConfigMap", self.env[name_var])
        assert cm is not None, f"the chart did not create ConfigMap {self.env[name_var]}"
        return (cm.get("data") or {}).get(self.env[key_var])

    def routing(self) -> dict | None:
        return json.loads(self.data("MNIST_OPERATOR_ROUTING_CONFIGMAP", "MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY")
                          or "null")

    def models(self) -> str | None:
        return self.data("MNIST_OPERATOR_SERVING_CONFIGMAP", "MNIST_OPERATOR_SERVING_CONFIGMAP_KEY")

    def operator(self, model_store: Path, workdir: Path, as_service_account: bool = True) -> OperatorProcess:
        env = {**self.env, "MNIST_OPERATOR_SERVING_REST": "", "MNIST_OPERATOR_MODEL_BASE_PATH": str(model_store),
               "MNIST_OPERATOR_MAX_TICK_S": "0.5"}
        if as_service_account:
            kubeconfig = str(self.cluster.service_account_kubeconfig(self.service_account))
            env |= {"KUBECONFIG": kubeconfig, "MNIST_OPERATOR_KUBECONFIG": kubeconfig}
        return OperatorProcess(self.cluster, env, workdir)

    def sync(self, frontend: Frontend) -> ConfigMapSync:
        e = self.env
        return ConfigMapSync(self.cluster, frontend.routing_file,
                             routing=(e["MNIST_OPERATOR_ROUTING_CONFIGMAP"], e["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"]),
                             serving=(e["MNIST_OPERATOR_SERVING_CONFIGMAP"], e["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"]))


def chart_operator(cluster: Cluster) -> tuple[dict[str, str], str]:
    """The operator container's environment (fieldRefs resolved) and ServiceAccount, from the Deployment helm made."""
    deployments = cluster.list("apps/v1", "Deployment", label_selector="app.kubernetes.io/component=operator")
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    pod = deployments[0]["spec"]["template"]["spec"]
    env = {}
    for item in pod["containers"][0].get("env", []):
        if item.get("value") is not None:
            env[item["name"]] = item["value"]
        elif ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = cluster.namespace
    return env, pod["serviceAccountName"]


@pytest.fixture
def chart(cluster: Cluster, frontend: Frontend) -> Iterator[Chart]:
    """`helm install` of the chart; its frontend port is the test frontend's (the operator scrapes pods there)."""
    # No post-install training Job: it needs the model store's PVC bound, and no provisioner runs here.
    values = ["--set", "trainer.runAtInstall=false", "--set", f"frontend.port={frontend.port}"]
    cluster.check(cluster.helm("install", RELEASE, str(CHART), *values))
    env, service_account = chart_operator(cluster)
    try:
        yield Chart(cluster, values, env, service_account)
    finally:
        release_rollouts(cluster)
        cluster.helm("uninstall", RELEASE)  # its ClusterRole and binding are not namespaced


def frontend_as_chart_pod(chart: Chart) -> None:
    """The real frontend as one more pod the operator's selector (the chart's) matches, Ready at 127.0.0.1."""
    labels = dict(kv.split("=", 1) for kv in chart.env["MNIST_OPERATOR_FRONTEND_SELECTOR"].split(","))
    chart.cluster.apply(frontend_pod("frontend-test", labels))
    wait_pod_ready(chart.cluster, "frontend-test")


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
