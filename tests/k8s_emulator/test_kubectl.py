"""kubectl 1.32 against the emulator: apply (client and server side), get, patch, wait, delete, errors."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from tests.support.k8s_emulator import EmulatedCluster
from tests.support.k8s_emulator.clients import find_kubectl, kubectl

from .test_kopf import WIDGET_CRD

pytestmark = pytest.mark.skipif(find_kubectl() is None, reason="kubectl is neither in .tools/bin nor on PATH")

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data:
  greeting: {greeting}
"""

WIDGET_CRD_WITH_SCHEMA = {
    **WIDGET_CRD,
    "spec": {**WIDGET_CRD["spec"], "versions": [{
        "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
        "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                     {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}],
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}


def ok(result) -> str:
    assert result.returncode == 0, f"kubectl failed: {result.stderr}"
    return result.stdout


def get_json(cluster: EmulatedCluster, *what: str) -> dict:
    return json.loads(ok(kubectl(cluster, "get", *what, "-o", "json")))


@pytest.mark.parametrize("mode", [[], ["--server-side"]], ids=["client-side", "server-side"])
def test_apply_creates_then_updates(k8s_api: EmulatedCluster, mode: list[str]) -> None:
    assert re.search(r"created|serverside-applied", ok(kubectl(k8s_api, "apply", *mode, "--validate=false", "-f", "-",
                                                              input=CONFIGMAP.replace("{greeting}", "hello"))))
    ok(kubectl(k8s_api, "apply", *mode, "--validate=false", "-f", "-", input=CONFIGMAP.replace("{greeting}", "bye")))
    cm = get_json(k8s_api, "configmap", "settings")
    assert cm["data"] == {"greeting": "bye"} and cm["metadata"]["labels"] == {"app": "demo"}
    listed = get_json(k8s_api, "configmaps", "-l", "app=demo")
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["settings"]


def test_patch_merge_json_strategic_and_status(k8s_api: EmulatedCluster) -> None:
    ok(kubectl(k8s_api, "apply", "--validate=false", "-f", "-", input=CONFIGMAP.replace("{greeting}", "hi")))
    ok(kubectl(k8s_api, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"a":"1"}}'))
    ok(kubectl(k8s_api, "patch", "configmap", "settings", "--type=json", "-p",
               '[{"op":"remove","path":"/data/greeting"}]'))
    ok(kubectl(k8s_api, "patch", "configmap", "settings", "-p", '{"metadata":{"finalizers":["example.dev/x"]}}'))
    cm = get_json(k8s_api, "configmap", "settings")
    assert cm["data"] == {"a": "1"} and cm["metadata"]["finalizers"] == ["example.dev/x"]

    k8s_api.apply(WIDGET_CRD_WITH_SCHEMA)
    ok(kubectl(k8s_api, "apply", "--validate=false", "-f", "-",
               input="apiVersion: example.dev/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 2}\n"))
    ok(kubectl(k8s_api, "patch", "widget", "w", "--subresource=status", "--type=merge",
               "-p", '{"status":{"phase":"Ready"}}'))
    widget = get_json(k8s_api, "widget", "w")
    assert widget["status"] == {"phase": "Ready"} and widget["spec"] == {"size": 2, "color": "red"}
    table = ok(kubectl(k8s_api, "get", "widgets"))
    assert table.split() == ["NAME", "SIZE", "PHASE", "w", "2", "Ready"]


def test_invalid_custom_resource_is_refused_with_the_fields_named(k8s_api: EmulatedCluster) -> None:
    k8s_api.apply(WIDGET_CRD_WITH_SCHEMA)
    result = kubectl(k8s_api, "apply", "--validate=false", "-f", "-",
                     input="apiVersion: example.dev/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 30, color: green}\n")
    assert result.returncode != 0
    assert 'spec.color: Unsupported value: "green"' in result.stderr and "spec.size" in result.stderr
    assert k8s_api.get("example.dev/v1", "Widget", "w") is None


def test_crd_apply_then_wait_established(k8s_api: EmulatedCluster) -> None:
    ok(kubectl(k8s_api, "apply", "--validate=false", "-f", "-", input=json.dumps(WIDGET_CRD)))
    assert "condition met" in ok(kubectl(k8s_api, "wait", "--for=condition=Established",
                                         "crd/widgets.example.dev", "--timeout=10s"))


def test_wait_sees_a_later_change_and_delete_waits_for_finalizers(k8s_api: EmulatedCluster) -> None:
    ok(kubectl(k8s_api, "apply", "--validate=false", "-f", "-", input=CONFIGMAP.replace("{greeting}", "hi")))
    ok(kubectl(k8s_api, "patch", "configmap", "settings", "-p", '{"metadata":{"finalizers":["example.dev/x"]}}'))

    def controller() -> None:
        time.sleep(0.5)
        k8s_api.call(lambda emu: emu.patch(emu.served("", "v1", "configmaps"), "default", "settings",
                                           "application/merge-patch+json", {"data": {"greeting": "ready"}}))
        time.sleep(0.5)
        k8s_api.call(lambda emu: emu.patch(emu.served("", "v1", "configmaps"), "default", "settings",
                                           "application/merge-patch+json", {"metadata": {"finalizers": None}}))

    thread = threading.Thread(target=controller)
    thread.start()
    started = time.monotonic()
    ok(kubectl(k8s_api, "wait", "--for=jsonpath={.data.greeting}=ready", "configmap/settings", "--timeout=10s"))
    ok(kubectl(k8s_api, "delete", "configmap", "settings", "--timeout=10s"))
    thread.join()
    assert time.monotonic() - started < 8  # watch events arrive; nothing waited for a timeout
    assert "NotFound" in kubectl(k8s_api, "get", "configmap", "settings").stderr


def test_errors_read_like_a_real_server(k8s_api: EmulatedCluster) -> None:
    assert 'configmaps "nope" not found' in kubectl(k8s_api, "get", "configmap", "nope").stderr
    ok(kubectl(k8s_api, "create", "configmap", "dup"))
    assert 'configmaps "dup" already exists' in kubectl(k8s_api, "create", "configmap", "dup").stderr
    assert 'namespaces "ghost" not found' in kubectl(k8s_api, "-n", "ghost", "create", "configmap", "x").stderr
    namespaces = ok(kubectl(k8s_api, "get", "namespaces", "-o", "name")).split()
    assert {"namespace/default", "namespace/kube-system"} <= set(namespaces)
