"""NetworkPolicies: on by default, every pod covered both ways, and the allowed paths are the designed ones."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import VALUE_SETS, Rendered, component, pod_labels, pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used by the chart"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def policies_for(rendered_set: Rendered, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in rendered_set.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]


def policy_of(rendered_set: Rendered, name: str) -> dict[str, Any]:
    (labels,) = {tuple(sorted(pod_labels(o).items())) for o in pods(rendered_set) if component(o) == name}
    (policy,) = policies_for(rendered_set, dict(labels))
    return policy["spec"]


def peer_components(rule: dict[str, Any], key: str) -> set[str]:
    return {peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "?")
            for peer in rule.get(key, []) if "podSelector" in peer and "namespaceSelector" not in peer}


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "hpa-off-values"])
def test_every_pod_has_ingress_and_egress_policies(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in pods(rendered[value_set]):
        found = policies_for(rendered[value_set], pod_labels(obj))
        assert found, f"no NetworkPolicy selects {obj['kind']}/{obj['metadata']['name']}"
        types = {t for policy in found for t in policy["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, obj["metadata"]["name"]


def test_policies_can_be_turned_off(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].of_kind("NetworkPolicy")
    assert not rendered["hpa-off-values"].of_kind("NetworkPolicy")


def test_serving_is_reachable_only_from_frontend_and_operator(rendered: dict[str, Rendered]) -> None:
    spec = policy_of(rendered["default"], "serving")
    (rule,) = spec["ingress"]
    assert peer_components(rule, "from") == {"frontend", "operator"}
    assert len(rule["from"]) == 2
    assert sorted(port["port"] for port in rule["ports"]) == [8500, 8501]
    assert spec["egress"] == []


def test_frontend_is_reachable_from_the_ingress_controller(rendered: dict[str, Rendered]) -> None:
    spec = policy_of(rendered["default"], "frontend")
    (rule,) = spec["ingress"]
    controller = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    assert controller == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                           "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}]
    assert peer_components(rule, "from") == {"operator", "test"}
    assert [port["port"] for port in rule["ports"]] == [8080]
    assert {"serving"} <= {c for r in spec["egress"] for c in peer_components(r, "to")}


def test_operator_talks_out_to_the_api_server_and_takes_no_traffic(rendered: dict[str, Rendered]) -> None:
    spec = policy_of(rendered["default"], "operator")
    assert spec["ingress"] == []
    api = [rule for rule in spec["egress"] if not rule.get("to")]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in api] == [[443, 6443]]
    pinned = policy_of(rendered["gateway-api-values"], "operator")
    cidrs = [peer["ipBlock"]["cidr"] for rule in pinned["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
    assert cidrs == ["10.96.0.1/32", "172.18.0.0/16"]
