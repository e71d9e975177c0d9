"""The ModelRollout CRD as a real kube-apiserver enforces it (tests/support/cluster: one control plane per session,
the chart's CRDs installed): it accepts exactly the specs spec.parse_spec accepts, at the edges of every bound the
schema and its CEL rules state. jsonschema (test_crd.py) knows neither CEL nor the API server's RE2 `$`.

Every request is a server-side dry run: nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mnist_operator.spec import DURATION_RE, MAX_VERSION, SpecError, parse_spec

from tests.operator.test_crd import DURATION_FIELDS, spec_with

GROUP, VERSION, PLURAL = "ml.mnist-platform.dev", "v1alpha1", "modelrollouts"


def api_server_verdict(cluster: Any, admin_api: kubernetes.client.ApiClient, spec: dict[str, Any]) -> str | None:
    """None when the API server would store this ModelRollout, else its message."""
    api = kubernetes.client.CustomObjectsApi(admin_api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": "edge"}, "spec": spec}
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, body, dry_run="All")
    except kubernetes.client.ApiException as exc:
        assert exc.status == 422, exc.body
        return json.loads(exc.body)["message"]
    return None


def code_accepts(spec: dict[str, Any]) -> bool:
    try:
        parse_spec(spec)
    except SpecError:
        return False
    return True


EDGES: list[tuple[str, Any, str | None]] = [  # (field, value, a word of the API server's message; None: accepted)
    ("candidateVersion", MAX_VERSION, None),
    ("candidateVersion", MAX_VERSION + 1, "less than or equal to"),
    ("stableVersion", 2, "stableVersion must differ from candidateVersion"),
    ("stableVersion", 1, None),
    ("model", "mnist\n", "should match"),  # RE2's `$` is the end of the text, as the code's fullmatch
    ("abtest.stickyHeader", "X-User-Id", None),
    ("abtest.stickyHeader", "User Id", "should match"),
    ("abtest.stickyHeader", "X-User-Id\n", "should match"),
    ("abtest.stickyHeader", "a" * 128, None),
    ("abtest.stickyHeader", "a" * 129, "128"),
    ("abtest.stickyHeader", "!#$%&'*+-.^_`|~09azAZ", None),
    ("analysis.maxLatencyP99Ms", 10000, None),
    ("analysis.maxLatencyP99Ms", 10000.5, "less than or equal to"),
    ("analysis.minRequests", 10**9, None),
    ("analysis.minRequests", 10**9 + 1, "less than or equal to"),
    ("canary.steps", [10, 50, 100], None),
    ("canary.steps", [100], None),
    ("canary.steps", [50, 50, 100], "strictly increasing"),
    ("canary.steps", [50, 10], "strictly increasing"),
    *[(field, text, verdict) for field in DURATION_FIELDS for text, verdict in (
        ("720h", None), ("0.001ms", None), ("1h30m", None), ("43200m", None), ("720h1ms", "at most 720h"),
        ("0s", "at most 720h"), ("999999h", "at most 720h"), ("30s\n", "should match"),
        ("1s2s3s4s5s", "should match"), ("1" * 33 + "s", "32"))],
]


@pytest.mark.parametrize("field, value, refused_by", EDGES, ids=lambda v: repr(v)[:24])
def test_the_api_server_accepts_exactly_what_the_code_accepts_at_every_edge(cluster, admin_api, field, value,
                                                                          refused_by):
    spec = spec_with(field, value)
    verdict = api_server_verdict(cluster, admin_api, spec)
    if refused_by is None:
        assert verdict is None and code_accepts(spec), verdict
    else:
        assert verdict is not None and refused_by in verdict, verdict
        assert not code_accepts(spec)


DURATION_TEXT = st.one_of(
    st.from_regex(DURATION_RE, fullmatch=True),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 3_000_000), st.sampled_from(["ms", "s", "m", "h"])),
    st.builds(lambda h, ms: f"{h}h{ms}ms", st.integers(718, 721), st.integers(0, 7_200_000)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(text=DURATION_TEXT, field=st.sampled_from(DURATION_FIELDS))
def test_the_api_server_and_the_code_agree_on_every_duration(cluster, admin_api, text, field):
    """The CRD's pattern, length and CEL rule (Go's time.ParseDuration) against spec.parse_duration (floats)."""
    spec = spec_with(field, text)
    assert (api_server_verdict(cluster, admin_api, spec) is None) == code_accepts(spec), text
