"""Load and validate MNIST in keras' mnist.npz layout."""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPECTED = {
    "x_train": ((None, 28, 28), np.uint8),
    "y_train": ((None,), np.uint8),
    "x_test": ((None, 28, 28), np.uint8),
    "y_test": ((None,), np.uint8),
}


class DataError(Exception):
    """The data file is missing, unreadable, corrupt or of the wrong shape."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: str
    source: str


def resolve_data_path(arg: Path | None) -> Path | None:
    """--data wins, then $MNIST_DATA; None means keras' own download."""
    if arg is not None:
        return Path(arg)
    env = os.environ.get("MNIST_DATA")
    return Path(env) if env else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise DataError unless the arrays look like MNIST (keys, shapes, dtypes, label range)."""
    for key, (shape, _dtype) in EXPECTED.items():
        if key not in arrays:
            raise DataError(f"missing array {key!r} (expected keras' mnist.npz layout)")
        arr = arrays[key]
        if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape, strict=False)):
            want = "[N, 28, 28]" if len(shape) == 3 else "[N]"
            raise DataError(f"{key} has shape {list(arr.shape)}, expected {want}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{key} has dtype {arr.dtype}, expected uint8")
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise DataError(f"x_{split} has {n_x} images but y_{split} has {n_y} labels")
        if n_x == 0:
            raise DataError(f"x_{split} is empty")
        labels = arrays[f"y_{split}"]
        if labels.min() < 0 or labels.max() > 9:
            raise DataError(f"y_{split} has labels outside 0..9")
        pixels = arrays[f"x_{split}"]
        if pixels.min() < 0 or pixels.max() > 255:
            raise DataError(f"x_{split} has pixel values outside 0..255")


def load_npz(path: Path) -> Mnist:
    """Read and validate an mnist.npz file; every failure is one DataError line."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        # Our own handle: np.load leaks its file when the archive turns out to be corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {path} as an .npz file: {exc}") from exc
    validate_arrays(arrays)
    return Mnist(
        x_train=arrays["x_train"].astype(np.uint8),
        y_train=arrays["y_train"].astype(np.int32),
        x_test=arrays["x_test"].astype(np.uint8),
        y_test=arrays["y_test"].astype(np.int32),
        sha256=file_sha256(path),
        source=str(path),
    )


def load_keras_download() -> Mnist:
    """keras' own download (needs the network); used only when no file is given."""
    import keras

    try:
        path = Path(keras.utils.get_file(
            "mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
            file_hash="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"))
    except Exception as exc:  # keras raises several kinds for network failures
        raise DataError(f"no --data or $MNIST_DATA given and keras' download failed: {exc}") from exc
    return load_npz(path)


def load_mnist(path: Path | None) -> Mnist:
    return load_keras_download() if path is None else load_npz(path)


def limit(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first n examples (all when n is None)."""
    return (x, y) if n is None else (x[:n], y[:n])


def permuted_labels(y: np.ndarray, seed: int) -> np.ndarray:
    """Labels shuffled across examples: the deliberately broken candidate's training data."""
    return np.random.default_rng(seed).permutation(y)
