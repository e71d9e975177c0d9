"""values.yaml, values.schema.json and the chart README stay in step; the schema rejects typos and wrong types."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from chartlib import CHART, CI_VALUES, run_helm
from values_doc import descriptions, leaves, with_table

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
        assert node.get("description") == notes[path], f"{path}: schema description differs from values.yaml"


def test_schema_has_no_key_values_yaml_lacks() -> None:
    def walk(node: dict, values: dict, prefix: str) -> None:
        if node.get("additionalProperties") is False:
            assert set(node["properties"]) - {"global"} == set(values), prefix or "(top level)"
            for key, child in node["properties"].items():
                if key != "global":
                    walk(child, values[key] or {}, f"{prefix}.{key}")
    walk(SCHEMA, VALUES, "")


def test_readme_lists_every_value_with_its_default() -> None:
    readme = (CHART / "README.md").read_text()
    assert readme == with_table(readme), "charts/mnist-platform/README.md is stale: python tests/chart/values_doc.py --write"
    for path, _, _ in leaves(SCHEMA, VALUES):
        assert f"| `{path}` |" in readme


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
