"""NetworkPolicies: on by default, every pod covered both ways, and the allowed paths are the designed ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from chartlib import CHART, VALUE_SETS, Rendered, component, pod_labels, pods, render, run_helm


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


def egress_ports(spec: dict[str, Any]) -> list[tuple[list[dict[str, Any]], list[int]]]:
    return [(rule.get("to", []), sorted({p["port"] for p in rule["ports"]})) for rule in spec["egress"]]


@pytest.mark.parametrize(("url", "port"), [("http://prometheus-server.monitoring.svc:9090", 9090),
                                           ("https://prometheus.example.com/", 443), ("http://10.0.0.7", 80),
                                           ("http://[fd00::7]:9091/prom", 9091)])
def test_operator_reaches_prometheus_on_the_port_of_its_url(helm: str, url: str, port: int) -> None:
    spec = policy_of(render(helm, "default", "--set", f"operator.prometheusUrl={url}"), "operator")
    assert ([], [port]) in egress_ports(spec), egress_ports(spec)
    assert ([], [port]) not in egress_ports(policy_of(render(helm, "default"), "operator")), "only with the URL"


def test_prometheus_is_a_named_peer_when_the_value_names_it(rendered: dict[str, Rendered]) -> None:
    r = rendered["prometheus-values"]
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert ([peer], [9090]) in egress_ports(policy_of(r, "operator")), "the operator's queries"
    frontend = policy_of(r, "frontend")
    assert peer in frontend["ingress"][0]["from"], "scrapes the frontend's /metrics (its one port)"
    serving = policy_of(r, "serving")
    assert {"from": [peer], "ports": [{"port": 8501, "protocol": "TCP"}]} in serving["ingress"], \
        "scrapes TF Serving's metrics on the REST port, not gRPC"
    # Off by default: nobody outside the release reaches either.
    default = rendered["default"]
    assert all(peer not in rule.get("from", []) for name in ("frontend", "serving")
               for rule in policy_of(default, name)["ingress"])


def test_frontend_admits_the_gateway_data_plane_with_the_httproute(rendered: dict[str, Rendered], helm: str) -> None:
    spec = policy_of(rendered["gateway-api-values"], "frontend")
    outside = [peer for peer in spec["ingress"][0]["from"] if "namespaceSelector" in peer]
    assert outside == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}},
                        "podSelector": {"matchLabels": {}}}], "the parentRef's namespace; no ingress controller"
    envoy = render(helm, "gateway-api-values", "--set-json",
                   'networkPolicy.gateway={"namespaceSelector": {"kubernetes.io/metadata.name": "envoy-gateway-system"},'
                   ' "podSelector": {"gateway.envoyproxy.io/owning-gateway-name": "public-gateway"}}')
    outside = [peer for peer in policy_of(envoy, "frontend")["ingress"][0]["from"] if "namespaceSelector" in peer]
    assert outside == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
                        "podSelector": {"matchLabels": {"gateway.envoyproxy.io/owning-gateway-name": "public-gateway"}}}]


@pytest.mark.parametrize("value_set", ["default", "prometheus-values"])
def test_every_policy_resolves_names_through_the_dns_value(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    want = yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"]["dns"]
    if value_set != "default":
        want = yaml.safe_load((CHART / "ci" / f"{value_set}.yaml").read_text())["networkPolicy"]["dns"]
    for policy in [p for p in r.of_kind("NetworkPolicy") if p["spec"]["egress"]]:  # TF Serving calls nobody
        dns = [rule for rule in policy["spec"]["egress"] if {p["port"] for p in rule["ports"]} == set(want["ports"])]
        assert dns and dns[-1]["to"] == want["to"], policy["metadata"]["name"]
        assert sorted((p["port"], p["protocol"]) for p in dns[-1]["ports"]) == \
            sorted((port, proto) for port in want["ports"] for proto in ("TCP", "UDP"))


def test_openshift_dns_listens_on_5353(helm: str) -> None:
    openshift = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}},
                         "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}}}],
                 "ports": [53, 5353]}
    spec = policy_of(render(helm, "default", "--set-json", f"networkPolicy.dns={json.dumps(openshift)}"), "frontend")
    (dns,) = [rule for rule in spec["egress"] if rule.get("to") == openshift["to"]]
    assert sorted({p["port"] for p in dns["ports"]}) == [53, 5353]


def test_a_prometheus_url_the_operator_cannot_use_is_refused(helm: str) -> None:
    result = run_helm(helm, "template", "mnist", str(CHART), "--set", "operator.prometheusUrl=prometheus:9090",
                      check=False)
    assert result.returncode != 0 and "prometheusUrl" in result.stderr
