"""The operator's permissions, as the real API server's RBAC enforces them on the chart's ServiceAccount token.

(a) What the token may do is exactly what the chart's Role and ClusterRole grant (plus what every authenticated
    user may do), as `kubectl auth can-i --list` reports it; that it is enough for a whole rollout is shown by
    tests/operator_e2e/test_chart_configured.py, which runs one to Promoted under that token.
(b) A verb taken away from the installed Role makes the operator say, where a user looks (`kubectl describe mr`: a
    Warning Event and the Degraded condition; the log), which verb on which resource the API server refused; the
    rollout is held with nothing written, and goes on by itself once the Role is fixed.
(docs/OPERATOR.md's RBAC table = the chart's rules = the operator's calls: tests/operator/test_rbac_contract.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster

from .harness import API_VERSION, CHART, FAST_ANALYSIS, Chart, apply, describe_events, example_rollout, wait_for

pytestmark = pytest.mark.slow

Atom = tuple[str, str, str, str]  # (API group, resource[/subresource], resource name or "", verb)
ROW = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def can_i_list(cluster: Cluster, kubeconfig: Path) -> tuple[set[Atom], set[tuple[str, str]]]:
    """`kubectl auth can-i --list` in the test's namespace, as whoever the kubeconfig logs in as: resource rules as
    atoms, and (non-resource URL, verb) pairs."""
    out = cluster.check(cluster.kubectl("auth", "can-i", "--list", kubeconfig=kubeconfig))
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["Resources", "Non-Resource"], out
    resources: set[Atom] = set()
    urls: set[tuple[str, str]] = set()
    for line in lines[1:]:
        match = ROW.match(line)
        assert match, f"unexpected line from kubectl auth can-i --list: {line!r}"
        shown, url_list, names, verbs = match.group(1), match.group(2).split(), match.group(3).split(), \
            match.group(4).split()
        if not shown:
            urls |= {(u, v) for u in url_list for v in verbs}
            continue
        # kubectl prints resource.group/subresource (core: resource/subresource)
        base, _, sub = shown.partition("/")
        resource, _, group = base.partition(".")
        resource = f"{resource}/{sub}" if sub else resource
        resources |= {(group, resource, n, v) for n in (names or [""]) for v in verbs}
    return resources, urls


def rule_atoms(rules: list[dict]) -> set[Atom]:
    return {(g, r, n, v) for rule in rules for g in rule.get("apiGroups") or [""] for r in rule.get("resources") or []
            for n in rule.get("resourceNames") or [""] for v in rule["verbs"]}


def chart_operator_rules(chart: Chart) -> tuple[list[dict], list[dict]]:
    """The rules of the operator's Role and ClusterRole as the release rendered them (`helm get manifest`)."""
    manifest = chart.cluster.check(chart.cluster.helm("get", "manifest", "mnist"))
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    def operator_docs(kind: str) -> list[dict]:
        return [d for d in docs if d["kind"] == kind
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    roles, cluster_roles = operator_docs("Role"), operator_docs("ClusterRole")
    assert len(roles) == 1 and len(cluster_roles) == 1, [d["metadata"]["name"] for d in roles + cluster_roles]
    return roles[0]["rules"], cluster_roles[0]["rules"]


def test_operator_token_may_do_exactly_what_the_charts_rules_grant(chart: Chart) -> None:
    cluster = chart.cluster
    role_rules, cluster_role_rules = chart_operator_rules(chart)
    granted, granted_urls = can_i_list(cluster, cluster.service_account_kubeconfig(chart.service_account))
    # What any ServiceAccount may do without a binding of its own (self reviews, discovery URLs): the baseline.
    cluster.check(cluster.kubectl("create", "serviceaccount", "nobody"))
    baseline, baseline_urls = can_i_list(cluster, cluster.service_account_kubeconfig("nobody"))
    assert granted_urls == baseline_urls, "the operator was given non-resource URLs"
    assert baseline <= granted
    assert granted - baseline == rule_atoms(role_rules + cluster_role_rules) - baseline, json.dumps(
        {"granted beyond the chart": sorted(granted - baseline - rule_atoms(role_rules + cluster_role_rules)),
         "in the chart, not granted": sorted(rule_atoms(role_rules + cluster_role_rules) - granted)}, indent=1)
    assert not any("*" in atom for atom in granted - baseline), "wildcards"
    # The ClusterRole is cluster-wide and read-only: kopf's scanning of CRDs and namespaces, nothing else.
    assert {(g, r) for g, r, _, _ in rule_atoms(cluster_role_rules)} == {
        ("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}
    assert {v for *_, v in rule_atoms(cluster_role_rules)} == {"list", "watch"}


REFUSED = re.compile(r'cannot patch resource "configmaps"')


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def test_a_refused_configmap_write_is_shown_by_kubectl_describe_holds_the_rollout_and_heals_once_the_rule_is_back(
        chart: Chart, model_store, tmp_path: Path) -> None:
    """Take `patch` away from the Role's rule for the operator's two ConfigMaps (as an over-eager edit would)."""
    cluster = chart.cluster
    role_name = chart.service_account  # the chart names the Role like the ServiceAccount
    role = cluster.get("rbac.authorization.k8s.io/v1", "Role", role_name)
    assert role is not None
    index, rule = next((i, rule) for i, rule in enumerate(role["rules"])
                       if rule.get("resources") == ["configmaps"] and rule.get("resourceNames"))
    assert "patch" in rule["verbs"], rule
    cluster.check(cluster.kubectl("patch", "role", role_name, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": f"/rules/{index}/verbs", "value": [v for v in rule["verbs"] if v != "patch"]}])))
    models_before = chart.models()
    operator = chart.operator(model_store.base_path.parent, tmp_path)
    operator.start()
    try:
        apply(cluster, example_rollout("canary", "refused", stableVersion=1,
                                       canary={"steps": [20, 100], "stepDuration": "60s"},
                                       analysis=FAST_ANALYSIS, gate={"minOfflineAccuracy": 0}))

        # Where a user looks: `kubectl describe mr` shows a Warning Event quoting the API server, naming the verb,
        # the resource and the object refused (the model config: written first, load before label).
        def refusals() -> list[tuple[str, str, str]]:
            return [row for row in describe_events(cluster, "refused") if row[1] == "APIForbidden"]
        (kind, _, message), = wait_for(refusals, 60, "an APIForbidden Event in kubectl describe mr")
        assert kind == "Warning" and REFUSED.search(message), message
        assert f'configmaps "{chart.env["MNIST_OPERATOR_SERVING_CONFIGMAP"]}" is forbidden' in message, message
        # ... and the Degraded condition says the same (describe prints it under Status: Conditions).
        status = (cluster.get(API_VERSION, "ModelRollout", "refused") or {}).get("status") or {}
        degraded = condition(status, "Degraded")
        assert (degraded.get("status"), degraded.get("reason")) == ("True", "APIForbidden"), status
        assert REFUSED.search(degraded.get("message", "")), degraded
        described = cluster.check(cluster.kubectl("describe", "mr", "refused"))
        assert "APIForbidden" in described.split("\nEvents:", 1)[0], described
        # The log line names it too.
        assert REFUSED.search(operator.logs()), operator.logs()

        # Held with nothing written; retried with backoff (2, 4, 8 s, ...), shown once, not on every retry.
        wait_for(lambda: "Kubernetes API error during a tick (retry 3 in 8s)" in operator.logs(), 60,
                 "the third retry, 2 + 4 s after the first")
        assert len([e for e in cluster.events("refused") if e["reason"] == "APIForbidden"]) == 1, \
            cluster.events("refused")
        status = (cluster.get(API_VERSION, "ModelRollout", "refused") or {}).get("status") or {}
        assert status.get("stage") not in ("Loading", "Canary") and not status.get("candidateWeight"), status
        assert chart.routing() is None and chart.models() == models_before, "a refused write changed something"

        # The rule back: helm upgrade re-renders the Role. The edit made kubectl-patch the owner of the rule's verbs,
        # so helm's server-side apply is refused with a conflict unless it forces (what the real API server does; the
        # chart repairs such drift only with --force-conflicts). The next retry goes through; nothing is restarted.
        drifted = cluster.helm("upgrade", "mnist", str(CHART), *chart.values)
        assert drifted.returncode != 0 and 'conflict with "kubectl-patch"' in drifted.stderr, drifted.stderr
        chart.upgrade("--force-conflicts")
        wait_for(lambda: ((cluster.get(API_VERSION, "ModelRollout", "refused") or {}).get("status") or {})
                 .get("stage") == "Canary", 60, "the rollout to reach its first step once allowed")
        assert chart.routing()["routes"] == [{"version": 1, "label": "stable", "weight": 80},
                                             {"version": 2, "label": "canary", "weight": 20}]
        status = (cluster.get(API_VERSION, "ModelRollout", "refused") or {}).get("status") or {}
        assert condition(status, "Degraded").get("reason") != "APIForbidden", status
        wait_for(lambda: any(row[:2] == ("Normal", "APIRecovered") for row in describe_events(cluster, "refused")),
                 30, "an APIRecovered Event")
    finally:
        operator.stop()
