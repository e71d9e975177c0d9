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


def cel_rules(schema: dict[str, Any], where: str = "spec") -> dict[str, tuple[str, str]]:
    """message -> (field, rule) of every x-kubernetes-validations rule under a schema."""
    found = {r["message"]: (where, r["rule"]) for r in schema.get("x-kubernetes-validations", [])}
    for name, prop in schema.get("properties", {}).items():
        found.update(cel_rules(prop, f"{where}.{name}"))
    return found


def _cel_message(path: Path) -> str | None:
    """The CEL rule an invalid example says refuses it: its first line reads `# Refused (CEL: <message>): ...`."""
    first = path.read_text().splitlines()[0]
    return first.split("(CEL: ", 1)[1].split(")", 1)[0] if "(CEL: " in first else None


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_examples_are_rejected_by_the_schema_and_by_the_code(path):
    """jsonschema knows no CEL: an example refused by a CEL rule must name one the CRD has (the API server's own
    refusal of every invalid example is tests/cluster/test_crds_validation.py, against a real kube-apiserver)."""
    (doc,) = _rollouts(path)
    errors = list(validator(ROLLOUT_SCHEMA).iter_errors(doc))
    message = _cel_message(path)
    if message is None:
        assert errors, f"{path.name} passed the CRD schema"
    else:
        assert not errors and message in cel_rules(SPEC_SCHEMA), f"{path.name}: no CEL rule {message!r}"
    with pytest.raises(SpecError):
        parse_spec(doc["spec"])


def test_the_crds_cel_rules_are_the_codes_rules():
    """Each CEL rule, and the spec.parse_spec check it mirrors: the cases on either side of it."""
    rules = cel_rules(SPEC_SCHEMA)
    assert rules["stableVersion must differ from candidateVersion, or there is nothing to roll out"] == (
        "spec", "!has(self.stableVersion) || self.stableVersion != self.candidateVersion")
    assert rules["steps must be strictly increasing"] == (
        "spec.canary.steps", "self.isSorted() && self.all(x, self.indexOf(x) == self.lastIndexOf(x))")
    duration_rule = "duration(self) > duration('0s') && duration(self) <= duration('720h')"
    for field in DURATION_FIELDS:
        (rule,) = SPEC_FIELDS[field]["x-kubernetes-validations"]
        assert rule == {"rule": duration_rule, "message": "must be longer than 0s and at most 720h"}, field
        for text, ok in (("0s", False), ("0.001ms", True), ("720h", True), ("720h1ms", False), ("43200m", True)):
            try:
                parse_spec(spec_with(field, text))
                accepted = True
            except SpecError:
                accepted = False
            assert accepted == ok, (field, text)
    with pytest.raises(SpecError, match="equals candidateVersion"):
        parse_spec({"model": "mnist", "candidateVersion": 3, "stableVersion": 3})
    for steps, ok in (([10, 50, 100], True), ([50, 50, 100], False), ([50, 10], False), ([100], True)):
        try:
            parse_spec({"model": "mnist", "candidateVersion": 2, "canary": {"steps": steps}})
            accepted = True
        except SpecError:
            accepted = False
        assert accepted == ok, steps


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
    stable = spec.get("stableVersion") or 1
    obs = Observation(rollout=KEY, candidate=CandidateInfo(True, 0.99, True), current_routing=routing,
                      versions={stable: CandidateInfo(True, 0.98, True)})
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


# --- every input's cost and range is bounded: numbers finite, strings and durations short ------------------------

def _fields(schema: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(dotted field name, schema) of every leaf field under an object schema."""
    out = []
    for name, prop in schema.get("properties", {}).items():
        path = f"{where}.{name}" if where else name
        out += _fields(prop, path) if prop.get("type") == "object" else [(path, prop)]
    return out


SPEC_FIELDS = dict(_fields(SPEC_SCHEMA))
NUMBER_FIELDS = sorted(k for k, v in SPEC_FIELDS.items() if v.get("type") == "number")
DURATION_FIELDS = sorted(k for k, v in SPEC_FIELDS.items() if v.get("pattern") == DURATION_RE.pattern)


def spec_with(field: str, value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": "mnist", "candidateVersion": 2}
    *sections, leaf = field.split(".")
    target = spec
    for s in sections:
        target = target.setdefault(s, {})
    target[leaf] = value
    return spec


def test_every_number_and_integer_in_the_spec_has_both_bounds_and_every_string_a_bounded_length():
    for name, prop in SPEC_FIELDS.items():
        t = prop.get("type")
        if t in ("number", "integer"):
            assert "minimum" in prop and "maximum" in prop, f"{name}: unbounded {t}"
        elif t == "string":
            assert "enum" in prop or "maxLength" in prop, f"{name}: a string without maxLength"
        elif t == "array":
            assert "maxItems" in prop and {"minimum", "maximum"} <= set(prop["items"]), f"{name}: unbounded array"
    assert len(NUMBER_FIELDS) == 6 and len(DURATION_FIELDS) == 7


def test_the_latency_bound_is_the_top_of_the_frontends_histogram():
    """A p99 threshold above the histogram's last finite bucket could never fail a check (p99 reads as that bound)."""
    from mnist_operator.analysis import LATENCY_BUCKETS
    from mnist_operator.spec import MAX_LATENCY_P99_MS

    assert SPEC_FIELDS["analysis.maxLatencyP99Ms"]["maximum"] == MAX_LATENCY_P99_MS == LATENCY_BUCKETS[-2] * 1000
    with pytest.raises(SpecError, match="outside"):
        parse_spec(spec_with("analysis.maxLatencyP99Ms", MAX_LATENCY_P99_MS + 1))


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_by_the_code_and_infinities_by_the_schema(field, value):
    """A NaN threshold passes every range check written with < and > and then can never fail an analysis.

    NaN cannot reach the API server at all (JSON has no NaN, so kubectl cannot send it); local mode reads YAML,
    which has `.nan`, and the code refuses it by name. Infinities are refused by the schema's maximum/minimum too.
    """
    spec = spec_with(field, value)
    with pytest.raises(SpecError, match=field.replace(".", r"\.") + ".*(finite|outside)"):
        parse_spec(spec)
    if value == value:  # not NaN: jsonschema, like the API server, refuses it by the bounds
        assert list(validator(SPEC_SCHEMA).iter_errors(spec)), f"{field}={value} passed the schema"


def test_a_nan_threshold_never_reaches_an_analysis():
    d = decide(spec_with("analysis.maxErrorRate", float("nan")), None, Observation(rollout=KEY), START)
    assert d.status["phase"] == "Failed" and d.status["reason"] == "InvalidSpec"
    assert "analysis.maxErrorRate" in d.status["message"] and d.routing is None and d.serving is None


@pytest.mark.parametrize("field", DURATION_FIELDS)
def test_every_duration_field_has_the_codes_pattern_and_length(field):
    from mnist_operator.spec import MAX_DURATION_CHARS

    assert SPEC_FIELDS[field]["maxLength"] == MAX_DURATION_CHARS


ABSURD_DURATIONS = {
    "9" * 400 + "h": "both",  # float() of it is inf: an endless stage
    "1s" * 1000: "both",  # 2000 characters of regex work per check, for a 1000 s duration
    "1234567h": "both",  # 7 digits: over the pattern's bound
    "999999h": "code",  # 114 years: the schema's pattern allows it, the 720h limit does not
    "721h": "code",
    "30s\n": "code",  # Python's `$` matches before a trailing newline; the API server's does not, nor does the code
    "0s": "code",  # zero: never held, the schema cannot say it
    "1.5.5s": "both",
    "1s2s3s4s5s": "both",  # a fifth part
}


@pytest.mark.parametrize("text", sorted(ABSURD_DURATIONS), ids=lambda t: repr(t[:12]))
def test_absurd_durations_are_refused_and_the_schema_refuses_what_it_can(text):
    for field in DURATION_FIELDS:
        spec = spec_with(field, text)
        with pytest.raises(SpecError, match=field.replace(".", r"\.")) as info:
            parse_spec(spec)
        assert len(str(info.value)) < 300, "a message quoting input must stay short"
        schema_refuses = bool(list(validator(SPEC_SCHEMA).iter_errors(spec)))
        if ABSURD_DURATIONS[text] == "both":
            assert schema_refuses, f"{field}={text[:20]!r} passed the schema"


def test_the_longest_allowed_durations_are_accepted():
    for field in DURATION_FIELDS:
        for text in ("720h", "719h59m59s999ms", "0.001ms", "1h30m"):
            spec = spec_with(field, text)
            parse_spec(spec)
            validator(SPEC_SCHEMA).validate(spec)


@pytest.mark.parametrize("field, value", [
    ("candidateVersion", 2**53), ("stableVersion", 2**63), ("analysis.minRequests", 10**9 + 1),
    ("abtest.minSamples", 10**18), ("analysis.minFeedback", 10**9 + 1), ("candidateVersion", 1e300),
])
def test_counts_and_versions_have_an_upper_bound_in_code_and_schema(field, value):
    spec = spec_with(field, value)
    with pytest.raises(SpecError, match="outside"):
        parse_spec(spec)
    assert list(validator(SPEC_SCHEMA).iter_errors(spec))


def test_every_bound_is_exact_as_the_api_servers_float64_and_int64():
    """The API server holds minimum/maximum as float64 and converts an integer field's to int64: 2^63 - 1 became
    2^63 and the API server refused every ModelRollout ("Maximum boundary value must be of type integer")."""
    from mnist_operator.spec import MAX_VERSION

    assert SPEC_FIELDS["candidateVersion"]["maximum"] == SPEC_FIELDS["stableVersion"]["maximum"] == MAX_VERSION
    for name, prop in SPEC_FIELDS.items():
        for bound in ("minimum", "maximum"):
            if prop.get("type") == "integer" and bound in prop:
                assert float(prop[bound]) == prop[bound] and -(2**63) <= float(prop[bound]) < 2**63, name


def test_crd_sticky_header_pattern_is_the_codes():
    from mnist_operator.spec import STICKY_HEADER_RE

    prop = SPEC_FIELDS["abtest.stickyHeader"]
    assert prop["pattern"] == STICKY_HEADER_RE.pattern and prop["maxLength"] == 128
    for field in DURATION_FIELDS:
        assert SPEC_FIELDS[field]["pattern"] == DURATION_RE.pattern, field
