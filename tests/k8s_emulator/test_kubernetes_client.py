"""The real kubernetes Python client against the emulator: CRUD, watches, errors, CRDs, status, finalizers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import kubernetes
import pytest
import requests
from kubernetes.client.rest import ApiException

from tests.support.k8s_emulator import EmulatedCluster

from .test_kopf import WIDGET_CRD


@pytest.fixture
def api(k8s_api: EmulatedCluster) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(k8s_api.kubeconfig))
    yield client
    client.close()


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


def test_create_sets_server_fields_and_each_write_bumps_resource_version(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    created = core.create_namespaced_config_map("default", configmap("a", x="1"))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.namespace == "default"
    patched = core.patch_namespaced_config_map("a", "default", {"data": {"x": "2"}})
    assert int(patched.metadata.resource_version) > int(meta.resource_version)
    assert patched.metadata.uid == meta.uid
    unchanged = core.patch_namespaced_config_map("a", "default", {"data": {"x": "2"}})
    assert unchanged.metadata.resource_version == patched.metadata.resource_version  # no-op writes are no writes


def test_errors_carry_the_status_codes_and_reasons_clients_read(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map("default", configmap("a"))
    cases = [
        (lambda: core.create_namespaced_config_map("default", configmap("a")), 409, "AlreadyExists"),
        (lambda: core.read_namespaced_config_map("nope", "default"), 404, "NotFound"),
        (lambda: core.create_namespaced_config_map("no-such-ns", configmap("a")), 404, "NotFound"),
        (lambda: core.create_namespaced_config_map("default", configmap("Bad_Name")), 422, "Invalid"),
        (lambda: core.replace_namespaced_config_map("a", "default", {
            **configmap("a"), "metadata": {"name": "a", "resourceVersion": "1"}}), 409, "Conflict"),
        (lambda: core.patch_namespaced_config_map("a", "default", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]), 422, "Invalid"),
        (lambda: core.list_namespaced_config_map("default", label_selector="a in b"), 400, "BadRequest"),
    ]
    for call, status, reason in cases:
        with pytest.raises(ApiException) as caught:
            call()
        assert caught.value.status == status
        assert json.loads(caught.value.body)["reason"] == reason


def test_lists_have_kind_version_and_honour_label_and_field_selectors(api, k8s_api: EmulatedCluster) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map("default", configmap("web", {"app": "web"}))
    core.create_namespaced_config_map("default", configmap("db", {"app": "db"}))
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map("other", configmap("web", {"app": "web"}))
    raw = requests.get(f"{k8s_api.url}/api/v1/configmaps?labelSelector=app%3Dweb", timeout=5).json()
    assert raw["kind"] == "ConfigMapList" and raw["apiVersion"] == "v1" and int(raw["metadata"]["resourceVersion"]) > 0
    assert sorted(i["metadata"]["namespace"] for i in raw["items"]) == ["default", "other"]
    names = [i.metadata.name for i in core.list_namespaced_config_map("default", field_selector="metadata.name=db").items]
    assert names == ["db"]
    assert {ns.metadata.name for ns in core.list_namespace().items} >= {"default", "kube-system", "other"}


def test_watch_resumes_from_a_resource_version_without_losing_events(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map("default", configmap("before"))
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", configmap("between"))  # after the LIST, before the WATCH
    core.delete_namespaced_config_map("before", "default")
    seen = []
    for event in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1,
                                                  resource_version=listed.metadata.resource_version):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "between"), ("DELETED", "before")]


def test_watch_streams_live_changes_selected_by_label(api) -> None:
    core = kubernetes.client.CoreV1Api(api)

    def writer() -> None:
        time.sleep(0.2)
        core.create_namespaced_config_map("default", configmap("other", {"app": "no"}))
        core.create_namespaced_config_map("default", configmap("mine", {"app": "yes"}))
        core.patch_namespaced_config_map("mine", "default", {"data": {"k": "v"}})
        core.delete_namespaced_config_map("mine", "default")

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(core.list_namespaced_config_map, "default", label_selector="app=yes", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            watch.stop()
    thread.join()
    assert seen == [("ADDED", "mine"), ("MODIFIED", "mine"), ("DELETED", "mine")]


def test_crd_becomes_served_and_established_and_its_deletion_removes_objects(api, k8s_api: EmulatedCluster) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    ext.create_custom_resource_definition(WIDGET_CRD)
    crd = ext.read_custom_resource_definition("widgets.example.dev")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    assert crd.status.accepted_names.kind == "Widget"
    groups = requests.get(f"{k8s_api.url}/apis/example.dev/v1", timeout=5).json()
    assert {r["name"] for r in groups["resources"]} == {"widgets", "widgets/status"}
    custom.create_namespaced_custom_object("example.dev", "v1", "default", "widgets",
                                           {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}})
    ext.delete_custom_resource_definition("widgets.example.dev")
    assert k8s_api.get("example.dev/v1", "Widget", "w") is None
    assert requests.get(f"{k8s_api.url}/apis/example.dev/v1/widgets", timeout=5).status_code == 404


def test_status_subresource_is_separate_and_generation_counts_spec_changes(api, k8s_api: EmulatedCluster) -> None:
    k8s_api.apply(WIDGET_CRD)
    custom = kubernetes.client.CustomObjectsApi(api)
    args = ("example.dev", "v1", "default", "widgets")
    obj = custom.create_namespaced_custom_object(*args, {"apiVersion": "example.dev/v1", "kind": "Widget",
                                                         "metadata": {"name": "w"}, "spec": {"size": 1},
                                                         "status": {"ignored": True}})
    assert "status" not in obj and obj["metadata"]["generation"] == 1
    obj = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"size": 2}, "status": {"ignored": True}})
    assert "status" not in obj and obj["metadata"]["generation"] == 2
    obj = custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}})
    assert obj["status"] == {"phase": "Ready"} and obj["spec"] == {"size": 2} and obj["metadata"]["generation"] == 2


def test_finalizers_hold_deletion_until_removed_and_owners_cascade(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    owner = core.create_namespaced_config_map("default", {**configmap("owner"), "metadata": {
        "name": "owner", "finalizers": ["example.dev/hold"]}})
    core.create_namespaced_config_map("default", {**configmap("child"), "metadata": {
        "name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                              "uid": owner.metadata.uid}]}})
    core.delete_namespaced_config_map("owner", "default")
    held = core.read_namespaced_config_map("owner", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("owner", "default", {"metadata": {"finalizers": None}})
    remaining = {cm.metadata.name for cm in core.list_namespaced_config_map("default").items}
    assert remaining == set()  # the owner is gone, and the garbage collection took its child


def test_request_history_is_capped(tmp_path) -> None:
    from tests.support.k8s_emulator import emulated_cluster

    with emulated_cluster(tmp_path, history_limit=10) as cluster, requests.Session() as session:
        for _ in range(50):
            session.get(f"{cluster.url}/api/v1/namespaces/default/configmaps", timeout=5)
        assert 10 <= len(cluster.call(lambda emu: list(emu))) <= 20


def test_reactions_added_with_kmocks_dsl_take_precedence(api, k8s_api: EmulatedCluster) -> None:
    core = kubernetes.client.CoreV1Api(api)
    k8s_api.call(lambda emu: emu["post", "/api/v1/namespaces/default/configmaps"] << 503 << {"kind": "Status"})
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("default", configmap("a"))
    assert caught.value.status == 503
    assert core.list_namespaced_config_map("default").items == []  # other requests still reach the store


def test_watchlist_sends_initial_events_then_the_end_bookmark_as_json(api, k8s_api: EmulatedCluster) -> None:
    kubernetes.client.CoreV1Api(api).create_namespaced_config_map("default", configmap("a"))
    response = requests.get(f"{k8s_api.url}/api/v1/namespaces/default/configmaps", timeout=5, params={
        "watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
        "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "1"})
    assert response.headers["Content-Type"].startswith("application/json")  # client-go needs a stream decoder
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_from_a_version_older_than_the_change_log_is_gone(tmp_path) -> None:
    from tests.support.k8s_emulator import emulated_cluster

    with emulated_cluster(tmp_path, change_log_limit=3) as cluster:
        for i in range(5):
            cluster.apply(configmap(f"cm{i}"))
        response = requests.get(f"{cluster.url}/api/v1/namespaces/default/configmaps", timeout=5,
                                params={"watch": "true", "resourceVersion": "2", "timeoutSeconds": "1"})
        event = json.loads(response.text.splitlines()[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_service_account_tokens_are_held_to_their_roles(api, k8s_api: EmulatedCluster) -> None:
    k8s_api.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "cm-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
                             {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"],
                              "resourceNames": ["mine"]}]})
    k8s_api.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "bind"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                   "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})
    k8s_api.apply(configmap("mine"))
    k8s_api.apply(configmap("theirs"))
    client = kubernetes.config.new_client_from_config(str(k8s_api.kubeconfig_for_service_account("default", "reader")))
    core = kubernetes.client.CoreV1Api(client)
    try:
        assert len(core.list_namespaced_config_map("default").items) == 2
        core.patch_namespaced_config_map("mine", "default", {"data": {"k": "v"}})
        for call in (lambda: core.patch_namespaced_config_map("theirs", "default", {"data": {"k": "v"}}),
                     lambda: core.create_namespaced_config_map("default", configmap("new")),
                     lambda: core.list_config_map_for_all_namespaces(),
                     lambda: core.list_namespaced_secret("default")):
            with pytest.raises(ApiException) as caught:
                call()
            assert caught.value.status == 403 and json.loads(caught.value.body)["reason"] == "Forbidden"
        refused = pytest.raises(ApiException, core.create_namespaced_config_map, "default", configmap("x")).value
        assert json.loads(refused.body)["message"] == (
            'configmaps is forbidden: User "system:serviceaccount:default:reader" cannot create resource "configmaps"'
            ' in API group "" in the namespace "default"')
    finally:
        client.close()
    assert kubernetes.client.CoreV1Api(api).create_namespaced_config_map("default", configmap("admin"))  # admin token
