"""The model store on several nodes, read from the rendered chart: who mounts it, the pod affinity that keeps a
ReadWriteOnce store's pods on one node, the GPU training's node selector followed by them, and the combinations
refused before anything is created. The real scheduler honouring it: tests/cluster/test_model_store_nodes.py.
"""

from __future__ import annotations

import pytest
from chartlib import CHART, VALUE_SETS, Rendered, component, env_of, pod_spec, pods, run_helm

LABEL = "mnist-platform.dev/model-store"
EMBEDDED = {"arm64-embedded-values"}


def claim_of(r: Rendered) -> str:
    """The claim the pods mount (the chart's or modelStore.existingClaim)."""
    return next(v["persistentVolumeClaim"]["claimName"] for p in pods(r) for v in pod_spec(p).get("volumes") or []
                if "persistentVolumeClaim" in v)


def mounts_store(obj: dict) -> bool:
    return any("persistentVolumeClaim" in v for v in pod_spec(obj).get("volumes") or [])


def template_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"]["labels"]
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["metadata"]["labels"]


def store_terms(obj: dict) -> list[dict]:
    required = ((pod_spec(obj).get("affinity") or {}).get("podAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or []
    return [t for t in required if LABEL in (t.get("labelSelector") or {}).get("matchLabels", {})]


def one_node(r: Rendered) -> bool:
    claim = next(o for o in r.objects if o["kind"] == "PersistentVolumeClaim") if r.of_kind("PersistentVolumeClaim") \
        else None
    modes = claim["spec"]["accessModes"] if claim else ["ReadWriteOnce"]  # existingClaim: the values' default
    return "ReadWriteMany" not in modes


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_that_mount_a_read_write_once_store_share_one_node(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    claim = claim_of(r)
    for obj in pods(r):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if mounts_store(obj) and one_node(r):
            assert template_labels(obj)[LABEL] == claim, where
            assert store_terms(obj) == [{"labelSelector": {"matchLabels": {LABEL: claim}},
                                         "topologyKey": "kubernetes.io/hostname"}], where
        else:
            assert LABEL not in template_labels(obj) and not store_terms(obj), where


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "operator-off-values"])
def test_the_operator_mounts_the_store_only_where_it_must(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    (operator,) = [o for o in pods(r) if component(o) == "operator"]
    trainer = [o for o in pods(r) if component(o) == "trainer"]
    registers = bool(trainer) and "--register=always" in pod_spec(trainer[0])["containers"][0]["args"]
    must = value_set in EMBEDDED or not registers or value_set == "sim-values"  # sim: operator.readModelStore
    assert mounts_store(operator) is must
    base_path = env_of(pod_spec(operator)["containers"][0])["MNIST_OPERATOR_MODEL_BASE_PATH"]
    assert (base_path == "/models") is must and (base_path == "") is not must, "no store, no discovery"


def test_with_the_gpu_training_the_store_pods_follow_it_to_the_gpu_node(rendered: dict[str, Rendered]) -> None:
    r = rendered["gpu-values"]
    by_component = {component(o): pod_spec(o) for o in pods(r) if o["kind"] == "Deployment"}
    for name in ("serving",):
        assert by_component[name]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in by_component[name]["tolerations"]
        assert "resources" not in by_component[name] and "nvidia.com/gpu" not in str(
            by_component[name]["containers"][0]["resources"]), "it follows the node, it takes no GPU"
    assert "nodeSelector" not in by_component["frontend"] and "nodeSelector" not in by_component["operator"]


def test_read_write_many_needs_no_affinity_and_a_users_affinity_is_kept(helm: str) -> None:
    from chartlib import render
    rwx = render(helm, "default", "--set", "modelStore.accessModes={ReadWriteMany}")
    assert all(not store_terms(o) and LABEL not in template_labels(o) for o in pods(rwx))
    spread = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "serving"}},
        "topologyKey": "topology.kubernetes.io/zone"}}]}}
    import json
    mine = render(helm, "default", "--set-json", f"serving.affinity={json.dumps(spread)}")
    (serving,) = [o for o in pods(mine) if component(o) == "serving"]
    assert pod_spec(serving)["affinity"]["podAntiAffinity"] == spread["podAntiAffinity"] and store_terms(serving)


@pytest.mark.parametrize(("values", "message"), [
    (["--set", "modelStore.accessModes={ReadWriteOncePod}"], "ReadWriteOncePod lets one pod mount the store"),
    (["--set", "modelStore.accessModes={ReadOnlyMany}"], "the trainer writes the store"),
])
def test_combinations_that_cannot_work_are_refused_with_the_reason(helm: str, values: list[str], message: str) -> None:
    result = run_helm(helm, "template", "mnist", str(CHART), *values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]
    # The same store without the trainer (versions published otherwise) is fine read-only.
    if "ReadOnlyMany" in values[1]:
        assert run_helm(helm, "template", "mnist", str(CHART), *values, "--set", "trainer.enabled=false").returncode == 0
