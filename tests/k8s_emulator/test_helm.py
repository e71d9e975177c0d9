"""helm 4 against the emulator: install, upgrade, rollback, uninstall of a small chart (testchart/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.k8s_emulator import EmulatedCluster
from tests.support.k8s_emulator.clients import find_helm, run_tool

HELM = find_helm()
CHART = Path(__file__).parent / "testchart"
pytestmark = pytest.mark.skipif(HELM is None, reason="helm is missing: run `make tools`")


def helm(cluster: EmulatedCluster, *args: str) -> str:
    assert HELM is not None
    result = run_tool(cluster, [HELM, *args], timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def greeting(cluster: EmulatedCluster) -> str | None:
    cm = cluster.get("v1", "ConfigMap", "demo-greeting")
    return None if cm is None else cm["data"]["greeting"]


def test_install_upgrade_rollback_uninstall(k8s_api: EmulatedCluster) -> None:
    helm(k8s_api, "install", "demo", str(CHART), "--disable-openapi-validation")
    assert greeting(k8s_api) == "hello"
    assert k8s_api.crds_established()["gadgets.testchart.example.dev"]
    assert k8s_api.get("testchart.example.dev/v1", "Gadget", "demo-gadget")["spec"] == {"greeting": "hello"}
    assert k8s_api.get("apps/v1", "Deployment", "demo-web")["spec"]["replicas"] == 1
    # helm keeps its release in a Secret that client-go sends as protobuf (point 12).
    releases = k8s_api.list("v1", "Secret", "default", label_selector="owner=helm,name=demo")
    assert [r["metadata"]["labels"]["version"] for r in releases] == ["1"]

    helm(k8s_api, "upgrade", "demo", str(CHART), "--disable-openapi-validation",
         "--set", "greeting=bye", "--set", "secret.enabled=false")
    assert greeting(k8s_api) == "bye"
    assert k8s_api.get("v1", "Secret", "demo-token") is None  # dropped from the chart, so deleted

    helm(k8s_api, "rollback", "demo", "1")
    assert greeting(k8s_api) == "hello"
    assert k8s_api.get("v1", "Secret", "demo-token")["data"]["token"]  # stringData was turned into data
    history = helm(k8s_api, "history", "demo")
    assert "Rollback to 1" in history

    helm(k8s_api, "uninstall", "demo", "--wait", "--timeout", "30s")
    assert greeting(k8s_api) is None
    assert k8s_api.list("v1", "Secret", "default", label_selector="owner=helm") == []


def test_install_wait_watches_until_resources_are_current(k8s_api: EmulatedCluster) -> None:
    # No controllers run here, so a Deployment never becomes ready; without one, --wait must finish promptly.
    helm(k8s_api, "install", "waited", str(CHART), "--disable-openapi-validation", "--set", "deployment.enabled=false",
         "--wait", "--timeout", "30s")
    assert k8s_api.get("apps/v1", "Deployment", "waited-web") is None
    assert "deployed" in helm(k8s_api, "status", "waited")
