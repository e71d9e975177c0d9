"""docs/KIND.md and docs/CLUSTER.md stay true: the pins, paths and make targets they name are the real ones."""

from __future__ import annotations

import re

import pytest
import yaml
from chartlib import CHART, REPO_ROOT

KIND_DOC = (REPO_ROOT / "docs" / "KIND.md").read_text()
CLUSTER_DOC = (REPO_ROOT / "docs" / "CLUSTER.md").read_text()
# The cluster path's targets: mk/cluster.mk, and mk/images.mk for `make images` and `make kind-load`.
CLUSTER_MK = (REPO_ROOT / "mk" / "cluster.mk").read_text() + (REPO_ROOT / "mk" / "images.mk").read_text()
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Every make target (the docs also point at the sim's, mk/sim.mk).
ALL_MK = "".join(p.read_text() for p in sorted((REPO_ROOT / "mk").glob("*.mk")))


def mk_default(name: str) -> str:
    match = re.search(rf"^{name} \?= (.+)$", CLUSTER_MK, re.MULTILINE)
    assert match, name
    return match.group(1).strip()


def test_pinned_versions_in_docs_are_the_ones_used() -> None:
    assert mk_default("INGRESS_NGINX_VERSION") in KIND_DOC
    serving = f"{VALUES['serving']['image']['repository']}:{VALUES['serving']['image']['tag']}"
    assert serving in KIND_DOC and serving in CLUSTER_DOC
    plugin = yaml.safe_load_all((REPO_ROOT / "k8s/nvidia/device-plugin.yaml").read_text())
    (image,) = [c["image"] for d in plugin if d["kind"] == "DaemonSet"
                for c in d["spec"]["template"]["spec"]["containers"]]
    assert image in KIND_DOC
    metrics = yaml.safe_load((REPO_ROOT / "k8s/metrics-server/kustomization.yaml").read_text())["resources"][0]
    assert re.search(r"/download/(v[0-9.]+)/", metrics).group(1) in KIND_DOC


@pytest.mark.parametrize("doc", ["KIND.md", "CLUSTER.md"])
def test_repository_paths_named_in_the_docs_exist(doc: str) -> None:
    text = (REPO_ROOT / "docs" / doc).read_text()
    paths = set(re.findall(r"`((?:k8s|charts|services|operator|mk|docs)/[A-Za-z0-9_./-]+?)/?`", text))
    assert paths
    missing = [p for p in sorted(paths) if not (REPO_ROOT / p).exists() and "<" not in p]
    assert not missing, missing


def test_make_targets_and_knobs_named_in_kind_md_exist() -> None:
    for target in re.findall(r"`make ([a-z][a-z-]*)", KIND_DOC):
        assert re.search(rf"^{target}:", ALL_MK, re.MULTILINE) or target in {"tools", "data", "test"}, target
    for knob in ("KIND_CLUSTER", "NAMESPACE", "RELEASE", "GPU", "HELM_EXTRA_ARGS", "ROLLOUT_EXAMPLE",
                 "ROLLOUT_STABLE", "TRAIN_TIMEOUT", "ROLLOUT_TIMEOUT", "SMOKE_URL"):
        assert f"`{knob}`" in KIND_DOC and f"{knob} ?=" in CLUSTER_MK, knob


def test_value_sets_named_in_cluster_md_are_the_ci_files() -> None:
    named = set(re.findall(r"`([a-z0-9-]+-values)`", CLUSTER_DOC))
    assert named == {p.stem for p in (CHART / "ci").glob("*.yaml")}
