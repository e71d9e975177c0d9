"""pytest fixtures around the emulator; import them into a conftest.py: `from tests.support.k8s_emulator.fixtures import k8s_api`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .runner import EmulatedCluster, emulated_cluster


@pytest.fixture
def k8s_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    """A fresh emulated API server on 127.0.0.1 for one test: `.url`, `.kubeconfig`, `.load_crds(paths)`, `.env()`."""
    workdir: Path = tmp_path_factory.mktemp("k8s-api")
    with emulated_cluster(workdir) as cluster:
        yield cluster
        errors = list(cluster.emulator.server_errors)
    assert not errors, "the emulated API server failed internally:\n" + "\n".join(errors)
