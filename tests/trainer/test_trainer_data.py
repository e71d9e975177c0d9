"""The data loader accepts keras' mnist.npz layout and refuses anything else with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from trainer.data import DataError, load_npz, permuted_labels, resolve_data_path


def write_npz(path: Path, **overrides) -> Path:
    arrays = {
        "x_train": np.zeros((64, 28, 28), np.uint8), "y_train": np.arange(64, dtype=np.uint8) % 10,
        "x_test": np.zeros((16, 28, 28), np.uint8), "y_test": np.arange(16, dtype=np.uint8) % 10,
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_valid_small_file_loads_with_checksum(tmp_path):
    data = load_npz(write_npz(tmp_path / "ok.npz"))
    assert data.x_train.shape == (64, 28, 28) and data.y_test.shape == (16,)
    assert len(data.sha256) == 64


def test_real_mnist_loads(mnist_npz):
    data = load_npz(mnist_npz)
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"x_train": np.zeros((64, 32, 32), np.uint8)}, "x_train has shape"),
    ({"x_test": np.zeros((16, 784), np.uint8)}, "x_test has shape"),
    ({"y_train": np.zeros((63,), np.uint8)}, "64 images but y_train has 63 labels"),
    ({"y_test": np.full((16,), 12, np.uint8)}, "labels outside 0..9"),
    ({"x_train": np.zeros((64, 28, 28), np.float32)}, "dtype float32"),
    ({"x_test": np.full((16, 28, 28), 300, np.int32)}, "pixel values outside"),
    ({"y_test": None}, "missing array 'y_test'"),
    ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros((0,), np.uint8)}, "x_train is empty"),
])
def test_wrong_shapes_and_values_are_refused(tmp_path, overrides, message):
    with pytest.raises(DataError, match=message):
        load_npz(write_npz(tmp_path / "bad.npz", **overrides))


def test_truncated_file_is_refused(tmp_path):
    good = write_npz(tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cannot read"):
        load_npz(bad)


def test_corrupt_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(DataError, match="cannot read"):
        load_npz(garbage)
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "absent.npz")


def test_pickled_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=np.array([object()], dtype=object))
    with pytest.raises(DataError, match="cannot read"):
        load_npz(path)


def test_data_path_comes_from_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA", "/from/env.npz")
    assert resolve_data_path(tmp_path / "arg.npz") == tmp_path / "arg.npz"
    assert resolve_data_path(None) == Path("/from/env.npz")
    monkeypatch.delenv("MNIST_DATA")
    assert resolve_data_path(None) is None


def test_permuted_labels_keep_the_label_counts_and_break_the_pairing():
    y = np.arange(1000) % 10
    shuffled = permuted_labels(y, seed=3)
    assert np.array_equal(np.bincount(shuffled), np.bincount(y))
    assert np.mean(shuffled == y) < 0.2


@pytest.mark.parametrize("kind", ["truncated", "wrong_shape"])
def test_cli_refuses_bad_data_with_one_line_exit_3_and_publishes_nothing(tmp_path, kind):
    if kind == "truncated":
        data = tmp_path / "bad.npz"
        data.write_bytes(write_npz(tmp_path / "good.npz").read_bytes()[:200])
    else:
        data = write_npz(tmp_path / "bad.npz", x_train=np.zeros((64, 28, 27), np.uint8))
    store = tmp_path / "models" / "mnist"
    result = subprocess.run([sys.executable, "-m", "trainer", "--data", str(data), "--model-base-path", str(store),
                             "--register", "never"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mnist-train: error: ")
    assert list(store.iterdir()) == []
