"""helm lint, and every rendered object (and the CRDs) against the official Kubernetes schemas, strictly."""

from __future__ import annotations

import functools
from typing import Any

import kubernetes_validate
import pytest
from chartlib import CHART, VALUE_SETS, Rendered, crd_documents, run_helm, values_args
from packaging.version import Version

# kubernetes-validate re-reads its (multi-megabyte) schema files on every call; the files never change, so
# reading each once per session keeps ~300 validations from dominating the chart tests' time.
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
        kubernetes_validate.utils.schema_contents)

# Objects that are not built-in Kubernetes kinds: kubernetes-validate has no schema for them.
NOT_BUILT_IN = {("gateway.networking.k8s.io/v1", "HTTPRoute")}


def newest_minor_versions(count: int = 3) -> list[str]:
    """The `count` newest Kubernetes minor versions kubernetes-validate ships schemas for."""
    minors = sorted({Version(v).release[:2] for v in kubernetes_validate.utils.all_versions()})
    return [f"{major}.{minor}.0" for major, minor in minors[-count:]]


KUBERNETES_VERSIONS = newest_minor_versions()


def strict_errors(obj: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']} against {version}: {path}: {exc.message[:300]}"
    return None


def test_three_versions_are_checked() -> None:
    assert len(KUBERNETES_VERSIONS) == 3
    assert Version(KUBERNETES_VERSIONS[-1]) >= Version("1.35.0")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm: str, value_set: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values_args(value_set), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_objects_pass_strict_kubernetes_schemas(rendered: dict[str, Rendered], value_set: str) -> None:
    errors = []
    objects = [o for o in rendered[value_set].objects if (o["apiVersion"], o["kind"]) not in NOT_BUILT_IN]
    assert len(objects) > 15
    for version in KUBERNETES_VERSIONS:
        errors += [e for e in (strict_errors(obj, version) for obj in objects) if e]
    assert not errors, "\n".join(errors)


def test_strict_validation_catches_an_unknown_field(rendered: dict[str, Rendered]) -> None:
    """The validator really is strict: a misspelt field in a rendered Deployment fails."""
    deployment = dict(rendered["default"].of_kind("Deployment")[0])
    deployment["spec"] = {**deployment["spec"], "replcas": 2}
    assert strict_errors(deployment, KUBERNETES_VERSIONS[-1]) is not None


def test_http_route_points_at_the_frontend_service(rendered: dict[str, Rendered]) -> None:
    """HTTPRoute is a Gateway API CRD kubernetes-validate does not know: its wiring is checked here instead."""
    gateway = rendered["gateway-api-values"]
    (route,) = gateway.of_kind("HTTPRoute")
    service = gateway.get("Service", route["metadata"]["name"])
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] in [port["port"] for port in service["spec"]["ports"]]
    assert route["spec"]["parentRefs"] and all("name" in ref for ref in route["spec"]["parentRefs"])
    assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
    assert not gateway.of_kind("Ingress")


def test_crds_are_there_and_pass_strict_kubernetes_schemas() -> None:
    crds = crd_documents()
    kinds = {crd["spec"]["names"]["kind"] for crd in crds}
    assert {"ModelRollout", "ModelVersion"} <= kinds, f"charts/mnist-platform/crds/ holds {sorted(kinds)}"
    errors = [e for version in KUBERNETES_VERSIONS for e in (strict_errors(crd, version) for crd in crds) if e]
    assert not errors, "\n".join(errors)


def test_crds_are_installed_by_helm_not_templated(helm: str, rendered: dict[str, Rendered]) -> None:
    """CRDs live in crds/ (installed first, never upgraded by helm): none come from templates/."""
    assert not rendered["default"].of_kind("CustomResourceDefinition")
    with_crds = run_helm(helm, "template", "x", str(CHART), "--include-crds").stdout
    assert with_crds.count("kind: CustomResourceDefinition") == len(crd_documents())
