"""Real kopf against the emulator: handlers run once, status and finalizers work, deletion completes."""

from __future__ import annotations

import time

import kopf
import kubernetes
import pytest

from tests.support.k8s_emulator.clients import OperatorThread
from tests.support.k8s_emulator.runner import EmulatedCluster

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {"group": "example.dev", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def wait_for(predicate, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def make_registry(calls: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create("example.dev", "v1", "widgets", registry=registry)
    def created(spec, patch, name, **_):
        calls.append(f"create {name}")
        patch.status["size"] = spec["size"] * 2
        kopf.info({"metadata": {"name": name, "namespace": "default", "uid": "x"}, "kind": "Widget",
                   "apiVersion": "example.dev/v1"}, reason="Doubled", message=f"size {spec['size']}")

    @kopf.on.update("example.dev", "v1", "widgets", field="spec.size", registry=registry)
    def resized(new, patch, name, **_):
        calls.append(f"update {name} {new}")
        patch.status["size"] = new * 2

    @kopf.on.delete("example.dev", "v1", "widgets", registry=registry)
    def deleted(name, **_):
        calls.append(f"delete {name}")

    return registry


def run_operator(cluster: EmulatedCluster, registry: kopf.OperatorRegistry) -> OperatorThread:
    @kopf.on.login(registry=registry)
    def login(**_):
        return kopf.ConnectionInfo(server=cluster.url, token="emulator-test-token", default_namespace="default")

    @kopf.on.startup(registry=registry)
    def tune(settings: kopf.OperatorSettings, **_):
        settings.posting.level = 0
        settings.watching.server_timeout = 60

    return OperatorThread(kopf.operator, registry=registry, standalone=True, namespaces=["default"],
                          clusterwide=False)


@pytest.fixture
def custom_api(k8s_api: EmulatedCluster) -> kubernetes.client.CustomObjectsApi:
    k8s_api.apply(WIDGET_CRD)
    config = kubernetes.client.Configuration(host=k8s_api.url)
    return kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(config))


def test_kopf_runs_create_update_delete_handlers_once_each(k8s_api: EmulatedCluster, custom_api) -> None:
    calls: list[str] = []
    with run_operator(k8s_api, make_registry(calls)).start():
        custom_api.create_namespaced_custom_object("example.dev", "v1", "default", "widgets", {
            "apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 2}})
        wait_for(lambda: (k8s_api.get("example.dev/v1", "Widget", "w1") or {}).get("status", {}).get("size") == 4)
        obj = k8s_api.get("example.dev/v1", "Widget", "w1")
        assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        events = k8s_api.list("v1", "Event", "default")
        assert any(e["reason"] == "Doubled" and e["message"] == "size 2" for e in events)

        custom_api.patch_namespaced_custom_object("example.dev", "v1", "default", "widgets", "w1",
                                                  {"spec": {"size": 5}})
        wait_for(lambda: k8s_api.get("example.dev/v1", "Widget", "w1")["status"]["size"] == 10)

        custom_api.delete_namespaced_custom_object("example.dev", "v1", "default", "widgets", "w1")
        wait_for(lambda: k8s_api.get("example.dev/v1", "Widget", "w1") is None)
    assert calls == ["create w1", "update w1 5", "delete w1"]


def test_kopf_restarted_does_not_repeat_finished_handlers(k8s_api: EmulatedCluster, custom_api) -> None:
    calls: list[str] = []
    with run_operator(k8s_api, make_registry(calls)).start():
        custom_api.create_namespaced_custom_object("example.dev", "v1", "default", "widgets", {
            "apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": 1}})
        wait_for(lambda: (k8s_api.get("example.dev/v1", "Widget", "w2") or {}).get("status", {}).get("size") == 2)
    with run_operator(k8s_api, make_registry(calls)).start():
        time.sleep(0.5)  # long enough for the initial listing to be processed
    assert calls == ["create w2"]
