"""The CRDs: schema validation of the examples, defaults that agree with the code, and every accepted spec handled."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mnist_operator.decide import TERMINAL, CandidateInfo, Observation, decide
from mnist_operator.spec import DURATION_RE, MODEL_NAME_RE, SpecError, defaults_as_crd, parse_spec

from tests.operator.helpers import KEY, START

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "mnist-platform" / "crds"
EXAMPLES = ROOT / "k8s" / "examples"


def load_crd(name: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / name).read_text())


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["openAPIV3Schema"] if "openAPIV3Schema" in version else version["schema"]["openAPIV3Schema"]


ROLLOUT_SCHEMA = schema_of(load_crd("modelrollouts.yaml"))
SPEC_SCHEMA = ROLLOUT_SCHEMA["properties"]["spec"]


def to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3 -> JSON Schema: `nullable: true` becomes a null type; x-kubernetes-* are ignored by jsonschema."""
    if isinstance(schema, list):
        return [to_jsonschema(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_jsonschema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(to_jsonschema(schema), format_checker=jsonschema.FormatChecker())


def test_rollout_crd_names_columns_and_status_subresource():
    crd = load_crd("modelrollouts.yaml")
    assert crd["spec"]["group"] == "ml.mnist-platform.dev" and crd["spec"]["names"]["shortNames"] == ["mr"]
    (v,) = crd["spec"]["versions"]
    assert v["name"] == "v1alpha1" and v["subresources"] == {"status": {}}
    shown = [c["name"].upper() for c in v["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == ["MODEL", "STABLE", "CANDIDATE", "STRATEGY", "WEIGHT", "PHASE", "AGE"]


def test_modelversion_crd_names_and_status():
    crd = load_crd("modelversions.yaml")
    assert crd["spec"]["names"]["shortNames"] == ["mv"] and crd["spec"]["names"]["plural"] == "modelversions"
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_every_crd_default_equals_the_code_default_and_every_code_default_is_in_the_crd():
    code = defaults_as_crd()
    props = SPEC_SCHEMA["properties"]
    for section, fields in code.items():
        where = props if section == "" else props[section]["properties"]
        for name, default in fields.items():
            assert where[name].get("default") == default, f"{section}.{name}: CRD {where[name].get('default')!r}"
    for section in ("canary", "abtest", "shadow", "analysis", "gate", "autoRollout"):
        assert props[section]["default"] == {}, f"{section} must default to {{}} so its fields default"
        for name, prop in props[section]["properties"].items():
            assert "default" in prop, f"{section}.{name} has no default in the CRD"
            assert name in code[section], f"{section}.{name} in the CRD but not in the code"


def test_crd_patterns_and_enums_are_the_codes():
    props = SPEC_SCHEMA["properties"]
    assert props["model"]["pattern"] == MODEL_NAME_RE.pattern
    assert props["canary"]["properties"]["stepDuration"]["pattern"] == DURATION_RE.pattern
    assert props["strategy"]["enum"] == ["canary", "abtest", "shadow"]


def _rollouts(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "ModelRollout"]


@pytest.mark.parametrize("name", ["canary.yaml", "abtest.yaml", "shadow.yaml"])
def test_examples_are_valid_and_parse(name):
    (doc,) = _rollouts(EXAMPLES / name)
    validator(ROLLOUT_SCHEMA).validate(doc)
    assert parse_spec(doc["spec"]).strategy == name.split(".")[0]


def test_modelversion_example_is_valid():
    doc = yaml.safe_load((EXAMPLES / "modelversion.yaml").read_text())
    validator(schema_of(load_crd("modelversions.yaml"))).validate(doc)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_examples_are_rejected_by_the_schema_and_by_the_code(path):
    (doc,) = _rollouts(path)
    errors = list(validator(ROLLOUT_SCHEMA).iter_errors(doc))
    assert errors, f"{path.name} passed the CRD schema"
    with pytest.raises(SpecError):
        parse_spec(doc["spec"])


def test_the_three_named_bad_examples_exist():
    names = {p.name for p in (EXAMPLES / "invalid").glob("*.yaml")}
    assert {"unknown-strategy.yaml", "weight-150.yaml", "missing-model.yaml"} <= names


# --- every spec the schema accepts is handled --------------------------------------------------------------------

def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A hypothesis strategy for the subset of OpenAPI the CRD uses (objects, enums, ranges, patterns, arrays)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required})
    if t == "integer":
        return st.integers(min_value=schema.get("minimum", -5), max_value=schema.get("maximum", 10_000))
    if t == "number":
        return st.floats(min_value=schema.get("minimum", -5.0), max_value=schema.get("maximum", 10_000.0),
                         allow_nan=False, allow_infinity=False)
    if t == "boolean":
        return st.booleans()
    if t == "string":
        if "pattern" in schema:
            s = st.from_regex(re.compile(schema["pattern"]), fullmatch=True)
        else:
            s = st.text(min_size=schema.get("minLength", 0), max_size=20)
        return s.filter(lambda x: schema.get("minLength", 0) <= len(x) <= schema.get("maxLength", 10**6))
    if t == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 5), 6))
    raise AssertionError(f"schema type {t!r} not covered by the generator")


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server's structural defaulting does (defaults of absent fields, recursively)."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    out = copy.deepcopy(value)
    for k, prop in schema.get("properties", {}).items():
        if k not in out and "default" in prop:
            out[k] = copy.deepcopy(prop["default"])
        if k in out:
            out[k] = apply_defaults(prop, out[k])
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=from_schema(SPEC_SCHEMA), defaulted=st.booleans())
def test_every_spec_the_schema_accepts_is_handled(spec, defaulted):
    if defaulted:
        spec = apply_defaults(SPEC_SCHEMA, spec)
    validator(SPEC_SCHEMA).validate(spec)
    routing = {"model": spec["model"], "strategy": "single", "routes": [{"version": 1, "label": "stable", "weight": 100}],
               "generation": 1}
    obs = Observation(rollout=KEY, candidate=CandidateInfo(True, 0.99, True), current_routing=routing)
    status = None
    for i in range(4):  # creation, gate, loading, first traffic
        d = decide(spec, status, obs, START + i)
        status = d.status
        assert status["phase"] in ("Pending", "Progressing", "Paused", *TERMINAL)
        if d.routing is not None:
            assert sum(r.weight for r in d.routing.routes) == 100
        if status["phase"] in TERMINAL:
            break
    try:
        parse_spec(spec)
    except SpecError as exc:
        assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec" and str(exc) == status["message"]
