"""The operator image steps a canary to Promoted on the real control plane, logged in with a token of the chart's
ServiceAccount, while the frontend-embedded image serves: the arm64 combination of the chart
(ci/arm64-embedded-values.yaml: TF Serving off, the frontend reading the model store, the operator writing the
routing only). Everything else is what tests/operator_e2e puts around an operator: a hostNetwork Pod that kwok
makes Ready at 127.0.0.1 for the frontend, the kubelet's ConfigMap sync into the file the frontend reads, and
real MNIST digits with their true labels as traffic.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from scripts.demo.ports import free_port
from tests.operator_e2e.harness import (
    FAST_ANALYSIS,
    ConfigMapSync,
    Traffic,
    example_rollout,
    frontend_pod,
    release_rollouts,
    routing_document,
    wait_pod_ready,
)
from tests.support.cluster import Cluster

from .containers import REPO_ROOT, Container, Mount, readable_copy, wait_until

pytestmark = pytest.mark.slow
CHART = REPO_ROOT / "charts" / "mnist-platform"
VALUES = CHART / "ci" / "arm64-embedded-values.yaml"
RELEASE = "mnist"
API = "ml.mnist-platform.dev/v1alpha1"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def render_chart(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.check(cluster.helm("template", RELEASE, str(CHART), "--namespace", cluster.namespace,
                                     "-f", str(VALUES), "--set", "trainer.runAtInstall=false"))
    return [doc for doc in yaml.safe_load_all(out) if doc]


def component(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == name]
    assert len(found) == 1, f"the chart renders {len(found)} {kind} for {name}"
    return found[0]


def container_env(deployment: dict[str, Any], namespace: str) -> dict[str, str]:
    """The first container's environment as the chart sets it (the namespace fieldRef resolved)."""
    env = {}
    for item in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
    return env


def container_kubeconfig(cluster: Cluster, service_account: str, path: Path) -> Path:
    """A TokenRequest token of the ServiceAccount in a kubeconfig the container can read: the API server's CA
    inline (the host's kubeconfig names a file the container does not have), owned by the chart's user."""
    config = json.loads(cluster.service_account_kubeconfig(service_account).read_text())
    for entry in config["clusters"]:
        ca_file = entry["cluster"].pop("certificate-authority", None)
        if ca_file:
            entry["cluster"]["certificate-authority-data"] = base64.b64encode(Path(ca_file).read_bytes()).decode()
    path.write_text(json.dumps(config))
    if os.geteuid() == 0:
        os.chown(path, 10001, 10001)
        path.chmod(0o600)
    else:
        path.chmod(0o644)
    return path


@pytest.fixture
def chart(cluster: Cluster) -> Iterator[list[dict[str, Any]]]:
    """The chart rendered for this namespace with the arm64 values; its operator RBAC applied (and removed)."""
    docs = render_chart(cluster)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    assert {d["kind"] for d in rbac} == RBAC_KINDS
    for doc in rbac:
        cluster.apply(doc)
    try:
        yield docs
    finally:
        release_rollouts(cluster)
        for doc in rbac:
            if doc["kind"].startswith("Cluster"):
                cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--wait=false")


def test_operator_image_promotes_a_canary_served_by_the_embedded_frontend_image(
        images, cluster: Cluster, chart, published_models, mnist_npz: Path, container_tmp: Path) -> None:
    docs = chart
    namespace = cluster.namespace
    frontend_deployment = component(docs, "Deployment", "frontend")
    operator_deployment = component(docs, "Deployment", "operator")
    operator_env = container_env(operator_deployment, namespace)
    frontend_env = container_env(frontend_deployment, namespace)
    # The arm64 combination, as the chart renders it: no TF Serving, the frontend reads the model store.
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
                and d["kind"] in ("Deployment", "Service")]
    assert frontend_env["MNIST_BACKEND"] == "embedded" and "MNIST_SERVING_GRPC" not in frontend_env
    assert operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP"] == "" and operator_env["MNIST_OPERATOR_SERVING_REST"] == ""
    frontend_image = frontend_deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert frontend_image.split(":")[0] == "mnist-platform/frontend-embedded"

    work = container_tmp / f"operator-{namespace}"
    work.mkdir()
    work.chmod(0o755)
    store = readable_copy(published_models.base_path.parent, work / "models")
    routing_dir = work / "routing"
    routing_dir.mkdir(mode=0o755)
    routing_cm = operator_env["MNIST_OPERATOR_ROUTING_CONFIGMAP"]
    routing_key = operator_env["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"]
    routing_file = Path(frontend_env["MNIST_ROUTING_FILE"])
    assert routing_file.name == routing_key
    # Who serves before the rollout: version 1, as the chart's routing ConfigMap would hold it after a first rollout.
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": routing_cm},
                   "data": {routing_key: json.dumps(routing_document(1, 1))}})
    model_config = (f"{RELEASE}-mnist-platform-model-config", operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"])
    sync = ConfigMapSync(cluster, routing_dir / routing_key, routing=(routing_cm, routing_key), serving=model_config)

    service_account = operator_deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = container_kubeconfig(cluster, service_account, work / "kubeconfig")

    frontend_port, health_port = free_port(), free_port()
    # The chart's environment; what differs is where this machine has things: the port (host network), and no
    # API keys or shared feedback key (their Secrets are not part of this test).
    fe_env = {k: v for k, v in frontend_env.items() if k not in ("MNIST_API_KEYS_FILE", "MNIST_FEEDBACK_KEY_FILE")}
    fe_env.update(MNIST_BIND=f"127.0.0.1:{frontend_port}", MNIST_ROUTING_CHECK_S="0.2", MNIST_ACCESS_LOG="0")
    store_mount = operator_env["MNIST_OPERATOR_MODEL_BASE_PATH"]  # the chart's modelStore.mountPath
    frontend = Container(images["frontend-embedded"], env=fe_env, mounts=[
        Mount(store, store_mount), Mount(routing_dir, str(routing_file.parent))])
    op_env = {**operator_env, "MNIST_OPERATOR_KUBECONFIG": "/var/run/mnist/kubeconfig",
              "MNIST_OPERATOR_METRICS_PORT": str(frontend_port), "MNIST_OPERATOR_MAX_TICK_S": "0.5",
              "MNIST_OPERATOR_HTTP_TIMEOUT_S": "5"}
    args = operator_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["run", "--standalone"]
    operator = Container(images["operator"], env=op_env, mounts=[
        Mount(store, store_mount), Mount(kubeconfig, "/var/run/mnist/kubeconfig")],
        args=["run", "--standalone", f"--liveness=http://127.0.0.1:{health_port}/healthz"])

    with np.load(mnist_npz) as data:
        digits = data["x_test"][:2000], data["y_test"][:2000]
    floor = round(min(published_models.accuracy[1], published_models.accuracy[2]) - 0.15, 2)
    base = f"http://127.0.0.1:{frontend_port}"
    sync.start()
    try:
        with frontend:
            wait_until(lambda: _ok(f"{base}/readyz"), 180, "the embedded frontend to be ready", frontend)
            selector = dict(kv.split("=", 1) for kv in operator_env["MNIST_OPERATOR_FRONTEND_SELECTOR"].split(","))
            cluster.apply(frontend_pod("frontend-0", selector))
            wait_pod_ready(cluster, "frontend-0")
            with operator:
                wait_until(lambda: _ok(f"http://127.0.0.1:{health_port}/healthz"), 120,
                           "the operator's liveness endpoint", operator)
                rollout = example_rollout("canary", "mnist-v2", canary={"steps": [50, 100], "stepDuration": "2s"},
                                          analysis={**FAST_ANALYSIS, "minAccuracy": floor},
                                          gate={"minOfflineAccuracy": floor})
                with Traffic(base, *digits) as traffic:
                    cluster.apply(rollout)
                    status = wait_until(lambda: _final(cluster, "mnist-v2"), 150, "the rollout to finish", operator)
                logs = operator.logs()
            assert status["phase"] == "Promoted", (status, logs)
    finally:
        sync.stop()
    sync.check()
    # Every step went through the routing the embedded frontend reads: 50%, 100%, then v2 alone as stable.
    assert sync.candidate_weights(2)[:1] == [0] and 50 in sync.candidate_weights(2)
    assert sync.routing_history[-1]["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert traffic.versions.get(2, 0) > 0 and traffic.server_errors == 0, (traffic.versions, traffic.server_errors)
    # Routing only: the operator wrote (and created) no TF Serving model config.
    assert cluster.get("v1", "ConfigMap", model_config[0]) is None and sync.serving_history == []
    # No API call refused: the words kopf and the Kubernetes client use (a bare "403" would also match the
    # milliseconds of a log line's time stamp, 18:30:22,403).
    refused = re.findall(r".*(?:Forbidden|forbidden|HTTP 403|\(403\)|'code': 403).*", logs)
    assert not refused, refused


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def _final(cluster: Cluster, name: str) -> dict[str, Any] | None:
    status = (cluster.get(API, "ModelRollout", name) or {}).get("status") or {}
    return status if status.get("phase") in ("Promoted", "RolledBack", "Failed") else None
