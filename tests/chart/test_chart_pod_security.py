"""Every pod the chart renders, in every value set, is locked down the same way (non-root, read-only root filesystem, no capabilities, no privilege escalation, RuntimeDefault seccomp)."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import VALUE_SETS, Rendered, component, pod_spec, pods

# Pods with no probes, and why: nothing routes traffic to them (readiness has no consumer) and a hung run
# is ended by the Job's activeDeadlineSeconds / helm test's timeout, not by a liveness restart.
RUN_ONCE_COMPONENTS = {"trainer", "test"}
# Pods that call the Kubernetes API and so need a service-account token.
API_CLIENTS = {"operator", "trainer"}


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def all_pods(rendered: dict[str, Rendered], value_set: str) -> list[dict[str, Any]]:
    found = pods(rendered[value_set])
    assert found, f"no pods rendered for {value_set}"
    return found


def name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_non_root_with_runtime_default_seccomp(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in all_pods(rendered, value_set):
        context = pod_spec(obj)["securityContext"]
        assert context["runAsNonRoot"] is True, name(obj)
        assert context["runAsUser"] > 0 and context["runAsGroup"] > 0, name(obj)
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name(obj)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_containers_are_locked_down(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in all_pods(rendered, value_set):
        for container in containers(pod_spec(obj)):
            where = f"{name(obj)} container {container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            assert context["runAsNonRoot"] is True, where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_containers_have_requests_and_limits(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in all_pods(rendered, value_set):
        for container in containers(pod_spec(obj)):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), f"{name(obj)} {container['name']} {bound}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_long_running_containers_have_liveness_and_readiness_probes(
    rendered: dict[str, Rendered], value_set: str
) -> None:
    long_running = [obj for obj in all_pods(rendered, value_set) if component(obj) not in RUN_ONCE_COMPONENTS]
    # TF Serving is not deployed where the frontend serves from the model store (frontend.backend: embedded).
    embedded = any(env.get("value") == "embedded" for obj in long_running if component(obj) == "frontend"
                   for env in pod_spec(obj)["containers"][0].get("env", []) if env["name"] == "MNIST_BACKEND")
    assert {component(obj) for obj in long_running} >= ({"frontend"} if embedded else {"serving", "frontend"})
    for obj in long_running:
        for container in pod_spec(obj)["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, name(obj)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_run_once_pods_are_bounded_in_time(rendered: dict[str, Rendered], value_set: str) -> None:
    """The probe-less pods cannot hang forever: Jobs have a deadline, the test pod never restarts."""
    for obj in all_pods(rendered, value_set):
        if component(obj) not in RUN_ONCE_COMPONENTS:
            continue
        if obj["kind"] == "Job":
            assert obj["spec"]["activeDeadlineSeconds"] > 0
        if obj["kind"] == "CronJob":
            assert obj["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
        assert pod_spec(obj)["restartPolicy"] == "Never", name(obj)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_api_clients_get_a_service_account_token(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in all_pods(rendered, value_set):
        spec = pod_spec(obj)
        if component(obj) not in API_CLIENTS:
            assert spec["automountServiceAccountToken"] is False, name(obj)
    for account in rendered[value_set].of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_images_are_pinned(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in all_pods(rendered, value_set):
        for container in containers(pod_spec(obj)):
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name(obj)}: {container['image']}"
            assert container["imagePullPolicy"] in {"IfNotPresent", "Always", "Never"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_writable_paths_are_empty_dirs_with_size_limits(rendered: dict[str, Rendered], value_set: str) -> None:
    """A read-only root needs writable scratch space: /tmp is an emptyDir, bounded in size."""
    for obj in all_pods(rendered, value_set):
        spec = pod_spec(obj)
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            (tmp,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
            assert volumes[tmp["name"]]["emptyDir"]["sizeLimit"], name(obj)


def test_model_store_is_read_only_except_for_the_trainer(rendered: dict[str, Rendered]) -> None:
    for obj in all_pods(rendered, "default"):
        spec = pod_spec(obj)
        claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        for container in spec["containers"]:
            for mount in container["volumeMounts"]:
                if mount["name"] in claims:
                    assert mount.get("readOnly", False) is (component(obj) != "trainer"), name(obj)


def test_gpu_values_request_the_gpu_and_schedule_on_gpu_nodes(rendered: dict[str, Rendered]) -> None:
    gpu = rendered["gpu-values"]
    trainers = [obj for obj in pods(gpu) if component(obj) == "trainer"]
    assert {obj["kind"] for obj in trainers} == {"Job", "CronJob"}
    for obj in trainers:
        spec = pod_spec(obj)
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["runtimeClassName"] == "nvidia"
        assert spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
        keys = {t["key"] for t in spec["tolerations"]}
        assert {"nvidia.com/gpu", "dedicated"} <= keys
    for obj in pods(rendered["default"]):
        assert "nvidia.com/gpu" not in str(pod_spec(obj)), f"CPU fallback must not ask for a GPU: {name(obj)}"
