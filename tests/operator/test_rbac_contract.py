"""The operator's RBAC, three ways that must agree: the calls it makes, docs/OPERATOR.md's table, the chart's rules.

- the calls: every Kubernetes client call in `mnist_operator` (found in its source: the verb and resource from
  the client method's name, a custom resource from its plural argument) plus kopf's own (derived from the
  resources the handlers are registered for, and stated below with the reason for each);
- the table: docs/OPERATOR.md, "RBAC the operator needs", one row per rule with its verbs and what grants it;
- the rules: the operator's Role and ClusterRole as `helm template` renders them, for every value set under
  charts/mnist-platform/ci/ and with operator.prometheusUrl set.

tests/operator_e2e/test_rbac.py checks on the real API server that the ServiceAccount's token may do exactly what
the rendered rules grant.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mnist_operator.config import GROUP

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "mnist_operator"
CHART = ROOT / "charts" / "mnist-platform"
DOC = ROOT / "docs" / "OPERATOR.md"
VALUE_SETS = ["default"] + sorted(p.stem for p in (CHART / "ci").glob("*.yaml") if p.stem != "operator-off-values")
PROMETHEUS = "prometheus-url"  # the default values with operator.prometheusUrl set

Atom = tuple[str, str, str]  # (API group, resource[/subresource], verb)

# The Kubernetes Python client's method names: <verb>_namespaced_<kind>[_status] and the cluster-wide forms.
CLIENT_METHOD = re.compile(r"^(get|read|list|create|patch|replace|delete|watch)_\w*"
                           r"(namespaced|cluster|for_all_namespaces|custom_object)\w*$")
NAMESPACED = re.compile(r"^(read|get|list|create|patch|replace|delete)_namespaced_(\w+?)(_status)?$")
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch", "replace": "update",
         "delete": "delete"}
# The client method's kind -> (API group, resource); extend with the docs table.
KINDS = {"config_map": ("", "configmaps"), "pod": ("", "pods"), "event": ("", "events"),
         "endpoint_slice": ("discovery.k8s.io", "endpointslices")}


@dataclass(frozen=True)
class Call:
    atom: Atom
    where: str


def _constant(module: Any, node: ast.expr, where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
        return getattr(module, node.id)
    raise AssertionError(f"{where}: cannot tell the group or plural of this call ({ast.unparse(node)}); "
                         "pass a constant so the RBAC audit can read it")


def client_calls() -> list[Call]:
    """Every Kubernetes API call in the operator's source, as (group, resource, verb)."""
    calls = []
    for path in sorted(PACKAGE.glob("*.py")):
        module = importlib.import_module(f"mnist_operator.{path.stem}")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method, where = node.func.attr, f"{path.relative_to(ROOT)}:{node.lineno}"
            assert method != "Watch", f"{where}: a watch needs the watch verb: add it to the docs table and here"
            if not CLIENT_METHOD.match(method):
                continue
            match = NAMESPACED.match(method)
            assert match, f"{where}: {method} is not a namespaced call: the chart grants nothing cluster-wide " \
                          "beyond kopf's scanning; add it to the docs table, the chart and this audit"
            verb, kind, status = VERBS[match.group(1)], match.group(2), "/status" if match.group(3) else ""
            if kind == "custom_object":
                args = node.args
                assert len(args) >= 4, f"{where}: {method} with fewer than 4 positional arguments"
                group, resource = _constant(module, args[0], where), _constant(module, args[3], where)
            else:
                assert kind in KINDS, f"{where}: {method}: which resource is {kind!r}? Add it to KINDS"
                group, resource = KINDS[kind]
            calls.append(Call((group, resource + status, verb), where))
    return calls


def kopf_resources() -> dict[str, bool]:
    """The plurals that handlers.py registers kopf handlers for -> whether one of them patches the status."""
    module = importlib.import_module("mnist_operator.handlers")
    tree = ast.parse((PACKAGE / "handlers.py").read_text())
    found: dict[str, bool] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in fn.decorator_list:
            if isinstance(deco, ast.Call) and ast.unparse(deco.func).startswith("kopf.") and len(deco.args) >= 3:
                plural = _constant(module, deco.args[2], f"handlers.py:{deco.lineno}")
                patches_status = any(isinstance(n, ast.Attribute) and n.attr == "status"
                                     and ast.unparse(n.value) == "patch" for n in ast.walk(fn))
                found[plural] = found.get(plural, False) or patches_status
    return found


def kopf_needs() -> dict[Atom, str]:
    """What kopf itself calls, with why (kopf 1.x; tests/operator_e2e shows a rollout goes through on exactly this)."""
    needs = {}
    for plural, patches_status in kopf_resources().items():
        needs |= {(GROUP, plural, "list"): "the watch stream starts with a list",
                  (GROUP, plural, "watch"): "the watch stream",
                  (GROUP, plural, "patch"): "finalizer, progress and diff-base annotations"}
        if patches_status:
            needs[(GROUP, f"{plural}/status", "patch")] = "a handler's patch.status (the status subresource)"
    needs[("", "events", "create")] = "kopf.info/kopf.warn: kopf posts core/v1 Events"
    # settings.scanning stays enabled: kopf lists and watches namespaces (namespaced mode) and CRDs.
    for group, resource in (("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")):
        needs |= {(group, resource, "list"): "kopf's scanning", (group, resource, "watch"): "kopf's scanning"}
    return needs


@dataclass(frozen=True)
class Row:
    group: str
    resource: str
    verbs: tuple[str, ...]
    granted_by: str


ROW = re.compile(r"^\| `([^`]*)` \| `([^`]+)` \| ([a-z, ]+) \| ([^|]+) \| [^|]+ \|$")
GRANTED_BY = {"Role", "Role, by name", "Role, without `operator.prometheusUrl`", "Role, with TF Serving",
              "ClusterRole"}


def docs_rows() -> list[Row]:
    text = DOC.read_text()
    section = text[text.index("## RBAC the operator needs"):]
    section = section[:section.index("\n## ", 3)]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    rows = []
    for line in lines:
        match = ROW.match(line)
        assert match, f"a row of the RBAC table in docs/OPERATOR.md does not read as one: {line[:120]}"
        group, resource, verbs, granted_by = match.groups()
        assert granted_by.strip() in GRANTED_BY, f"unknown 'granted by' in docs/OPERATOR.md: {granted_by!r}"
        rows.append(Row(group.strip('"'), resource, tuple(v.strip() for v in verbs.split(",")), granted_by.strip()))
    assert len(rows) >= 8, "could not read the RBAC table in docs/OPERATOR.md"
    return rows


def docs_atoms(rows: list[Row]) -> set[Atom]:
    return {(r.group, r.resource, v) for r in rows for v in r.verbs}


# ------------------------------------------------------------------------------------------------ the chart


def helm() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.is_file() and os.access(local, os.X_OK) else shutil.which("helm")
    if found is None:
        pytest.fail("helm not found in .tools/bin or on PATH: run `make tools`")
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """The operator's Deployment, Role and ClusterRole, per value set."""
    out = {}
    for value_set in [*VALUE_SETS, PROMETHEUS]:
        extra = (["--set", "operator.prometheusUrl=http://prometheus:9090"] if value_set == PROMETHEUS
                 else [] if value_set == "default" else ["-f", str(CHART / "ci" / f"{value_set}.yaml")])
        result = subprocess.run([helm(), "template", "mnist", str(CHART), "--namespace", "ml", *extra,
                                 "-s", "templates/operator-rbac.yaml", "-s", "templates/operator-deployment.yaml"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out[value_set] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def chart_rules(docs: list[dict[str, Any]], kind: str) -> set[tuple[str, str, str, str]]:
    """(group, resource, resource name or "", verb) of the operator's one Role or ClusterRole."""
    (role,) = [d for d in docs if d["kind"] == kind
               and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    return {(g, r, n, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for n in rule.get("resourceNames") or [""] for v in rule["verbs"]}


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return {e["name"]: e.get("value", "") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def expected_rules(rows: list[Row], env: dict[str, str], kind: str) -> set[tuple[str, str, str, str]]:
    """The docs table, as the rules the chart must render with this operator environment."""
    names = sorted({env["MNIST_OPERATOR_SERVING_CONFIGMAP"], env["MNIST_OPERATOR_ROUTING_CONFIGMAP"]} - {""})
    out = set()
    for row in rows:
        if (row.granted_by == "ClusterRole") != (kind == "ClusterRole"):
            continue
        if row.granted_by.startswith("Role, without") and env["MNIST_OPERATOR_PROMETHEUS_URL"]:
            continue
        if row.granted_by == "Role, with TF Serving" and not env["MNIST_OPERATOR_SERVING_SERVICE"]:
            continue
        for name in names if row.granted_by == "Role, by name" else [""]:
            out |= {(row.group, row.resource, name, v) for v in row.verbs}
    return out


# ------------------------------------------------------------------------------------------------ the tests


def test_the_audit_finds_the_operators_api_calls() -> None:
    """The source scan sees the calls it must (so an empty scan cannot pass the comparison below)."""
    atoms = {c.atom for c in client_calls()}
    assert {("", "configmaps", "get"), ("", "configmaps", "patch"), ("", "configmaps", "create"),
            ("", "pods", "list"), ("discovery.k8s.io", "endpointslices", "list"), (GROUP, "modelrollouts", "get"), (GROUP, "modelrollouts/status", "patch"),
            (GROUP, "modelversions", "create")} <= atoms, atoms
    assert kopf_resources() == {"modelrollouts": False, "modelversions": True}


def test_docs_rbac_table_lists_exactly_the_calls_of_the_operator_and_kopf() -> None:
    calls = client_calls()
    needed = {c.atom for c in calls} | set(kopf_needs())
    listed = docs_atoms(docs_rows())
    by_atom = {c.atom: c.where for c in calls}
    assert listed == needed, {
        "called but not in docs/OPERATOR.md's table": sorted(f"{a} ({by_atom.get(a) or kopf_needs().get(a)})"
                                                             for a in needed - listed),
        "in the table but nothing calls it": sorted(listed - needed)}


def test_docs_rbac_rows_are_one_per_rule() -> None:
    rows = docs_rows()
    keys = [(r.group, r.resource, r.granted_by) for r in rows]
    assert len(keys) == len(set(keys)), "two rows of the docs table for the same rule"
    assert all(len(set(r.verbs)) == len(r.verbs) for r in rows)


@pytest.mark.parametrize("value_set", [*VALUE_SETS, PROMETHEUS])
def test_chart_grants_exactly_the_docs_rbac_table(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    docs, rows = rendered[value_set], docs_rows()
    env = operator_env(docs)
    for kind in ("Role", "ClusterRole"):
        granted, wanted = chart_rules(docs, kind), expected_rules(rows, env, kind)
        assert granted == wanted, {f"{kind} grants beyond docs/OPERATOR.md": sorted(granted - wanted),
                                   f"{kind} lacks": sorted(wanted - granted)}
    assert not any("*" in atom for kind in ("Role", "ClusterRole") for atom in chart_rules(docs, kind))


def test_with_a_prometheus_url_the_operator_may_not_list_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert ("", "pods", "", "list") in chart_rules(rendered["default"], "Role")
    assert not any(r == "pods" for _, r, _, _ in chart_rules(rendered[PROMETHEUS], "Role"))


def test_without_tf_serving_only_the_routing_configmap_is_writable(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    named = {n for _, r, n, _ in chart_rules(rendered["arm64-embedded-values"], "Role") if r == "configmaps" and n}
    assert named == {operator_env(rendered["arm64-embedded-values"])["MNIST_OPERATOR_ROUTING_CONFIGMAP"]}


def test_endpointslices_are_listed_only_with_tf_serving(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """With TF Serving the operator finds its replicas in the REST Service's EndpointSlices; without, it may not."""
    assert ("discovery.k8s.io", "endpointslices", "", "list") in chart_rules(rendered["default"], "Role")
    assert operator_env(rendered["default"])["MNIST_OPERATOR_SERVING_SERVICE"]
    embedded = rendered["arm64-embedded-values"]
    assert not any(r == "endpointslices" for _, r, _, _ in chart_rules(embedded, "Role"))
    assert operator_env(embedded)["MNIST_OPERATOR_SERVING_SERVICE"] == ""


def test_kopf_never_replaces_an_object() -> None:
    """No `update` in the table rests on kopf's client: it gets, lists, watches, posts and patches, never PUTs."""
    import kopf._cogs.clients.api as kopf_api

    source = Path(kopf_api.__file__).read_text()
    methods = set(re.findall(r"method='(\w+)'", source))
    assert methods and methods <= {"get", "post", "patch", "delete"}, methods
