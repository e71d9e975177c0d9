"""The chart's CRDs as the real API server enforces them: every example in k8s/examples is accepted, and
`kubectl apply --validate=strict` refuses every ModelRollout in k8s/examples/invalid plus the cases made here
(unknown fields, a negative version), naming the field, and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cluster.chart_release import REPO_ROOT
from tests.support.cluster import Cluster

EXAMPLES = REPO_ROOT / "k8s" / "examples"
GROUP_VERSION = "ml.mnist-platform.dev/v1alpha1"
BASE = {"apiVersion": GROUP_VERSION, "kind": "ModelRollout", "metadata": {"name": "made-here"},
        "spec": {"model": "mnist", "candidateVersion": 2}}


def rollout(**spec: object) -> str:
    return yaml.safe_dump({**BASE, "spec": {**BASE["spec"], **spec}})


# Refusals the CRD promises, each with what the API server's message must name: a file of
# k8s/examples/invalid where one exists, else a manifest made here.
REFUSED = {
    "unknown-spec-field": (rollout(canary={"steps": [50, 100], "stepTime": "30s"}), 'unknown field "spec.canary.stepTime"'),
    "unknown-top-field": (rollout() + "extra: true\n", 'unknown field "extra"'),
    "weight-over-100": (EXAMPLES / "invalid" / "weight-150.yaml", "spec.canary.steps[1]: Invalid value: 150"),
    "unknown-strategy": (EXAMPLES / "invalid" / "unknown-strategy.yaml", 'spec.strategy: Unsupported value: "bluegreen"'),
    "missing-model": (EXAMPLES / "invalid" / "missing-model.yaml", "spec.model: Required value"),
    "negative-version": (rollout(candidateVersion=-1), "spec.candidateVersion: Invalid value: -1"),
    "negative-stable-version": (rollout(stableVersion=-3), "spec.stableVersion: Invalid value: -3"),
}


def apply(cluster: Cluster, manifest: str | Path):
    if isinstance(manifest, Path):
        return cluster.kubectl("apply", "--validate=strict", "-f", str(manifest))
    return cluster.kubectl("apply", "--validate=strict", "-f", "-", input=manifest)


def names(manifest: str | Path) -> list[tuple[str, str]]:
    text = manifest.read_text() if isinstance(manifest, Path) else manifest
    return [(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_accepted(cluster: Cluster, example: Path) -> None:
    cluster.check(apply(cluster, example))
    for kind, name in names(example):
        assert cluster.get(GROUP_VERSION, kind, name) is not None


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_invalid_rollout_is_refused_naming_the_field(cluster: Cluster, case: str) -> None:
    manifest, named = REFUSED[case]
    result = apply(cluster, manifest)
    assert result.returncode != 0 and named in result.stderr, result.stderr
    assert all(cluster.get(GROUP_VERSION, kind, name) is None for kind, name in names(manifest))


@pytest.mark.parametrize("invalid", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_invalid_example_is_refused(cluster: Cluster, invalid: Path) -> None:
    result = apply(cluster, invalid)
    assert result.returncode != 0, f"{invalid.name} was accepted"
    # latency-infinite.yaml (.inf) is refused by kubectl itself: JSON has no infinity to send.
    assert "is invalid" in result.stderr or "unsupported value: +Inf" in result.stderr, result.stderr
    for kind, name in names(invalid):
        assert cluster.get(GROUP_VERSION, kind, name) is None
