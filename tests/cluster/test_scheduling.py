"""Where the chart's training lands, decided by the real scheduler: on the GPU node (label, taint, one
nvidia.com/gpu, RuntimeClass nvidia) with ci/gpu-values.yaml, on the CPU node without; and the Job completes
(kwok plays the pod), for the install-time hook Job and for one created from the CronJob as `make train` does.
TF Serving shares the training's node (the default ReadWriteOnce store); test_model_store_nodes.py adds a node.
"""

from __future__ import annotations

import pytest

from scripts.sim.control_plane import CPU_NODE, GPU_NODE
from tests.cluster.chart_release import PREFIX, ChartRelease
from tests.support.cluster import Cluster


def completed_pod(cluster: Cluster, job: str) -> dict:
    """The one pod of a Job that has the Complete condition."""
    found = cluster.get("batch/v1", "Job", job)
    assert found is not None, f"no Job {job}"
    conditions = {c["type"]: c["status"] for c in found["status"].get("conditions") or []}
    assert conditions.get("Complete") == "True", f"Job {job}: {conditions}"
    (pod,) = cluster.list("v1", "Pod", label_selector=f"job-name={job}")
    assert pod["status"]["phase"] == "Succeeded"
    return pod


@pytest.mark.parametrize(("value_set", "node"), [("default", CPU_NODE), ("gpu-values", GPU_NODE)])
def test_training_runs_on_the_gpu_node_only_with_gpu_values(cluster: Cluster, value_set: str, node: str) -> None:
    with ChartRelease(cluster, value_set).prepared() as release:
        release.install()  # trainer.runAtInstall: helm waits for the post-install training Job
        cluster.check(cluster.kubectl("create", "job", f"--from=cronjob/{PREFIX}-trainer", "train-2"))
        cluster.check(cluster.kubectl("wait", "--for=condition=complete", "job/train-2", "--timeout=60s"))
        for job in (f"{PREFIX}-train-initial", "train-2"):
            pod = completed_pod(cluster, job)
            assert pod["spec"]["nodeName"] == node, f"{job} ran on {pod['spec']['nodeName']}"
            (trainer,) = pod["spec"]["containers"]
            gpus = (trainer["resources"].get("limits") or {}).get("nvidia.com/gpu")
            if node == GPU_NODE:
                assert gpus == "1" and pod["spec"]["runtimeClassName"] == "nvidia"
            else:
                assert gpus is None and pod["spec"].get("runtimeClassName") is None
        # The ReadWriteOnce store keeps every pod that mounts it on the training's node (TF Serving follows the GPU
        # training there); the frontend and the operator (which do not mount it) stay off the tainted GPU node.
        long_running = [p for p in cluster.list("v1", "Pod") if "job-name" not in p["metadata"].get("labels", {})]
        nodes = {component: {p["spec"]["nodeName"] for p in long_running
                             if p["metadata"]["labels"]["app.kubernetes.io/component"] == component}
                 for component in ("serving", "frontend", "operator")}
        assert nodes == {"serving": {node}, "frontend": {CPU_NODE}, "operator": {CPU_NODE}}, nodes
