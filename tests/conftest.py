"""Fixtures shared by every component's tests.

Component-specific fixtures live in tests/<component>/conftest.py. The ones
here are the cross-component contracts: the MNIST file and a model store with
real SavedModel versions published by the trainer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mnist_npz() -> Path:
    """The real MNIST in keras' layout, built by `make data`."""
    path = Path(os.environ.get("MNIST_DATA", REPO_ROOT / "data" / "mnist.npz"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make data` (make test does it for you)")
    return path


# Cheap but real trainings for the shared model store: (version, extra mnist-train arguments).
# Version 3 is trained on shuffled labels: the deliberately broken candidate for rollback tests.
PUBLISHED_MODEL_RUNS = (
    (1, ["--train-limit", "4000", "--seed", "1"]),
    (2, ["--train-limit", "5000", "--seed", "2"]),
    (3, ["--train-limit", "3000", "--seed", "3", "--shuffle-labels"]),
)


class PublishedModels:
    """A model store with real SavedModel versions published by the real trainer CLI."""

    def __init__(self, base_path: Path, name: str, broken_version: int, accuracy: dict[int, float]):
        self.base_path = base_path
        self.name = name
        self.broken_version = broken_version
        self.accuracy = accuracy

    def __repr__(self) -> str:
        return f"PublishedModels({self.base_path}, accuracy={self.accuracy})"


@pytest.fixture(scope="session")
def published_models(tmp_path_factory: pytest.TempPathFactory, mnist_npz: Path) -> PublishedModels:
    """Versions 1 and 2 (small, well above chance) and broken version 3 of model `mnist`, trained here."""
    import json

    from trainer.cli import main as mnist_train

    base = tmp_path_factory.mktemp("models") / "mnist"
    common = ["--data", str(mnist_npz), "--model-base-path", str(base), "--epochs", "1", "--batch-size", "64",
              "--test-limit", "2000", "--register", "never"]
    for version, extra in PUBLISHED_MODEL_RUNS:
        code = mnist_train([*common, "--version", str(version), *extra])
        if code != 0:
            pytest.fail(f"mnist-train for published_models version {version} exited {code}")
    accuracy = {
        version: json.loads((base / str(version) / "assets.extra" / "metrics.json").read_text())["test_accuracy"]
        for version, _ in PUBLISHED_MODEL_RUNS
    }
    return PublishedModels(base, "mnist", broken_version=3, accuracy=accuracy)


# The real control plane of the cluster tests (tests/support/cluster): started once per session, on first use.
from tests.support.cluster.fixtures import admin_api, cluster, control_plane  # noqa: E402, F401
