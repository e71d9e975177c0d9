"""How the real API server serves the chart's CRDs: `kubectl get mr` / `get mv` show the CRD's
additionalPrinterColumns (priority 1 only with -o wide) with the values at their jsonPaths, and status is a
subresource (a write to the object leaves status alone and bumps the generation; a write to /status leaves
spec alone and does not)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.cluster.chart_release import CHART, REPO_ROOT
from tests.support.cluster import Cluster

GROUP_VERSION = "ml.mnist-platform.dev/v1alpha1"
EXAMPLES = REPO_ROOT / "k8s" / "examples"
ROLLOUT_STATUS = {"phase": "Progressing", "stableVersion": 1, "candidateWeight": 25, "stage": "canary",
                  "reason": "CanaryStep", "step": 2}
VERSION_STATUS = {"phase": "Candidate"}


def printer_columns(plural: str) -> list[dict]:
    crd = yaml.safe_load((CHART / "crds" / f"{plural}.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    return version["additionalPrinterColumns"]


def table(cluster: Cluster, *args: str) -> tuple[list[str], list[str]]:
    """Header and first row of a kubectl table, split on its column gaps."""
    header, row = cluster.check(cluster.kubectl("get", *args)).splitlines()[:2]
    return re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", row.strip())


@pytest.mark.parametrize(("short", "plural", "example", "status"), [
    ("mr", "modelrollouts", "canary.yaml", ROLLOUT_STATUS),
    ("mv", "modelversions", "modelversion.yaml", VERSION_STATUS),
])
def test_get_shows_the_crds_printer_columns(cluster: Cluster, short: str, plural: str, example: str,
                                             status: dict) -> None:
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    cluster.check(cluster.kubectl("apply", "--validate=strict", "-f", str(EXAMPLES / example)))
    cluster.patch_status(GROUP_VERSION, manifest["kind"], manifest["metadata"]["name"], status)
    columns = printer_columns(plural)
    served = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{plural}.ml.mnist-platform.dev")
    assert served["spec"]["versions"][0]["additionalPrinterColumns"] == columns, "the chart's CRD is the one served"

    header, row = table(cluster, short)
    shown = [c for c in columns if not c.get("priority")]
    assert header == ["NAME"] + [c["name"].upper() for c in shown]
    wide_header, wide_row = table(cluster, short, "-o", "wide")
    assert wide_header == ["NAME"] + [c["name"].upper() for c in columns]

    obj = {**manifest, "status": status}
    values = dict(zip([c["name"] for c in columns], wide_row[1:], strict=True))
    for column in columns:
        if column["type"] != "date":
            expected: object = obj
            for part in column["jsonPath"].lstrip(".").split("."):
                expected = expected.get(part) if isinstance(expected, dict) else None
            assert values[column["name"]] == ("<none>" if expected is None else str(expected)), column["name"]
    assert row[0] == wide_row[0] == manifest["metadata"]["name"]
    assert [v for v, c in zip(row[1:], shown, strict=True) if c["type"] != "date"] == \
        [values[c["name"]] for c in shown if c["type"] != "date"]

def test_status_is_a_subresource(cluster: Cluster) -> None:
    name = "mnist-v2-canary"
    cluster.check(cluster.kubectl("apply", "--validate=strict", "-f", str(EXAMPLES / "canary.yaml")))

    def get() -> dict:
        return cluster.get(GROUP_VERSION, "ModelRollout", name)
    created = get()
    assert "status" not in created or not created["status"], "create ignores status"
    generation = created["metadata"]["generation"]

    cluster.patch_status(GROUP_VERSION, "ModelRollout", name, {"phase": "Progressing", "candidateWeight": 10})
    after_status = get()
    assert after_status["status"]["phase"] == "Progressing"
    assert after_status["metadata"]["generation"] == generation, "a status write is no spec change"

    # A write to the object: its spec changes, the status it carries is dropped.
    cluster.check(cluster.kubectl("patch", "mr", name, "--type=merge", "-p",
                                  json.dumps({"spec": {"paused": True}, "status": {"phase": "Failed"}})))
    after_spec = get()
    assert after_spec["spec"]["paused"] is True and after_spec["status"] == after_status["status"]
    assert after_spec["metadata"]["generation"] == generation + 1

    # A write to /status: the status changes, the spec it carries is dropped.
    cluster.check(cluster.kubectl("patch", "mr", name, "--subresource=status", "--type=merge", "-p",
                                  json.dumps({"spec": {"model": "other"}, "status": {"phase": "Paused"}})))
    after = get()
    assert after["status"]["phase"] == "Paused" and after["spec"] == after_spec["spec"]
    assert after["metadata"]["generation"] == generation + 1
