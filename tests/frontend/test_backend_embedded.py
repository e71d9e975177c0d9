"""frontend.backends.embedded: versions from disk, new ones picked up without a restart, broken ones isolated."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from frontend.backends.embedded import EmbeddedBackend, version_dirs
from frontend.errors import BackendUnavailable


def test_new_version_is_served_without_restart_and_tmp_dirs_are_ignored(good_models, tmp_path, mnist_test):
    base = tmp_path / "mnist"
    base.mkdir()
    (base / "1").symlink_to(good_models.base_path / "1", target_is_directory=True)
    (base / ".tmp-2").mkdir()  # a publish in progress
    backend = EmbeddedBackend(str(base), rescan_s=0.0)
    images = (mnist_test[0][:4, ..., None] / 255.0).astype(np.float32)
    try:
        assert backend.predict(images, None, 30).version == 1
        with pytest.raises(BackendUnavailable):
            backend.predict(images, 2, 30)
        (base / "2").symlink_to(good_models.base_path / "2", target_is_directory=True)  # published
        assert backend.predict(images, None, 30).version == 2
        assert backend.predict(images, 2, 30).version == 2
        assert backend.missing_versions({1, 2}, 5) == set()
    finally:
        backend.close()


def test_broken_saved_model_is_unavailable_not_a_crash(good_models, tmp_path, mnist_test):
    base = tmp_path / "mnist"
    shutil.copytree(good_models.base_path / "1", base / "1")
    (base / "5").mkdir()
    (base / "5" / "saved_model.pb").write_bytes(b"this is not a protobuf")
    backend = EmbeddedBackend(str(base))
    try:
        with pytest.raises(BackendUnavailable, match="cannot be loaded"):
            backend.predict(np.zeros((1, 28, 28, 1), np.float32), 5, 30)
        assert backend.missing_versions({1, 5}, 5) == {5}
        assert sorted(version_dirs(base)) == [1, 5]
    finally:
        backend.close()


def test_empty_model_dir_is_unavailable(tmp_path):
    backend = EmbeddedBackend(str(tmp_path))
    try:
        with pytest.raises(BackendUnavailable):
            backend.predict(np.zeros((1, 28, 28, 1), np.float32), None, 5)
        assert backend.missing_versions(set(), 5) == {0}
    finally:
        backend.close()


def test_prepare_loads_and_runs_versions_and_skips_missing_ones(good_models):
    backend = EmbeddedBackend(str(good_models.base_path))
    try:
        backend.prepare({1, 2, 99})  # 99 does not exist: readiness and requests report it, prepare does not fail
        assert set(backend._loaded) == {1, 2}
    finally:
        backend.close()
