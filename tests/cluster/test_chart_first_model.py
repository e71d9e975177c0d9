"""A fresh install with no manual step, on the real control plane (docs/CLUSTER.md, "helm install --wait, Argo CD").

`helm install --wait` of the default values finishes with the install-time training Job complete (kwok runs no
container and marks pods Ready regardless of probes: that no readiness waits for a model is checked on the
rendered probes, tests/chart/test_chart_install_wait.py). Then the operator's start-up duties, called as the
chart's operator ServiceAccount with the Deployment's environment, against what Helm left: with the ConfigMaps
gone (as under Argo CD, which skips their hooks) it creates both with their initial content, never changes one
that exists, and rolls the first registered version in while nothing routes to the model, once. And the real
`mnist-operator run` process with the Deployment's args does both by itself (kopf runs the duties' handlers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes
import requests
from google.protobuf import text_format
from mnist_operator import bootstrap, handlers
from mnist_operator.cli import build_parser
from mnist_operator.config import OperatorConfig
from tensorflow_serving.config import model_server_config_pb2

from scripts.demo.ports import free_port
from tests.cluster.chart_release import PREFIX, ChartRelease
from tests.support.cluster import Cluster, wait_for

MR = ("ml.mnist-platform.dev/v1alpha1", "ModelRollout")


def operator_container(cluster: Cluster) -> tuple[dict[str, str], list[str], str]:
    """The operator's environment (the namespace fieldRef resolved), args and ServiceAccount, as helm made them."""
    pod = cluster.get("apps/v1", "Deployment", f"{PREFIX}-operator")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item.get("value", cluster.namespace) for item in container["env"]}
    return env, container["args"], pod["serviceAccountName"]


def modelversion(version: int) -> dict:
    """What the trainer registers after publishing a version."""
    return {"apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": f"mnist-v{version}", "labels": {"ml.mnist-platform.dev/model": "mnist"}},
            "spec": {"model": "mnist", "version": version, "path": f"/models/mnist/{version}", "testAccuracy": 0.98,
                     "created": "2026-01-01T00:00:00Z", "datasetSha256": "0" * 64, "gitCommit": None}}


def test_install_wait_finishes_and_the_operator_bootstraps_configmaps_and_the_first_version(cluster: Cluster) -> None:
    with ChartRelease(cluster, "default").prepared() as release:
        release.install()  # helm install --wait: returns once the post-install training Job completed
        job = cluster.get("batch/v1", "Job", f"{PREFIX}-train-initial")
        assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])

        env, args, service_account = operator_container(cluster)
        flags = build_parser().parse_args(args)
        assert flags.create_configmaps and flags.initial_rollout, "the chart turns both duties on"
        cfg = OperatorConfig.from_env(env)
        names = (cfg.serving_configmap, cfg.routing_configmap)
        assert names == (f"{PREFIX}-model-config", f"{PREFIX}-routing")
        kubeconfig = cluster.service_account_kubeconfig(service_account)
        with kubernetes.config.new_client_from_config(str(kubeconfig)) as api:
            c = handlers.Clients(cfg=cfg, core=kubernetes.client.CoreV1Api(api),
                                 custom=kubernetes.client.CustomObjectsApi(api), http=requests.Session())

            # Argo CD: the hooks were skipped, so there are no ConfigMaps; the operator's RBAC lets it create them.
            for name in names:
                cluster.check(cluster.kubectl("delete", "configmap", name))
            assert sorted(bootstrap.create_missing_configmaps(c, cluster.namespace)) == sorted(names)
            models = cluster.get("v1", "ConfigMap", cfg.serving_configmap)["data"][cfg.serving_key]
            parsed = text_format.Parse(models, model_server_config_pb2.ModelServerConfig())
            assert not parsed.model_config_list.config, "TF Serving starts ready but empty"
            assert not cluster.get("v1", "ConfigMap", cfg.routing_configmap).get("data"), "no routing.json yet"
            assert bootstrap.create_missing_configmaps(c, cluster.namespace) == [], "create only"

            # The install-time training registers v1: nothing routes to mnist and no rollout exists.
            cluster.apply(modelversion(1))
            name, why = bootstrap.start_initial_rollout(c, cluster.namespace, "mnist", 1)
            assert name == "mnist-initial", why
            rollout = cluster.get(*MR, name)
            assert rollout["spec"]["candidateVersion"] == 1 and "stableVersion" not in rollout["spec"]
            assert rollout["spec"]["strategy"] == "canary", "the CRD's defaults fill in the rest"
            cluster.apply(modelversion(2))
            again, why = bootstrap.start_initial_rollout(c, cluster.namespace, "mnist", 2)
            assert again is None and "mnist-initial" in why, "only the first version is rolled in by itself"

            # After the operator wrote its configs, a restart's create_missing_configmaps leaves them alone.
            written = release.operator_writes()
            assert bootstrap.create_missing_configmaps(c, cluster.namespace) == []
            assert release.configmap_data() == written


def test_the_operator_run_with_the_charts_args_does_both_by_itself(cluster: Cluster, tmp_path: Path) -> None:
    """The real `mnist-operator run` (kopf) with the Deployment's args and environment, as its ServiceAccount: at
    start it creates the missing ConfigMaps (the Argo CD case), and a registered v1 gets `mnist-initial`."""
    with ChartRelease(cluster, "default").prepared() as release:
        release.install("--set", "trainer.runAtInstall=false")
        env, args, service_account = operator_container(cluster)
        for name in (env["MNIST_OPERATOR_SERVING_CONFIGMAP"], env["MNIST_OPERATOR_ROUTING_CONFIGMAP"]):
            cluster.check(cluster.kubectl("delete", "configmap", name))
        kubeconfig = str(cluster.service_account_kubeconfig(service_account))
        port = free_port()
        argv = [arg for arg in args if not arg.startswith("--liveness")] + [
            f"--liveness=http://127.0.0.1:{port}/healthz", "--namespace", cluster.namespace]
        log = (tmp_path / "operator.log").open("w")
        operator = subprocess.Popen([str(Path(sys.executable).parent / "mnist-operator"), *argv],
                                    env={**os.environ, **cluster.env(), **env, "MNIST_OPERATOR_KUBECONFIG": kubeconfig,
                                         "MNIST_OPERATOR_SERVING_REST": ""}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            def configmaps() -> bool:
                assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
                return all(cluster.get("v1", "ConfigMap", n) is not None for n in (f"{PREFIX}-model-config",
                                                                                   f"{PREFIX}-routing"))
            wait_for(configmaps, 60, "the operator to create its ConfigMaps at start")
            cluster.apply(modelversion(1))
            wait_for(lambda: cluster.get(*MR, "mnist-initial") is not None, 60, "mnist-initial")
            assert cluster.get(*MR, "mnist-initial")["spec"]["candidateVersion"] == 1
            wait_for(lambda: any("rolling its first registered version v1 in" in e.get("message", "")
                                 for e in cluster.events("mnist-v1")), 30, "the InitialRollout Event on mnist-v1")
        finally:
            operator.terminate()
            try:
                operator.wait(10)
            except subprocess.TimeoutExpired:
                operator.kill()
