"""Real `helm install / upgrade / uninstall` of the chart against the Kubernetes API emulator.

No controllers run there (nothing becomes Ready), so this checks what helm itself does with the chart: the
CRDs from crds/ first, every object accepted, and the promises about state that must survive an upgrade
(the generated API key, the operator's two ConfigMaps) and an uninstall (the model store, those ConfigMaps).
"""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

from chartlib import CHART, RELEASE

NAMESPACE = "ml"
PREFIX = f"{RELEASE}-mnist-platform"
# The install-time training is a post-install hook Job that helm waits for; nothing would ever run it here.
NO_TRAINING = ("--set", "trainer.runAtInstall=false")


def helm_run(helm: str, cluster: Any, *args: str) -> str:
    # The emulator serves no OpenAPI document for helm to validate against (install/upgrade only).
    validation = ["--disable-openapi-validation"] if args[0] in ("install", "upgrade") else []
    result = subprocess.run([helm, *args, *validation, "--timeout", "60s"],
                            env={**os.environ, **cluster.env()}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def configmap(cluster: Any, name: str) -> dict[str, Any] | None:
    return cluster.get("v1", "ConfigMap", name, NAMESPACE)


def test_install_upgrade_uninstall_keep_what_the_chart_promises(helm: str, k8s_api: Any) -> None:
    # helm's --create-namespace validates the Namespace against the OpenAPI document the emulator lacks.
    k8s_api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    helm_run(helm, k8s_api, "install", RELEASE, str(CHART), "-n", NAMESPACE, *NO_TRAINING)
    established = k8s_api.crds_established()
    assert established == {"modelrollouts.ml.mnist-platform.dev": True, "modelversions.ml.mnist-platform.dev": True}
    deployments = {d["metadata"]["name"] for d in k8s_api.list("apps/v1", "Deployment", NAMESPACE)}
    assert deployments == {f"{PREFIX}-serving", f"{PREFIX}-frontend", f"{PREFIX}-operator"}
    assert len(k8s_api.list("networking.k8s.io/v1", "NetworkPolicy", NAMESPACE)) == 5

    secret = k8s_api.get("v1", "Secret", f"{PREFIX}-api-keys", NAMESPACE)
    api_key = base64.b64decode(secret["data"]["api-key"])
    feedback = k8s_api.get("v1", "Secret", f"{PREFIX}-feedback-key", NAMESPACE)["data"]["feedback-key"]
    assert "routing.json" not in (configmap(k8s_api, f"{PREFIX}-routing").get("data") or {})

    # The operator writes its two ConfigMaps (as it would, through the API).
    model_config = configmap(k8s_api, f"{PREFIX}-model-config")
    model_config["data"] = {"models.config": 'model_config_list { config { name: "mnist" base_path: "/models/mnist" '
                                             'model_platform: "tensorflow" } }\n'}
    k8s_api.apply(model_config)
    routing = configmap(k8s_api, f"{PREFIX}-routing")
    routing["data"] = {"routing.json": '{"model": "mnist", "strategy": "single", "routes": [{"version": 1, '
                                       '"label": "stable", "weight": 100}], "generation": 1}'}
    k8s_api.apply(routing)

    helm_run(helm, k8s_api, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, *NO_TRAINING,
             "--set", "frontend.hpa.enabled=false", "--set", "frontend.replicas=3")
    frontend = k8s_api.get("apps/v1", "Deployment", f"{PREFIX}-frontend", NAMESPACE)
    assert frontend["spec"]["replicas"] == 3, "the upgrade did apply"
    assert k8s_api.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{PREFIX}-frontend", NAMESPACE) is None
    secret = k8s_api.get("v1", "Secret", f"{PREFIX}-api-keys", NAMESPACE)
    assert base64.b64decode(secret["data"]["api-key"]) == api_key, "the API key survives upgrades"
    assert k8s_api.get("v1", "Secret", f"{PREFIX}-feedback-key", NAMESPACE)["data"]["feedback-key"] == feedback
    assert configmap(k8s_api, f"{PREFIX}-model-config")["data"] == model_config["data"]
    assert configmap(k8s_api, f"{PREFIX}-routing")["data"] == routing["data"]

    helm_run(helm, k8s_api, "uninstall", RELEASE, "-n", NAMESPACE)
    assert not k8s_api.list("apps/v1", "Deployment", NAMESPACE)
    assert k8s_api.get("v1", "Secret", f"{PREFIX}-api-keys", NAMESPACE) is None
    assert k8s_api.get("v1", "PersistentVolumeClaim", f"{PREFIX}-models", NAMESPACE) is not None, "models kept"
    assert configmap(k8s_api, f"{PREFIX}-routing")["data"] == routing["data"]
    assert configmap(k8s_api, f"{PREFIX}-model-config") is not None
    assert all(established.values()) and k8s_api.crds_established() == established, "CRDs stay"
