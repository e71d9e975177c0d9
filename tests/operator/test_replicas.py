"""Finding every TF Serving replica (EndpointSlices) and asking each whether a version is AVAILABLE (replicas.py).

The API server of the test bed refuses loopback addresses in EndpointSlices and kwok's pod IPs are loopback
(docs/TESTING.md), so discovery is checked in two halves: EndpointSlice objects with routable addresses stored in
and listed from the real kube-apiserver (nothing has to answer at them), and the per-replica status calls against
real HTTP servers on 127.0.0.1 fed as a fixed list.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes
import pytest
from mnist_operator import replicas

SVC = "mnist-serving-rest"


def endpoint(address: str, ready: bool | None = True, terminating: bool | None = None) -> dict:
    conditions = {k: v for k, v in (("ready", ready), ("terminating", terminating)) if v is not None}
    return {"addresses": [address], "conditions": conditions}


def slice_of(endpoints: list[dict], ports: list[dict] | None = None, address_type: str = "IPv4",
             service: str = SVC, name: str = "s1") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {replicas.SERVICE_NAME_LABEL: service}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": [{"name": "rest", "port": 8501, "protocol": "TCP"}] if ports is None else ports}


# ------------------------------------------------------------------------------------------ ready endpoints, pure


def test_only_ready_endpoints_count_and_absent_ready_means_ready() -> None:
    s = slice_of([endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False),
                  endpoint("10.0.0.3", ready=False, terminating=True), endpoint("10.0.0.4", ready=None)])
    assert replicas.ready_rest_urls([s]) == ["http://10.0.0.1:8501", "http://10.0.0.4:8501"]


def test_the_rest_port_is_found_by_name_or_as_the_only_port() -> None:
    two = [{"name": "grpc", "port": 8500}, {"name": "rest", "port": 9501}]
    assert replicas.ready_rest_urls([slice_of([endpoint("10.0.0.1")], two)]) == ["http://10.0.0.1:9501"]
    only = [{"port": 7000}]
    assert replicas.ready_rest_urls([slice_of([endpoint("10.0.0.1")], only)]) == ["http://10.0.0.1:7000"]
    ambiguous = [{"name": "a", "port": 1}, {"name": "b", "port": 2}]
    assert replicas.ready_rest_urls([slice_of([endpoint("10.0.0.1")], ambiguous)]) == []


def test_slices_are_merged_ipv6_is_bracketed_and_fqdn_slices_are_skipped() -> None:
    slices = [slice_of([endpoint("10.0.0.1"), endpoint("10.0.0.2")], name="a"),
              slice_of([endpoint("10.0.0.2")], name="b"),  # the same pod in two slices during an update
              slice_of([endpoint("fd00::5")], address_type="IPv6", name="c"),
              slice_of([endpoint("serving.example.com")], address_type="FQDN", name="d")]
    assert replicas.ready_rest_urls(slices) == ["http://10.0.0.1:8501", "http://10.0.0.2:8501",
                                                "http://[fd00::5]:8501"]


def test_malformed_slices_give_no_replica_rather_than_an_error() -> None:
    assert replicas.ready_rest_urls([{}, {"addressType": "IPv4"}, slice_of([{"addresses": []}, "junk"])]) == []


# ------------------------------------------------------------------------------- the real API server's EndpointSlices


def test_endpointslices_of_the_service_are_listed_from_the_api_server(cluster, admin_api) -> None:
    """The list call and its label selector against the real kube-apiserver: only this Service's slices, and the
    objects as the API serves them (the controller-managed shape the pure function reads)."""
    core = kubernetes.client.CoreV1Api(admin_api)
    core.create_namespaced_service(cluster.namespace, {
        "metadata": {"name": SVC}, "spec": {"ports": [{"name": "rest", "port": 8501}]}})  # no selector: slices by hand
    discovery = kubernetes.client.DiscoveryV1Api(admin_api)
    pod_a, pod_b, leaving = endpoint("10.20.0.1"), endpoint("10.20.0.2", ready=None), \
        endpoint("10.20.0.3", ready=False, terminating=True)
    for body in (slice_of([pod_a, leaving], name="rest-1"), slice_of([pod_b], name="rest-2"),
                 slice_of([endpoint("10.20.0.9")], service="other", name="other-1")):
        discovery.create_namespaced_endpoint_slice(cluster.namespace, body)
    slices = replicas.list_service_slices(discovery, cluster.namespace, SVC)
    assert sorted(s["metadata"]["name"] for s in slices) == ["rest-1", "rest-2"]
    assert replicas.ready_rest_urls(slices) == ["http://10.20.0.1:8501", "http://10.20.0.2:8501"]
    assert replicas.list_service_slices(discovery, cluster.namespace, "absent") == []


# ------------------------------------------------------------------------------------- every replica, real HTTP


class FakeStatus(BaseHTTPRequestHandler):
    """TF Serving's model status answer for one replica: {version: state}, 404 for a version it never saw."""

    states: dict[int, str] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        version = int(self.path.rsplit("/", 1)[-1])
        state = self.states.get(version)
        body = (json.dumps({"model_version_status": [{"version": str(version), "state": state}]}) if state else
                json.dumps({"error": f"Could not find version {version} of model mnist"})).encode()
        self.send_response(200 if state else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def three_replicas() -> Iterator[list[tuple[str, dict[int, str]]]]:
    servers, out = [], []
    for _ in range(3):
        states: dict[int, str] = {1: "AVAILABLE"}
        handler = type("Replica", (FakeStatus,), {"states": states})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        out.append((f"http://127.0.0.1:{server.server_address[1]}", states))
    yield out
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_version_is_available_only_when_every_replica_reports_it(three_replicas) -> None:
    urls = [u for u, _ in three_replicas]
    assert replicas.version_on_every_replica(urls, "mnist", 1, 2.0) == (
        True, "AVAILABLE on all 3 TF Serving replica(s)")
    three_replicas[0][1][2] = "AVAILABLE"
    three_replicas[1][1][2] = "LOADING"  # the third has not seen the config that loads v2 yet: 404
    ok, seen = replicas.version_on_every_replica(urls, "mnist", 2, 2.0)
    assert not ok and seen.startswith("AVAILABLE on 1 of 3 TF Serving replicas")
    assert f"{urls[1]}/v1/models/mnist/versions/2: LOADING" in seen and f"{urls[2]}" in seen and "not loaded" in seen
    three_replicas[1][1][2] = three_replicas[2][1][2] = "AVAILABLE"
    assert replicas.version_on_every_replica(urls, "mnist", 2, 2.0)[0]


def test_no_replica_or_an_unreachable_one_is_not_available(three_replicas) -> None:
    assert replicas.version_on_every_replica([], "mnist", 1, 2.0) == (False, "no ready TF Serving replica")
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    ok, seen = replicas.version_on_every_replica([three_replicas[0][0], dead], "mnist", 1, 1.0)
    assert not ok and "AVAILABLE on 1 of 2" in seen and "ConnectionError" in seen


# --------------------------------------------------------------------------------- where the kopf shell looks


class _Response:
    def __init__(self, doc: dict) -> None:
        self.data = json.dumps(doc).encode()


class _Discovery:
    """DiscoveryV1Api's list call as the shell makes it (raw JSON), recording what it was asked."""

    def __init__(self, slices: list[dict]) -> None:
        self.slices, self.asked = slices, []

    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str, _preload_content: bool):
        self.asked.append((namespace, label_selector, _preload_content))
        return _Response({"items": self.slices})


def test_the_shell_asks_fixed_replicas_first_then_the_services_endpointslices_then_the_one_url() -> None:
    from mnist_operator import handlers
    from mnist_operator.config import OperatorConfig

    discovery = _Discovery([slice_of([endpoint("10.0.0.7"), endpoint("10.0.0.8", ready=False)])])

    def replicas_for(env: dict[str, str]) -> list[str] | None:
        c = handlers.Clients(cfg=OperatorConfig.from_env(env), core=None, custom=None, http=None, discovery=discovery)
        return handlers.serving_replicas(c, "ml")

    fixed = {"MNIST_OPERATOR_SERVING_REPLICAS": "http://a:8501, http://b:8501", "MNIST_OPERATOR_SERVING_SERVICE": SVC,
             "MNIST_OPERATOR_SERVING_REST": "http://svc:8501"}
    assert replicas_for(fixed) == ["http://a:8501", "http://b:8501"] and discovery.asked == []
    assert replicas_for({**fixed, "MNIST_OPERATOR_SERVING_REPLICAS": ""}) == ["http://10.0.0.7:8501"]
    assert discovery.asked == [("ml", f"kubernetes.io/service-name={SVC}", False)]
    assert replicas_for({"MNIST_OPERATOR_SERVING_REST": "http://svc:8501"}) == ["http://svc:8501"]
    assert replicas_for({}) is None  # no TF Serving: the model store answers the gate
