"""values.yaml, values.schema.json and the chart README stay in step; the schema rejects typos and wrong types."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml
from chartlib import CHART, CI_VALUES, run_helm

from scripts import chart_values
from scripts.chart_values import descriptions, leaves

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)

# Each bad value file, and a fragment of the error helm must print for it.
BAD_VALUES = {
    "typo-top-level": ("fronted:\n  replicas: 2\n", "fronted"),
    "typo-nested": ("frontend:\n  replcas: 2\n", "replcas"),
    "typo-deep": ("serving:\n  hpa:\n    maxReplica: 3\n", "maxReplica"),
    "wrong-type-int": ("frontend:\n  replicas: two\n", "replicas"),
    "wrong-type-bool": ("networkPolicy:\n  enabled: \"yes\"\n", "enabled"),
    "wrong-type-object": ("trainer:\n  gpu: true\n", "gpu"),
    "bad-enum": ("frontend:\n  backend: embeded\n", "backend"),
    "bad-port": ("serving:\n  grpcPort: 70000\n", "grpcPort"),
    "bad-access-mode": ("modelStore:\n  accessModes: [ReadWriteAlways]\n", "accessModes"),
    "root-user": ("podSecurityContext:\n  runAsNonRoot: false\n", "runAsNonRoot"),
    "privileged": ("containerSecurityContext:\n  privileged: true\n", "privileged"),
    "bad-model-name": ("modelName: MNIST_v2\n", "modelName"),
}


def test_values_and_every_ci_value_set_pass_the_schema() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    for path in [CHART / "values.yaml", *CI_VALUES]:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, f"{path.name}: {errors}"


def test_every_value_is_typed_described_and_closed() -> None:
    notes = descriptions(VALUES_TEXT)
    rows = leaves(SCHEMA, VALUES)
    assert len(rows) > 90
    for path, node, _ in rows:
        assert "type" in node, f"{path} has no type in values.schema.json"
        assert notes.get(path), f"{path} has no `# --` comment in values.yaml"


def test_schema_has_no_key_values_yaml_lacks() -> None:
    def walk(node: dict, values: dict, prefix: str) -> None:
        if node.get("additionalProperties") is False:
            assert set(node["properties"]) - {"global"} == set(values), prefix or "(top level)"
            for key, child in node["properties"].items():
                if key != "global":
                    walk(child, values[key] or {}, f"{prefix}.{key}")
    walk(SCHEMA, VALUES, "")


def test_schema_descriptions_and_readme_table_are_what_values_yaml_generates() -> None:
    """values.yaml's comments are the one source; the schema's descriptions and the README's table are generated."""
    assert chart_values.stale() == [], "stale: run .venv/bin/python -m scripts.chart_values"
    readme = (CHART / "README.md").read_text()
    for path, _, _ in leaves(SCHEMA, VALUES):
        assert f"| `{path}` |" in readme


def test_the_generator_carries_an_edited_comment_into_schema_and_readme(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    for name in ("values.yaml", "values.schema.json", "README.md"):
        shutil.copy(CHART / name, chart / name)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("# -- Size of the created claim.", "# -- How big the claim is."))
    assert chart_values.main(["--check", "--chart", str(chart)]) == 1
    assert chart_values.main(["--chart", str(chart)]) == 0
    schema = json.loads((chart / "values.schema.json").read_text())
    assert schema["properties"]["modelStore"]["properties"]["size"]["description"] == "How big the claim is."
    assert "| `modelStore.size` | string | `\"2Gi\"` | How big the claim is. |" in (chart / "README.md").read_text()
    assert chart_values.main(["--check", "--chart", str(chart)]) == 0


def test_a_documented_key_the_schema_lacks_is_named(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    for name in ("values.yaml", "values.schema.json", "README.md"):
        shutil.copy(CHART / name, chart / name)
    (chart / "values.yaml").write_text((chart / "values.yaml").read_text() + "# -- A new knob.\nnewKnob: 1\n")
    with pytest.raises(chart_values.ValuesError, match="newKnob"):
        chart_values.generated(chart)


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_helm_rejects_bad_values(helm: str, tmp_path: Path, case: str) -> None:
    text, fragment = BAD_VALUES[case]
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(text)
    result = run_helm(helm, "template", "x", str(CHART), "-f", str(bad), check=False)
    assert result.returncode != 0, f"helm accepted {case}"
    assert fragment in result.stderr, result.stderr


def test_generated_secret_needs_a_plain_key_name(helm: str) -> None:
    result = run_helm(helm, "template", "x", str(CHART), "--set", "frontend.apiKeys.plainKeyKey=", check=False)
    assert result.returncode != 0
    assert "plainKeyKey must name a key" in result.stderr


def test_tls_needs_a_secret_name(helm: str) -> None:
    result = run_helm(helm, "template", "x", str(CHART), "--set", "frontend.ingress.tls.enabled=true", check=False)
    assert result.returncode != 0
    assert "frontend.ingress.tls.secretName is required" in result.stderr
