"""`helm test` of the chart on the real control plane: the test Pod is admitted under PodSecurity
restricted, scheduled, run (kwok completes it: exit 0) and reported Succeeded, for the generated API key
Secret and for one managed outside the chart; a second run replaces the first Pod."""

from __future__ import annotations

import pytest

from scripts.sim.control_plane import CPU_NODE
from tests.cluster.chart_release import PREFIX, RELEASE, ChartRelease
from tests.support.cluster import Cluster

TEST_POD = f"{PREFIX}-test-prediction"


@pytest.mark.parametrize("value_set", ["default", "existing-secrets-values"])
def test_helm_test_pod_is_scheduled_and_succeeds(cluster: Cluster, value_set: str) -> None:
    with ChartRelease(cluster, value_set).prepared() as release:
        release.install("--set", "trainer.runAtInstall=false")
        uids = []
        for _ in range(2):
            report = release.helm("test", RELEASE, "--timeout", "60s")
            assert f"TEST SUITE:     {TEST_POD}" in report and "Phase:          Succeeded" in report, report
            pod = cluster.get("v1", "Pod", TEST_POD)
            assert pod["spec"]["nodeName"] == CPU_NODE and pod["status"]["phase"] == "Succeeded"
            (status,) = pod["status"]["containerStatuses"]
            assert status["state"]["terminated"]["exitCode"] == 0
            uids.append(pod["metadata"]["uid"])
        assert uids[0] != uids[1], "each run makes its own Pod (hook-delete-policy before-hook-creation)"
        release.assert_healthy()  # among others: the Secret key and ConfigMap the test Pod mounts exist
