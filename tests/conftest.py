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
