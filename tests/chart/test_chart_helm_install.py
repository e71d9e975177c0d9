"""Real `helm install / upgrade / rollback / uninstall` of the chart against a real API server.

The control plane of the cluster tests (tests/support/cluster): the API server validates every object
(OpenAPI, PodSecurity `restricted` on the namespace), the controllers roll Deployments and run Jobs, kwok
plays the pods. Checked for the default values (the whole lifecycle) and every value set in ci/ (install,
upgrade, uninstall): every pod admitted and every Deployment available, and the promises about state: the
generated API key and feedback key survive upgrades and rollbacks, the operator's two ConfigMaps keep what
it wrote over upgrades, rollbacks, uninstall and a reinstall, the models claim is kept on uninstall, and the
CRDs stay.

A lifecycle mostly waits (for controllers, kwok, helm's polling), so the value sets run side by side, each
in a namespace of its own, SIDE_BY_SIDE at a time (the simulated CPU node has 8 CPUs for all their
requests); each test then reports its own value set's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.sim.control_plane import ControlPlane
from tests.cluster.chart_release import PREFIX, VALUE_SETS, ChartRelease, chart_crds, own_namespace
from tests.support.cluster import Cluster

SIDE_BY_SIDE = 3
# An upgrade that changes every pod template the project builds: new image tags roll the frontend and
# operator Deployments (under PodSecurity again) and change the trainer's CronJob.
NEW_TAG = "0.1.1-next"
NEW_IMAGES = ("--set", f"frontend.image.tag={NEW_TAG}", "--set", f"operator.image.tag={NEW_TAG}",
              "--set", f"trainer.image.tag={NEW_TAG}")


def installed(release: ChartRelease) -> tuple[dict[str, bytes], dict]:
    """Install and check it; returns the generated keys and the chart's CRDs as they are then."""
    release.install()
    release.assert_healthy()
    assert "routing.json" not in release.configmap_data()[f"{PREFIX}-routing"], "no routing until the operator's"
    crds = chart_crds(release.cluster)
    assert len(crds) == 2 and all(established for _, established in crds.values())
    return release.generated_keys(), crds


def assert_uninstalled_keeps_state(release: ChartRelease, written: dict, crds: dict) -> None:
    cluster = release.cluster
    release.uninstall()
    assert not cluster.list("apps/v1", "Deployment")
    assert not [s for s in cluster.list("v1", "Secret") if s["metadata"]["name"].startswith(PREFIX)], \
        "generated Secrets go with the release"
    claim = release.values["modelStore"]["existingClaim"] or f"{PREFIX}-models"
    assert cluster.get("v1", "PersistentVolumeClaim", claim) is not None, "the models claim is kept"
    assert release.configmap_data() == written, "the operator's ConfigMaps are kept with what it wrote"
    assert chart_crds(cluster) == crds, "the CRDs stay"


def default_lifecycle(cluster: Cluster) -> None:
    """install, upgrade, rollback, uninstall, reinstall of the default values."""
    with ChartRelease(cluster, "default").prepared() as release:
        keys, crds = installed(release)
        written = release.operator_writes()

        release.upgrade(*NEW_IMAGES, "--set", "frontend.hpa.enabled=false", "--set", "frontend.replicas=3")
        release.assert_healthy()
        frontend = cluster.get("apps/v1", "Deployment", f"{PREFIX}-frontend")
        assert frontend["spec"]["replicas"] == 3, "the upgrade did apply"
        assert cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{PREFIX}-frontend") is None
        assert release.pod_images("frontend") == {release.image("frontend", NEW_TAG)}
        assert release.generated_keys() == keys, "the API key and feedback key survive upgrades"
        assert release.configmap_data() == written, "the operator's ConfigMaps survive upgrades"

        release.rollback()
        release.assert_healthy()
        assert cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{PREFIX}-frontend") is not None
        assert release.pod_images("frontend") == {release.image("frontend")}, "back to revision 1"
        assert release.generated_keys() == keys, "the keys survive a rollback"
        assert release.configmap_data() == written, "a rollback leaves what the operator wrote"

        assert_uninstalled_keeps_state(release, written, crds)
        claim = cluster.get("v1", "PersistentVolumeClaim", f"{PREFIX}-models")

        release.install()  # into the same namespace: what was kept is used again
        release.assert_healthy()
        assert release.configmap_data() == written, "a reinstall serves and routes what the operator chose"
        assert cluster.get("v1", "PersistentVolumeClaim", f"{PREFIX}-models")["metadata"]["uid"] == \
            claim["metadata"]["uid"], "a reinstall keeps the models"


def value_set_lifecycle(cluster: Cluster, value_set: str) -> None:
    """install, upgrade, uninstall of one ci/ value set."""
    with ChartRelease(cluster, value_set).prepared() as release:
        keys, crds = installed(release)
        written = release.operator_writes()
        release.upgrade(*NEW_IMAGES)
        release.assert_healthy()
        assert release.pod_images("frontend") == {release.image("frontend", NEW_TAG)}
        assert release.generated_keys() == keys
        assert release.configmap_data() == written
        assert_uninstalled_keeps_state(release, written, crds)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, control_plane: ControlPlane,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """The lifecycle of each value set the selected tests ask for, run side by side: value set -> its error."""
    def value_set_of(item: pytest.Item) -> str | None:
        if getattr(item, "module", None) is not request.module:
            return None
        callspec = getattr(item, "callspec", None)
        return callspec.params["value_set"] if callspec else "default"
    selected = {value_set_of(item) for item in request.session.items}
    wanted = [v for v in VALUE_SETS if v in selected]

    def run(value_set: str) -> None:
        lifecycle: Callable[[Cluster], None] = default_lifecycle if value_set == "default" else \
            (lambda cluster: value_set_lifecycle(cluster, value_set))
        with own_namespace(control_plane, tmp_path_factory.mktemp(value_set)) as cluster:
            lifecycle(cluster)

    with ThreadPoolExecutor(SIDE_BY_SIDE) as pool:
        futures = {value_set: pool.submit(run, value_set) for value_set in wanted}
    return {value_set: future.exception() for value_set, future in futures.items()}


def test_default_release_lifecycle_keeps_keys_and_operator_state(outcomes: dict[str, BaseException | None]) -> None:
    if outcomes["default"] is not None:
        raise outcomes["default"]


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "default"])
def test_value_set_installs_upgrades_and_uninstalls_under_restricted_pod_security(
        outcomes: dict[str, BaseException | None], value_set: str) -> None:
    if outcomes[value_set] is not None:
        raise outcomes[value_set]
