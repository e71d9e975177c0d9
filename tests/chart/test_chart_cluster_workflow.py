"""The kind workflow as far as it can be checked without docker: make targets, kind config, k8s/ manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chartlib import RELEASE, REPO_ROOT

CLUSTER_TARGETS = ("kind-up", "images", "kind-load", "deploy", "train", "rollout", "smoke", "up", "down")


def make_dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_cluster_targets_parse(target: str) -> None:
    assert make_dry_run(target, "MNIST_DATA=charts/mnist-platform/files/smoke-digit.json").strip()


def test_up_runs_every_step_in_order() -> None:
    text = make_dry_run("up", "MNIST_DATA=charts/mnist-platform/files/smoke-digit.json")
    marks = ["k8s/check-tools.sh", "kind create cluster", "scripts/images/engine.sh build", "kind load ",
             "helm upgrade --install", "create job --from=cronjob/", "--timeout 20m rollout $name", "--wait-s 120"]
    positions = [text.find(mark) for mark in marks]
    assert all(p >= 0 for p in positions), dict(zip(marks, positions, strict=True))
    assert positions == sorted(positions)


def test_gpu_switch_makes_the_cluster_with_nvkind_and_adds_device_plugin_and_gpu_values() -> None:
    text = make_dry_run("kind-up", "deploy", "GPU=1")
    assert "nvkind cluster create --name mnist --config-template k8s/nvidia/nvkind-config-template.yaml" in text
    assert "kind create cluster" not in text
    assert "k8s/nvidia/device-plugin.yaml" in text
    assert "-f charts/mnist-platform/ci/gpu-values.yaml" in text
    assert "gpu-values" not in make_dry_run("deploy")
    plain = make_dry_run("kind-up")
    assert "kind create cluster --name mnist --config kind-config.yaml" in plain and "nvkind cluster" not in plain


def render_nvkind_template(helm: str, tmp_path: Path, values: str) -> dict:
    """k8s/nvidia/nvkind-config-template.yaml rendered as nvkind renders it: Go text/template with sprig, the
    values at the root (here by helm's engine, the same two libraries, through `tpl` with the values as root)."""
    chart = Path(tempfile.mkdtemp(dir=tmp_path)) / "render"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: nvkind-render\nversion: 0.1.0\n")
    shutil.copy(REPO_ROOT / "k8s" / "nvidia" / "nvkind-config-template.yaml", chart / "nvkind.tmpl")
    (chart / "templates" / "cluster.yaml").write_text('{{ tpl (.Files.Get "nvkind.tmpl") .Values }}\n')
    (chart.parent / "values.yaml").write_text(values)
    result = subprocess.run([helm, "template", "x", str(chart), "-f", str(chart.parent / "values.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_nvkind_template_is_kind_config_plus_the_gpu_worker(helm: str, tmp_path: Path) -> None:
    kind_config = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())
    # nvkind's default values (pkg/nvkind/default-config-values.yaml): one worker with every GPU.
    config = render_nvkind_template(helm, tmp_path, "workers:\n- devices: all\n")
    assert (config["kind"], config["apiVersion"]) == (kind_config["kind"], kind_config["apiVersion"])
    control, *workers = config["nodes"]
    assert control == kind_config["nodes"][0], "the control-plane exactly as kind-config.yaml: ingress label, ports"
    assert [w["role"] for w in workers] == ["worker"], "one worker, where everything runs"
    (worker,) = workers
    assert worker["labels"] == {**kind_config["nodes"][1]["labels"], "nvidia.com/gpu.present": "true"}
    assert worker["extraMounts"] == [{"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"}]
    assert "taints" not in str(worker), "an untainted GPU worker: the only node the pods can use"
    plugin = next(d for d in yaml.safe_load_all((REPO_ROOT / "k8s/nvidia/device-plugin.yaml").read_text())
                  if d and d["kind"] == "DaemonSet")
    selector = plugin["spec"]["template"]["spec"]["nodeSelector"]
    assert selector.items() <= worker["labels"].items(), "the device plugin lands on the GPU worker"

    # --config-values as nvkind's examples give them: a name, GPUs split over workers, a node image.
    split = render_nvkind_template(helm, tmp_path, "name: mnist\nimage: kindest/node:v1.33.1\n"
                                                   "workers:\n- devices: [0, 1]\n- devices: 2\n")
    assert split["name"] == "mnist" and {n["image"] for n in split["nodes"]} == {"kindest/node:v1.33.1"}
    assert [[m["containerPath"].rsplit("/", 1)[1] for m in n["extraMounts"]] for n in split["nodes"][1:]] == \
        [["0", "1"], ["2"]]


def test_images_are_tagged_with_what_the_chart_deploys(helm: str) -> None:
    text = make_dry_run("images", "MNIST_DATA=charts/mnist-platform/files/smoke-digit.json")
    chart = yaml.safe_load((REPO_ROOT / "charts/mnist-platform/Chart.yaml").read_text())
    values = yaml.safe_load((REPO_ROOT / "charts/mnist-platform/values.yaml").read_text())
    for name in ("trainer", "frontend", "operator"):
        assert values[name]["image"]["tag"] == ""
        assert f"{values[name]['image']['repository']}:{chart['appVersion']}" in text
    for dockerfile in ("services/trainer/Dockerfile", "services/frontend/Dockerfile", "operator/Dockerfile"):
        assert f"-f {dockerfile}" in text


def test_tool_check_names_exactly_what_is_missing(helm: str, tmp_path: Path) -> None:
    """With only bash, kubectl and helm on PATH, docker and kind are reported missing, the others found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "kubectl"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed on PATH for this test"
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run([str(bin_dir / "bash"), str(REPO_ROOT / "k8s" / "check-tools.sh")],
                            capture_output=True, text=True, timeout=30, env={"PATH": str(bin_dir), "HELM": helm})
    assert result.returncode == 1
    assert "missing: docker" in result.stderr and "missing: kind" in result.stderr
    assert "missing: kubectl" not in result.stderr and "missing: helm" not in result.stderr
    assert "found:   kubectl" in result.stdout and "found:   helm" in result.stdout
    assert "install what is missing above" in result.stderr
    assert "nvkind" not in result.stdout + result.stderr, "only asked for with GPU set"
    gpu = subprocess.run([str(bin_dir / "bash"), str(REPO_ROOT / "k8s" / "check-tools.sh")], capture_output=True,
                         text=True, timeout=30, env={"PATH": str(bin_dir), "HELM": helm, "GPU": "1"})
    assert "missing: nvkind - go install github.com/NVIDIA/nvkind/cmd/nvkind@latest" in gpu.stderr


def test_rollout_example_gets_its_stable_version_offline() -> None:
    """The exact `kubectl patch --local` `make rollout` uses works on the real example, with no cluster."""
    env = {**os.environ, "KUBECONFIG": os.devnull}
    result = subprocess.run(["kubectl", "patch", "--local", "-f", "k8s/examples/canary.yaml", "--type", "merge",
                             "-p", '{"spec":{"stableVersion":1}}', "-o", "yaml"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    rollout = yaml.safe_load(result.stdout)
    assert rollout["kind"] == "ModelRollout" and rollout["spec"]["stableVersion"] == 1


def test_kind_config_has_ingress_ports_and_one_worker() -> None:
    config = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker"]
    control = config["nodes"][0]
    assert control["labels"]["ingress-ready"] == "true"
    assert sorted((m["containerPort"], m["hostPort"]) for m in control["extraPortMappings"]) == [(80, 80), (443, 443)]


def test_k8s_manifests_pass_strict_kubernetes_schemas() -> None:
    documents = [doc for doc in yaml.safe_load_all((REPO_ROOT / "k8s/nvidia/device-plugin.yaml").read_text()) if doc]
    assert {doc["kind"] for doc in documents} == {"RuntimeClass", "DaemonSet"}
    for doc in documents:
        kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)
    (plugin,) = [doc for doc in documents if doc["kind"] == "DaemonSet"]
    spec = plugin["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    values = yaml.safe_load((REPO_ROOT / "charts/mnist-platform/values.yaml").read_text())
    assert values["trainer"]["gpu"]["nodeSelector"] == spec["nodeSelector"], "chart and plugin expect one label"
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_metrics_server_kustomization_patches_the_deployment() -> None:
    base = REPO_ROOT / "k8s" / "metrics-server"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    (resource,) = kustomization["resources"]
    assert "/metrics-server/releases/download/v" in resource, "pinned release manifest"
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "metrics-server", "namespace": "kube-system"}
    ops = yaml.safe_load((base / patch["path"]).read_text())
    assert ops == [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--kubelet-insecure-tls"}]


def test_release_name_matches_the_make_default() -> None:
    """tests render with the release name `make deploy` uses, so names in docs/NOTES are the real ones."""
    assert "RELEASE ?= mnist\n" in (REPO_ROOT / "mk" / "cluster.mk").read_text()
    assert RELEASE == "mnist"
