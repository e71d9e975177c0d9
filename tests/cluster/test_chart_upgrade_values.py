"""docs/CLUSTER.md's `helm upgrade` line, read from the doc, takes a newer chart's new defaults and keeps the values
the release was installed with.

`--reuse-values` reuses the last release's computed values, so a value the newer chart added is missing and a
template that reads it fails (`nil pointer evaluating interface {}.enabled`); `--reset-then-reuse-values` starts
from the newer chart's defaults and puts the release's own overrides on top. Shown on the real control plane with a
copy of the chart that gains one value and one template reading it, as each chart release here does.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from tests.cluster.chart_release import CHART, PREFIX, REPO_ROOT, ChartRelease
from tests.support.cluster import Cluster

DOC = REPO_ROOT / "docs" / "CLUSTER.md"


def documented_upgrade(chart: Path) -> list[str]:
    """The `helm upgrade` line under "## Upgrades", as helm's argv, aimed at `chart` (the namespace is the test's)."""
    section = DOC.read_text().split("\n## Upgrades\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no code block under ## Upgrades"
    (line,) = [x for x in block.group(1).splitlines() if x.startswith("helm upgrade")]
    argv = shlex.split(line, comments=True)[1:]
    i = argv.index("-n")
    del argv[i:i + 2]
    return [str(chart) if arg == "charts/mnist-platform" else arg for arg in argv]


def newer_chart(target: Path) -> Path:
    """The chart with one more value (`upgradeCheck.enabled: true`) and a ConfigMap rendered from it."""
    shutil.copytree(CHART, target)
    with (target / "values.yaml").open("a") as values:
        values.write("\n# -- A value a newer chart adds.\nupgradeCheck:\n  # -- Render the check ConfigMap.\n"
                     "  enabled: true\n")
    schema = json.loads((target / "values.schema.json").read_text())
    schema["properties"]["upgradeCheck"] = {"type": "object", "properties": {"enabled": {"type": "boolean"}}}
    (target / "values.schema.json").write_text(json.dumps(schema))
    (target / "templates" / "upgrade-check.yaml").write_text(
        "{{- if .Values.upgradeCheck.enabled }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        "  name: {{ .Release.Name }}-upgrade-check\ndata: {}\n{{- end }}\n")
    return target


def test_documented_upgrade_takes_new_defaults_and_keeps_the_releases_values(cluster: Cluster, tmp_path: Path) -> None:
    with ChartRelease(cluster, "default").prepared() as release:
        release.install("--set", "trainer.runAtInstall=false", "--set", "frontend.hpa.enabled=false",
                        "--set", "frontend.replicas=3")
        newer = newer_chart(tmp_path / "mnist-platform")
        argv = documented_upgrade(newer)
        assert "--reset-then-reuse-values" in argv, argv

        reused = cluster.helm(*[a if a != "--reset-then-reuse-values" else "--reuse-values" for a in argv])
        assert reused.returncode != 0 and "upgradeCheck" in reused.stderr, "why the doc does not say --reuse-values"

        cluster.check(cluster.helm(*argv))
        assert cluster.get("v1", "ConfigMap", "mnist-upgrade-check") is not None, "the newer chart's default applies"
        frontend = cluster.get("apps/v1", "Deployment", f"{PREFIX}-frontend")
        assert frontend["spec"]["replicas"] == 3, "the values the release was installed with are kept"
