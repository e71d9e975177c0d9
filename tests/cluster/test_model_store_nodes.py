"""The model store on a cluster of several nodes, scheduled by the real scheduler (docs/CLUSTER.md, "The model store
on several nodes").

A second CPU node joins the test bed for this test only, tainted so that only this test's pods (which tolerate
the taint) may land there: every other test keeps the two nodes it knows. With the default ReadWriteOnce claim,
three TF Serving replicas pinned to the first node, the install-time training Job and a Job made from the CronJob
(both preferring the empty second node) all share one node, as a volume that attaches to one node at a time needs;
the operator, which does not mount the store, is not held there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scripts.sim.control_plane import CPU_NODE
from tests.cluster.chart_release import PREFIX, ChartRelease
from tests.support.cluster import Cluster, wait_for

EXTRA_NODE = "sim-cpu-2"
TAINT = {"key": "mnist-platform.dev/test", "value": "model-store-nodes", "effect": "NoSchedule"}
TOLERATION = [{"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": "NoSchedule"}]


def node(name: str) -> dict:
    """A CPU node like tools/k8s/nodes.yaml's sim-cpu (kwok plays it), with a pod CIDR of its own and the taint."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "spec": {"podCIDR": "127.0.64.0/20", "podCIDRs": ["127.0.64.0/20"], "taints": [TAINT]},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
                       "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}}


@pytest.fixture
def second_node(cluster: Cluster) -> Iterator[str]:
    cluster.check(cluster.kubectl("apply", "-f", "-", input=json.dumps(node(EXTRA_NODE))))
    try:
        def ready() -> bool:
            found = cluster.get("v1", "Node", EXTRA_NODE)
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in ((found or {}).get("status") or {}).get("conditions") or [])
        wait_for(ready, 60, f"node {EXTRA_NODE} Ready")
        yield EXTRA_NODE
    finally:
        cluster.kubectl("delete", "node", EXTRA_NODE, "--wait=false")


def store_pods(cluster: Cluster, claim: str) -> dict[str, str]:
    """Pod name -> node of every live pod that mounts the claim."""
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in cluster.list("v1", "Pod")
            if "deletionTimestamp" not in p["metadata"]
            and any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in p["spec"].get("volumes") or [])}


def test_read_write_once_store_keeps_every_pod_that_mounts_it_on_one_node(cluster: Cluster, second_node: str) -> None:
    # TF Serving is pinned to the first node; the training prefers the empty second one (a user's own affinity,
    # kept beside the chart's): the store's required pod affinity must win, or the volume could not attach.
    prefer_second = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
        "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [second_node]}]}}]}}
    values = {"serving": {"hpa": {"enabled": False}, "replicas": 3, "nodeSelector": {"kubernetes.io/hostname": CPU_NODE}},
              "trainer": {"tolerations": TOLERATION, "affinity": prefer_second},
              "frontend": {"tolerations": TOLERATION}, "operator": {"tolerations": TOLERATION}}
    with ChartRelease(cluster, "default").prepared() as release:
        release.install(*[arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")])
        cluster.check(cluster.kubectl("create", "job", f"--from=cronjob/{PREFIX}-trainer", "train-2"))
        cluster.check(cluster.kubectl("wait", "--for=condition=complete", "job/train-2", "--timeout=60s"))
        placed = store_pods(cluster, f"{PREFIX}-models")
        assert len([p for p in placed if p.startswith(f"{PREFIX}-serving-")]) == 3, placed
        trainers = {p: n for p, n in placed.items() if p.startswith((f"{PREFIX}-train-initial-", "train-2-"))}
        assert len(trainers) == 2, placed
        assert set(placed.values()) == {CPU_NODE}, f"the ReadWriteOnce store's pods are not on one node: {placed}"
        job = cluster.get("batch/v1", "Job", "train-2")["spec"]["template"]["spec"]["affinity"]
        assert job["nodeAffinity"] == prefer_second["nodeAffinity"] and job["podAffinity"], "both affinities kept"
        operator = cluster.list("v1", "Pod", label_selector="app.kubernetes.io/component=operator")
        assert operator and not any(v.get("persistentVolumeClaim") for v in operator[0]["spec"]["volumes"]), \
            "the operator reads ModelVersions and TF Serving, not the store"
