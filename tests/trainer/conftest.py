"""Fixtures for the trainer's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_arrays(mnist_npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 2,000 real training digits (uint8 [N, 28, 28]) and labels."""
    with np.load(mnist_npz) as npz:
        return npz["x_train"][:2000], npz["y_train"][:2000].astype(np.int32)
