"""Real `helm install / upgrade / rollback / uninstall` of the chart against a real API server.

The control plane of the cluster tests (tests/support/cluster): the API server validates every object
(OpenAPI, PodSecurity `restricted` on the namespace), the controllers roll Deployments and run Jobs, kwok
plays the pods. Checked for the default values (the whole lifecycle) and every value set in ci/ (install,
upgrade, uninstall): every pod admitted and every Deployment available, and the promises about state: the
generated API key and feedback key survive upgrades and rollbacks, the operator's two ConfigMaps keep what
it wrote over upgrades, rollbacks, uninstall and a reinstall, the models claim is kept on uninstall, and the
CRDs stay.
"""

from __future__ import annotations

import pytest

from tests.cluster.chart_release import PREFIX, VALUE_SETS, ChartRelease, chart_crds
from tests.support.cluster import Cluster

# An upgrade that changes every pod template the project builds: new image tags roll the frontend and
# operator Deployments (under PodSecurity again) and change the trainer's CronJob.
NEW_IMAGES = ("--set", "frontend.image.tag=0.1.1", "--set", "operator.image.tag=0.1.1",
              "--set", "trainer.image.tag=0.1.1")


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


def test_default_release_lifecycle_keeps_keys_and_operator_state(cluster: Cluster) -> None:
    with ChartRelease(cluster, "default").prepared() as release:
        keys, crds = installed(release)
        written = release.operator_writes()

        release.upgrade(*NEW_IMAGES, "--set", "frontend.hpa.enabled=false", "--set", "frontend.replicas=3")
        release.assert_healthy()
        frontend = cluster.get("apps/v1", "Deployment", f"{PREFIX}-frontend")
        assert frontend["spec"]["replicas"] == 3, "the upgrade did apply"
        assert cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{PREFIX}-frontend") is None
        assert release.pod_images("frontend") == {"mnist-platform/frontend:0.1.1"}
        assert release.generated_keys() == keys, "the API key and feedback key survive upgrades"
        assert release.configmap_data() == written, "the operator's ConfigMaps survive upgrades"

        release.rollback()
        release.assert_healthy()
        assert cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", f"{PREFIX}-frontend") is not None
        assert release.pod_images("frontend") == {"mnist-platform/frontend:0.1.0"}, "back to revision 1"
        assert release.generated_keys() == keys, "the keys survive a rollback"
        assert release.configmap_data() == written, "a rollback leaves what the operator wrote"

        assert_uninstalled_keeps_state(release, written, crds)
        claim = cluster.get("v1", "PersistentVolumeClaim", f"{PREFIX}-models")

        release.install()  # into the same namespace: what was kept is used again
        release.assert_healthy()
        assert release.configmap_data() == written, "a reinstall serves and routes what the operator chose"
        assert cluster.get("v1", "PersistentVolumeClaim", f"{PREFIX}-models")["metadata"]["uid"] == \
            claim["metadata"]["uid"], "a reinstall keeps the models"


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "default"])
def test_value_set_installs_upgrades_and_uninstalls_under_restricted_pod_security(cluster: Cluster,
                                                                                  value_set: str) -> None:
    with ChartRelease(cluster, value_set).prepared() as release:
        keys, crds = installed(release)
        written = release.operator_writes()
        release.upgrade(*NEW_IMAGES)
        release.assert_healthy()
        assert release.pod_images("frontend") == {"mnist-platform/frontend:0.1.1"}
        assert release.generated_keys() == keys
        assert release.configmap_data() == written
        assert_uninstalled_keeps_state(release, written, crds)
