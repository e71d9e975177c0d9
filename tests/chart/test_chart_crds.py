"""The CRDs in crds/ seen from the chart: structural, the contract's names, RBAC that covers them, and the
ModelVersion the trainer Job creates valid against their openAPIV3Schema.

The operator's tests (tests/operator/test_crd.py) own defaults, every validation rule and the examples in
k8s/examples (good ones accepted, k8s/examples/invalid rejected); this file checks what the chart and the
other components rely on.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from chartlib import RELEASE, Rendered, crd_documents

GROUP, VERSION = "ml.mnist-platform.dev", "v1alpha1"


def crd(kind: str) -> dict[str, Any]:
    (found,) = [c for c in crd_documents() if c["spec"]["names"]["kind"] == kind]
    return found


def served_version(kind: str) -> dict[str, Any]:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == VERSION]
    return version


def schema_of(kind: str) -> dict[str, Any]:
    return served_version(kind)["schema"]["openAPIV3Schema"]


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """Kubernetes' structural-schema rules that matter here: every node typed, no properties+additionalProperties."""
    problems = []
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path or '/'}: no type")
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        problems.append(f"{path}: both properties and additionalProperties")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize(("kind", "plural", "short"), [("ModelRollout", "modelrollouts", "mr"),
                                                        ("ModelVersion", "modelversions", "mv")])
def test_crd_names_scope_and_status_follow_the_contract(kind: str, plural: str, short: str) -> None:
    definition = crd(kind)
    assert definition["metadata"]["name"] == f"{plural}.{GROUP}"
    assert definition["spec"]["group"] == GROUP and definition["spec"]["scope"] == "Namespaced"
    assert definition["spec"]["names"]["plural"] == plural and short in definition["spec"]["names"]["shortNames"]
    version = served_version(kind)
    assert version["served"] and version["storage"] and version["subresources"] == {"status": {}}
    assert not structural_problems(schema_of(kind))


def test_rollout_printer_columns_are_the_designed_ones() -> None:
    columns = [c["name"].upper() for c in served_version("ModelRollout")["additionalPrinterColumns"]
               if not c.get("priority")]
    assert columns == ["MODEL", "STABLE", "CANDIDATE", "STRATEGY", "WEIGHT", "PHASE", "AGE"]


def test_operator_and_trainer_rbac_cover_the_crds(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    operator = r.get("Role", f"{RELEASE}-mnist-platform-operator")["rules"]
    granted = {(res, verb) for rule in operator if GROUP in rule["apiGroups"]
               for res in rule["resources"] for verb in rule["verbs"]}
    for plural in ("modelrollouts", "modelversions"):
        assert {(plural, v) for v in ("get", "list", "watch", "patch")} <= granted
        assert (f"{plural}/status", "patch") in granted
    trainer = r.get("Role", f"{RELEASE}-mnist-platform-trainer")["rules"]
    assert trainer == [{"apiGroups": [GROUP], "resources": ["modelversions"], "verbs": ["get", "create", "patch"]}]


def as_json_schema(node: Any) -> Any:
    """OpenAPI v3 -> JSON Schema for validation: `nullable: true` admits null (x-kubernetes-* are ignored)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def test_the_trainers_model_version_is_valid() -> None:
    """What the trainer Job registers in the cluster passes the ModelVersion CRD's schema."""
    from trainer import register
    metrics = {"model": "mnist", "version": 3, "test_accuracy": 0.991, "created": "2026-11-27T06:00:00Z",
               "dataset_sha256": "0" * 64, "git_commit": None}
    body = register.build_model_version(metrics, "/models/mnist/3", "ml")
    jsonschema.validate(body, as_json_schema(schema_of("ModelVersion")))
    body["spec"]["version"] = "3"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, as_json_schema(schema_of("ModelVersion")))
    assert body["metadata"]["name"] == "mnist-v3"
