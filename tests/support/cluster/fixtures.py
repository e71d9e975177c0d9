"""pytest fixtures of the cluster tests; tests/conftest.py imports them, so any test can ask for `cluster`.

`control_plane` starts once per test session, on first use (about 20 s once `make tools` has built the
binaries), with the chart's CRDs installed; `cluster` gives each test a namespace of its own on it, deleted
after the test.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from scripts.sim.control_plane import ControlPlane, ControlPlaneError, missing_binaries

from .cluster import Cluster, wait_for, yaml_documents

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS = REPO_ROOT / "charts" / "mnist-platform" / "crds"


def install_crds(control_plane: ControlPlane, api: kubernetes.client.ApiClient) -> None:
    """The chart's CRDs, applied server-side as docs/CLUSTER.md tells users to; served on return."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    ext = kubernetes.client.ApiextensionsV1Api(api)
    names = [doc["metadata"]["name"] for doc in yaml_documents([CRDS])]

    def established() -> bool:
        return all(any(c.type == "Established" and c.status == "True"
                       for c in (ext.read_custom_resource_definition(n).status.conditions or []))
                   for n in names)
    wait_for(established, 30, "the chart's CRDs to be Established")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing:
        pytest.fail(f"the cluster tests need {', '.join(missing)} in .tools/bin: run `make tools`")
    plane = ControlPlane(f"mnist-test-{os.getpid()}", tmp_path_factory.mktemp("control-plane"))
    try:
        plane.create()
        with kubernetes.config.new_client_from_config(str(plane.kubeconfig)) as api:
            install_crds(plane, api)
        yield plane
    except ControlPlaneError as exc:
        pytest.fail(str(exc))
    finally:
        plane.delete()


@pytest.fixture(scope="session")
def admin_api(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """One kubernetes client as the cluster's admin, shared by the session's tests."""
    with kubernetes.config.new_client_from_config(str(control_plane.kubeconfig)) as api:
        yield api


@contextlib.contextmanager
def scratch_namespace(control_plane: ControlPlane, api: kubernetes.client.ApiClient, workdir: Path) -> Iterator[Cluster]:
    """A namespace of one test's own, as a Cluster on `api`, deleted afterwards (without waiting for it to go).

    Work that runs beside other work in threads passes a kubernetes client of its own.
    """
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace, "labels": {"mnist-platform.dev/test": "true"}}})
    try:
        # The ServiceAccount controller makes `default` in each new namespace; pods need it to be admitted.
        wait_for(lambda: any(sa.metadata.name == "default"
                             for sa in core.list_namespaced_service_account(namespace).items),
                 30, f"ServiceAccount default in {namespace}")
        yield Cluster(control_plane, namespace, workdir, api)
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespace(namespace, propagation_policy="Background")


@pytest.fixture
def cluster(control_plane: ControlPlane, admin_api: kubernetes.client.ApiClient, tmp_path: Path) -> Iterator[Cluster]:
    """A namespace of this test's own (`.namespace`), deleted afterwards (without waiting for it to go)."""
    with scratch_namespace(control_plane, admin_api, tmp_path) as namespace:
        yield namespace
