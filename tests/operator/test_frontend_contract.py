"""Contract with the frontend: every spec the operator accepts renders routing files the frontend accepts.

The frontend's own parser (services/frontend/frontend/routing.py) is the reference: the operator does not import
the frontend at run time, so these tests are what keeps spec.py's rules and the frontend's equal.
"""

from __future__ import annotations

import json
import string

import pytest
from frontend.errors import ConfigError
from frontend.routing import parse_routing, parse_routing_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mnist_operator.decide import ABTEST, CANARY, GATE, LOADING, PROMOTING, ROLLING_BACK, SHADOW, desired_configs
from mnist_operator.render import render_routing
from mnist_operator.spec import SpecError, parse_spec

from tests.operator.helpers import KEY
from tests.operator.test_crd import SPEC_SCHEMA, from_schema

ROUTING = {"model": "mnist", "strategy": "abtest", "routes": [{"version": 1, "label": "stable", "weight": 50},
                                                              {"version": 2, "label": "candidate", "weight": 50}]}


def frontend_accepts_header(name: str) -> bool:
    try:
        parse_routing({**ROUTING, "sticky_header": name}, "mnist")
    except ConfigError:
        return False
    return True


def operator_accepts_header(name: str) -> bool:
    try:
        parse_spec({"model": "mnist", "candidateVersion": 2, "strategy": "abtest", "abtest": {"stickyHeader": name}})
    except SpecError:
        return False
    return True


TOKEN = string.ascii_letters + string.digits + "!#$%&'*+.^_`|~-"
HEADER_NAMES = st.one_of(
    st.text(alphabet=TOKEN, min_size=0, max_size=140),  # around the 1-128 length bound
    st.text(alphabet=TOKEN + ' \t\n\r:;,"()/[]{}=?@\\\x00\x7féÜ', max_size=40),  # the token alphabet and near misses
    st.text(max_size=40),  # anything
)


@settings(max_examples=400, deadline=None)
@given(name=HEADER_NAMES)
def test_the_operator_accepts_exactly_the_sticky_headers_the_frontend_accepts(name):
    """The issue's case: `stickyHeader: User Id` passed the CRD and spec.py, and every frontend refused the routing."""
    assert operator_accepts_header(name) == frontend_accepts_header(name), repr(name)


@pytest.mark.parametrize("name", ["User Id", "X-User-Id ", "", "X:User", "X-Üser", "a" * 129, "X-User-Id\n"])
def test_sticky_headers_the_frontend_refuses_are_invalid_specs(name):
    assert not operator_accepts_header(name)


def _statuses(spec: dict) -> list[dict]:
    """A status in every stage that writes routing, with the weights the spec can produce."""
    p = parse_spec(spec)
    base = {"phase": "Progressing", "model": p.model, "candidateVersion": p.candidate_version,
            "stableVersion": p.stable_version or (p.candidate_version + 1)}
    out = [dict(base, stage=s) for s in (GATE, LOADING, PROMOTING, ROLLING_BACK)]
    out += [dict(base, stage=CANARY, candidateWeight=w, step=i) for i, w in enumerate(p.canary.steps)]
    out.append(dict(base, stage=ABTEST, candidateWeight=p.abtest.split, stickyHeader=p.abtest.sticky_header))
    out.append(dict(base, stage=SHADOW, shadowPercent=p.shadow.percent))
    out.append(dict(base, stableVersion=None, initial=True, stage=PROMOTING))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=from_schema(SPEC_SCHEMA))
def test_every_routing_file_rendered_from_an_accepted_spec_is_accepted_by_the_frontend(spec):
    try:
        parse_spec(spec)
    except SpecError:
        return  # refused: InvalidSpec, nothing is written
    for status in _statuses(spec):
        _, routing = desired_configs({k: v for k, v in status.items() if v is not None}, KEY, "/models/x")
        if routing is None:
            continue
        text = render_routing(routing, 7)
        parsed = parse_routing_text(text, spec["model"])
        assert parsed.generation == 7 and json.loads(text)["rollout"] == KEY
