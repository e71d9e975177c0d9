"""Fixtures of the operator's end-to-end tests: the real control plane, one real frontend, the platform around them."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.cluster import Cluster

from .harness import CHART, RELEASE, Chart, Frontend, Platform, chart_operator, release_rollouts

_generations = itertools.count(1000, 1000)


@pytest.fixture(scope="package")
def frontend(model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontend]:
    """One gunicorn frontend over versions 1, 2 and broken 3 for the whole package (TensorFlow starts once)."""
    server = Frontend(model_store.base_path, tmp_path_factory.mktemp("operator-e2e-frontend"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def digits(mnist_npz) -> tuple[np.ndarray, np.ndarray]:
    with np.load(mnist_npz) as data:
        return data["x_test"][:2000], data["y_test"][:2000]


@pytest.fixture
def platform(cluster: Cluster, frontend: Frontend, model_store: ModelStore, tmp_path) -> Iterator[Platform]:
    """The test's namespace on the real control plane, the frontend as a Ready Pod, the kubelet sync, an operator
    (not started)."""
    world = Platform(cluster, frontend, model_store.base_path.parent, tmp_path, next(_generations))
    try:
        yield world
    finally:
        world.close()


class ModelStore:
    """The trainer's published versions: `.base_path` (<store>/mnist) and `.accuracy` (version -> test accuracy)."""

    def __init__(self, base_path: Path) -> None:
        self.base_path = base_path
        self.accuracy = {int(p.name): json.loads((p / "assets.extra" / "metrics.json").read_text())["test_accuracy"]
                         for p in base_path.iterdir() if p.name.isdigit()}


@pytest.fixture(scope="package")
def model_store(request: pytest.FixtureRequest) -> ModelStore:
    """`published_models` (trained for this session), or, when iterating on these tests, a store trained earlier.

    MNIST_E2E_MODEL_STORE=<dir>/mnist reuses versions 1, 2 and broken 3 published there by `mnist-train` with the
    arguments tests/conftest.py uses, which saves minutes of training per run; CI never sets it.
    """
    reuse = os.environ.get("MNIST_E2E_MODEL_STORE")
    if reuse:
        return ModelStore(Path(reuse))
    return ModelStore(request.getfixturevalue("published_models").base_path)


@pytest.fixture
def chart(cluster: Cluster, frontend: Frontend) -> Iterator[Chart]:
    """`helm install` of the chart; its frontend port is the test frontend's (the operator scrapes pods there)."""
    # No post-install training Job: it needs the model store's PVC bound, and no provisioner runs here.
    values = ["--set", "trainer.runAtInstall=false", "--set", f"frontend.port={frontend.port}"]
    cluster.check(cluster.helm("install", RELEASE, str(CHART), *values))
    env, service_account = chart_operator(cluster)
    try:
        yield Chart(cluster, values, env, service_account)
    finally:
        release_rollouts(cluster)
        cluster.helm("uninstall", RELEASE)  # its ClusterRole and binding are not namespaced
