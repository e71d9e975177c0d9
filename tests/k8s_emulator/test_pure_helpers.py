"""The emulator's pure parts: patch types, selectors, CRD schema handling, path parsing, protobuf decoding."""

from __future__ import annotations

import base64

import pytest

from tests.support.k8s_emulator import parse_path, protobuf
from tests.support.k8s_emulator.patching import (
    PatchError,
    PatchTestFailed,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from tests.support.k8s_emulator.schema import prune_and_default, validate
from tests.support.k8s_emulator.selectors import SelectorError, field_matcher, label_matcher
from tests.support.k8s_emulator.tables import evaluate


def test_merge_patch_merges_dicts_deletes_nulls_replaces_lists() -> None:
    doc = {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}
    assert merge_patch(doc, {"a": {"b": None, "d": 3}, "l": [3], "x": None}) == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert doc == {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}  # inputs are never mutated


def test_json_patch_applies_all_operations_and_fails_tests_atomically() -> None:
    doc = {"metadata": {"resourceVersion": "5", "finalizers": ["a"]}}
    patched = json_patch(doc, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
        {"op": "copy", "from": "/metadata/finalizers/0", "path": "/metadata/first"},
        {"op": "move", "from": "/metadata/first", "path": "/metadata/moved"},
        {"op": "replace", "path": "/metadata/finalizers/0", "value": "z"},
        {"op": "remove", "path": "/metadata/resourceVersion"},
    ])
    assert patched == {"metadata": {"finalizers": ["z", "b"], "moved": "a"}}
    with pytest.raises(PatchTestFailed):
        json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/spec"}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "frobnicate", "path": "/spec"}])


def test_strategic_merge_patch_merges_keyed_lists_and_honours_directives() -> None:
    deployment = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "side:1"}]}}}, "metadata": {"finalizers": ["x"]}}
    patch = {"metadata": {"finalizers": ["y"]}, "spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"name": "web", "image": "web:2", "env": [{"name": "B", "$patch": "delete"}]},
                       {"name": "new", "image": "new:1"}]}}}}
    result = strategic_merge_patch(deployment, patch)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "sidecar", "new"]
    assert containers[0] == {"name": "web", "image": "web:2", "env": [{"name": "A", "value": "1"}]}
    assert result["metadata"]["finalizers"] == ["x", "y"]
    assert strategic_merge_patch({"data": {"a": "1"}}, {"data": {"$patch": "replace", "b": "2"}}) == {"data": {"b": "2"}}


def test_apply_patch_removes_only_what_the_same_manager_stopped_applying() -> None:
    live = {"data": {"a": "1", "b": "2", "mine-before": "x"}, "metadata": {"labels": {"other": "y"}}}
    previous = {"data": {"a": "1", "mine-before": "x"}}
    assert apply_patch(live, {"data": {"a": "9"}}, previous) == {
        "data": {"a": "9", "b": "2"}, "metadata": {"labels": {"other": "y"}}}


def test_label_selectors_cover_equality_sets_and_existence() -> None:
    obj = {"metadata": {"labels": {"app": "web", "tier": "front"}}}
    for selector, expected in [("app=web", True), ("app==web,tier=front", True), ("app!=web", False),
                               ("tier in (front, back)", True), ("tier notin (front)", False), ("app", True),
                               ("!app", False), ("missing", False), ("!missing", True), ("", True)]:
        assert label_matcher(selector)(obj) is expected, selector
    with pytest.raises(SelectorError):
        label_matcher("app in web")


def test_field_selectors_read_dotted_paths() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}, "involvedObject": {"kind": "Pod"}}
    assert field_matcher("metadata.name=a,metadata.namespace==ns")(obj)
    assert not field_matcher("involvedObject.kind!=Pod")(obj)
    with pytest.raises(SelectorError):
        field_matcher("metadata.name")


SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "required": ["size"], "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": 10},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "nested": {"type": "object", "default": {}, "properties": {"n": {"type": "integer", "default": 3}}},
        "port": {"x-kubernetes-int-or-string": True},
        "note": {"type": "string", "nullable": True}}},
    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}


def test_schema_prunes_unknown_fields_fills_defaults_and_keeps_preserved_ones() -> None:
    obj = {"spec": {"size": 2, "junk": 1}, "status": {"anything": {"goes": 1}}, "extra": 1}
    assert prune_and_default(obj, SCHEMA) == {
        "spec": {"size": 2, "mode": "a", "nested": {"n": 3}}, "status": {"anything": {"goes": 1}}}


def test_schema_validation_reports_each_field_like_the_api_server() -> None:
    assert validate({"metadata": {"name": "x"}, "spec": {"size": 5, "port": "http", "note": None}}, SCHEMA) == []
    problems = dict(validate({"spec": {"size": 50, "mode": "c", "port": 1.5}}, SCHEMA))
    assert problems["spec.size"].startswith("Invalid value: 50")
    assert problems["spec.mode"] == 'Unsupported value: "c": supported values: "a", "b"'
    assert "spec.port" in problems
    assert dict(validate({"spec": {}}, SCHEMA)) == {"spec.size": "Required value"}


@pytest.mark.parametrize("path, expected", [
    ("/api/v1/namespaces", ("", "v1", None, "namespaces", None, None)),
    ("/api/v1/namespaces/default", ("", "v1", None, "namespaces", "default", None)),
    ("/api/v1/namespaces/default/status", ("", "v1", None, "namespaces", "default", "status")),
    ("/api/v1/namespaces/default/configmaps", ("", "v1", "default", "configmaps", None, None)),
    ("/api/v1/namespaces/ns/pods/p/status", ("", "v1", "ns", "pods", "p", "status")),
    ("/apis/example.dev/v1/widgets", ("example.dev", "v1", None, "widgets", None, None)),
    ("/apis/example.dev", ("example.dev", None, None, None, None, None)),
    ("/version", (None, None, None, None, None, None)),
])
def test_parse_path_reads_namespaces_as_a_resource_not_a_prefix(path: str, expected: tuple) -> None:
    assert parse_path(path) == expected


def test_printer_column_jsonpath_supports_indexes_and_filters() -> None:
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "steps": [10, 25]}}
    assert evaluate(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert evaluate(obj, ".status.steps[1]") == 25
    assert evaluate(obj, ".status.missing.deeper") is None


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_secret_from_client_go_decodes_to_its_json_form() -> None:
    meta = _field(1, b"rel.v1") + _field(3, b"default") + _field(11, _field(1, b"owner") + _field(2, b"helm"))
    secret = _field(1, meta) + _field(2, _field(1, b"release") + _field(2, b"\x00\x01binary")) + _field(3, b"helm.sh/release.v1")
    envelope = _field(1, _field(1, b"v1") + _field(2, b"Secret")) + _field(2, secret)
    assert protobuf.decode(protobuf.MAGIC + envelope) == {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "rel.v1", "namespace": "default", "labels": {"owner": "helm"}},
        "data": {"release": base64.b64encode(b"\x00\x01binary").decode()}}
    with pytest.raises(protobuf.ProtobufDecodeError):
        protobuf.decode(protobuf.MAGIC + _field(1, _field(1, b"apps/v1") + _field(2, b"Deployment")))
    with pytest.raises(protobuf.ProtobufDecodeError):
        protobuf.decode(b"{}")
