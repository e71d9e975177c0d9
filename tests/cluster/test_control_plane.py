"""The test bed itself: what the cluster tests rely on the control plane to do, as a real cluster does."""

from __future__ import annotations

import json

from tests.support.cluster import Cluster, wait_for

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def test_api_server_is_the_pinned_release_with_rbac_and_pod_security(cluster: Cluster) -> None:
    version = json.loads(cluster.check(cluster.kubectl("version", "-o", "json")))
    assert version["serverVersion"]["gitVersion"] == cluster.control_plane.k8s_version
    cluster.check(cluster.kubectl("label", "namespace", cluster.namespace, RESTRICTED))
    refused = cluster.kubectl("run", "root-pod", "--image=busybox", "--restart=Never")
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr
    cluster.check(cluster.kubectl("create", "serviceaccount", "nobody"))
    kubeconfig = cluster.service_account_kubeconfig("nobody")
    denied = cluster.kubectl("get", "configmaps", kubeconfig=kubeconfig)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_job_pods_are_scheduled_run_and_complete(cluster: Cluster) -> None:
    cluster.check(cluster.kubectl("create", "job", "once", "--image=busybox", "--", "true"))
    cluster.check(cluster.kubectl("wait", "--for=condition=complete", "job/once", "--timeout=60s"))
    pods = cluster.list("v1", "Pod", label_selector="job-name=once")
    assert [p["spec"]["nodeName"] for p in pods] == ["sim-cpu"], "the GPU node is tainted: CPU pods avoid it"
    assert pods[0]["status"]["podIP"].startswith("127.0."), "pod IPs are loopback addresses of this machine"


def test_deployments_roll_and_each_pod_gets_a_loopback_address_of_its_own(cluster: Cluster) -> None:
    cluster.check(cluster.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"))
    cluster.check(cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s"))
    cluster.check(cluster.kubectl("set", "image", "deployment/web", "nginx=nginx:2"))
    cluster.check(cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s"))
    pods = wait_for(lambda: (lambda ps: len(ps) == 2 and ps)(
        [p for p in cluster.list("v1", "Pod", label_selector="app=web") if "deletionTimestamp" not in p["metadata"]]),
        30, "the old pods to go")
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {"nginx:2"}
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2 and all(ip.startswith("127.0.") for ip in ips)
