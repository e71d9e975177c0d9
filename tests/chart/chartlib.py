"""Helpers of the chart tests: finding helm, rendering the chart, walking rendered pod specs, and the TF Serving
stand-in that the chart's probes run against."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "mnist-platform"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# "default" plus every file under ci/: the value sets every check runs over.
VALUE_SETS = ["default"] + [path.stem for path in CI_VALUES]
RELEASE = "mnist"
NAMESPACE = "ml"
POD_KINDS = ("Deployment", "Job", "CronJob", "Pod")


@contextmanager
def serving_standin(config: Path, models: Path) -> Iterator[Any]:
    """The TF Serving stand-in reading the model config file `config` (polled every 0.1 s), with the chart's
    /models/mnist mapped to `models`."""
    from tests.support.tfserving_standin import StandIn

    serving = StandIn(model_config_file=config, path_map={"/models/mnist": models}, poll_seconds=0.1)
    serving.start()
    try:
        yield serving
    finally:
        serving.stop()


def helm_binary() -> str | None:
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def values_args(value_set: str) -> list[str]:
    return [] if value_set == "default" else ["-f", str(CHART / "ci" / f"{value_set}.yaml")]


@dataclass(frozen=True)
class Rendered:
    """One `helm template` run: its text and its objects (CRDs not included)."""

    value_set: str
    text: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name} not rendered for {self.value_set}")


def render(helm: str, value_set: str, *extra: str) -> Rendered:
    text = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                    *values_args(value_set), *extra).stdout
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendered(value_set=value_set, text=text, objects=objects)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a Deployment, Job, CronJob or Pod."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    kind = obj["kind"]
    if kind == "Pod":
        return obj["metadata"]["labels"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def pods(rendered_set: Rendered) -> list[dict[str, Any]]:
    return [obj for obj in rendered_set.objects if obj["kind"] in POD_KINDS]


def component(obj: dict[str, Any]) -> str:
    return pod_labels(obj)["app.kubernetes.io/component"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value (or the valueFrom dict)."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def crd_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((CHART / "crds").glob("*.y*ml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs
