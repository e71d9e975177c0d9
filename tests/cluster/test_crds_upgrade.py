"""Upgrading the CRDs the way docs/CLUSTER.md says, on a release whose CRDs Helm installed.

Helm installs crds/ only when they are absent, so on the session's control plane (CRDs installed by the
test bed) Helm would never own them. This test starts a control plane of its own (about 5 s), where
`helm install` creates the CRDs under Helm's field manager, as on a user's cluster. There, the command is
read out of docs/CLUSTER.md (so the doc and the test cannot drift) and run: first on a changed copy of the
CRDs (a new field and printer column, then served), then as written (the chart's CRDs back).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml

from scripts.sim.control_plane import TOOLS_BIN, ControlPlane, ControlPlaneError
from tests.cluster.chart_release import CHART, RELEASE, REPO_ROOT
from tests.support.cluster import Cluster, wait_for

CRDS_DIR = "charts/mnist-platform/crds/"
MV_CRD = "modelversions.ml.mnist-platform.dev"


def documented_crd_command(doc: Path, heading: str = "## Upgrades") -> list[str]:
    """The `kubectl apply ... crds/` line of the doc's section `heading`, as argv (comment dropped)."""
    section = doc.read_text().split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    assert block, f"{doc.name}: no code block under {heading}"
    (line,) = [x for x in block.group(1).splitlines() if x.startswith("kubectl apply") and CRDS_DIR in x]
    return shlex.split(line, comments=True)


def with_owner_column(source: Path, target: Path) -> None:
    """The chart's CRDs, with ModelVersion given spec.owner and an Owner printer column (a chart upgrade's)."""
    target.mkdir()
    for path in sorted(source.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["metadata"]["name"] == MV_CRD:
            (version,) = crd["spec"]["versions"]
            version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["owner"] = {"type": "string"}
            version["additionalPrinterColumns"].insert(-1, {"name": "Owner", "type": "string",
                                                            "jsonPath": ".spec.owner"})
        (target / path.name).write_text(yaml.safe_dump(crd, sort_keys=False))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A control plane of this test's own, without the chart's CRDs, and a namespace on it."""
    plane = ControlPlane(f"mnist-crd-upgrade-{os.getpid()}", tmp_path / "plane")
    try:
        plane.create()
        plane.kubectl("create", "namespace", "mnist")
        with kubernetes.config.new_client_from_config(str(plane.kubeconfig)) as api:
            yield Cluster(plane, "mnist", tmp_path, api)
    except ControlPlaneError as exc:
        pytest.fail(str(exc))
    finally:
        plane.delete()


def test_chart_readme_shows_the_documented_crd_command() -> None:
    readme = documented_crd_command(CHART / "README.md", "## CRDs and upgrades")
    assert readme == documented_crd_command(REPO_ROOT / "docs" / "CLUSTER.md")


def test_documented_crd_upgrade_works_on_a_helm_installed_release(own_cluster: Cluster, tmp_path: Path) -> None:
    cluster = own_cluster
    command = documented_crd_command(REPO_ROOT / "docs" / "CLUSTER.md")
    assert command[:2] == ["kubectl", "apply"] and CRDS_DIR in command

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TOOLS_BIN / "kubectl"), *argv[1:]], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, env={**os.environ, **cluster.env()})

    def mv_columns() -> list[str]:
        return re.split(r"\s{2,}", cluster.check(cluster.kubectl("get", "mv", "mnist-v2")).splitlines()[0].strip())

    cluster.check(cluster.helm("install", RELEASE, str(CHART), "--set", "trainer.runAtInstall=false"))
    crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", MV_CRD)
    assert {(f["manager"], f["operation"]) for f in crd["metadata"]["managedFields"]} >= {("helm", "Apply")}, \
        "helm install created the CRDs under its field manager"
    cluster.check(cluster.kubectl("apply", "--validate=strict", "-f", str(REPO_ROOT / "k8s/examples/modelversion.yaml")))

    changed = tmp_path / "crds-next"
    with_owner_column(REPO_ROOT / CRDS_DIR, changed)
    refused = run(["kubectl", "apply", "--server-side", "-f", str(changed)])
    assert refused.returncode != 0 and 'conflict with "helm"' in refused.stderr, \
        f"without --force-conflicts, Helm's ownership is expected to block the change: {refused.stderr}"

    upgrade = run([str(changed) if arg == CRDS_DIR else arg for arg in command])
    assert upgrade.returncode == 0, upgrade.stderr
    cluster.check(cluster.kubectl("wait", "--for=condition=Established", f"crd/{MV_CRD}", "--timeout=30s"))
    owned = "apiVersion: ml.mnist-platform.dev/v1alpha1\nkind: ModelVersion\nmetadata: {name: mnist-v2}\n" \
            "spec: {model: mnist, version: 2, path: /models/mnist/2, owner: team-ml}\n"
    wait_for(lambda: cluster.kubectl("apply", "--validate=strict", "-f", "-", input=owned).returncode == 0, 30,
             "the new field to be served (strict validation knows it)")
    assert "OWNER" in mv_columns() and "team-ml" in cluster.check(cluster.kubectl("get", "mv", "mnist-v2"))

    cluster.check(cluster.helm("upgrade", RELEASE, str(CHART), "--reset-then-reuse-values"))
    assert "OWNER" in mv_columns(), "helm upgrade leaves the CRDs as applied"

    restored = run(command)  # as written: the chart's CRDs again
    assert restored.returncode == 0, restored.stderr
    wait_for(lambda: "OWNER" not in mv_columns(), 30, "the chart's printer columns back")
    unknown = cluster.kubectl("apply", "--validate=strict", "-f", "-", input=owned)
    assert unknown.returncode != 0 and 'unknown field "spec.owner"' in unknown.stderr
