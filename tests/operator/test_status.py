"""The typed status keeps the stored JSON exactly: to_json(from_json(x)) == x for any status, written or foreign."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mnist_operator.status import Phase, Stage, Status

from tests.operator.helpers import Behaviour, World
from tests.operator.test_properties import apply, scenarios

KNOWN_KEYS = ["phase", "stage", "reason", "message", "plan", "model", "strategy", "stableVersion", "candidateVersion",
              "initial", "blockedBy", "step", "candidateWeight", "shadowPercent", "stickyHeader", "startedAt",
              "stageStartedAt", "stepStartedAt", "pausedAt", "finishedAt", "lastCheckAt", "lastPassAt",
              "inconclusiveSince", "replicaWaitSince", "baseline", "failedChecks", "checks", "lastVerdict", "totals",
              "lastAnalysis", "outcome", "routingGeneration", "observedGeneration", "conditions"]

# JSON values without null: what a merge patch can store (merge_patch.py).
json_values = st.recursive(
    st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
enum_like = st.sampled_from([*Phase, *Stage]).map(str) | st.text(max_size=12)
stored_statuses = st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=12),
    json_values, max_size=12,
).flatmap(lambda d: st.fixed_dictionaries(
    {k: (enum_like if k in ("phase", "stage", "outcome") else st.just(v)) for k, v in d.items()}))


def test_every_key_decide_writes_is_a_field():
    assert Status().to_json() == {}  # an empty status writes nothing
    full = Status.from_json(dict.fromkeys(KNOWN_KEYS, 1))
    assert full.extra == {} and sorted(full.to_json()) == sorted(KNOWN_KEYS)


def test_phase_stage_and_outcome_become_enums_and_are_written_back_as_plain_strings():
    s = Status.from_json({"phase": "RolledBack", "stage": "Done", "outcome": "Promoted"})
    assert (s.phase, s.stage, s.outcome) == (Phase.ROLLED_BACK, Stage.DONE, Phase.PROMOTED)
    assert all(type(v) is str for v in s.to_json().values())
    assert json.dumps(s.to_json(), sort_keys=True) == '{"outcome": "Promoted", "phase": "RolledBack", "stage": "Done"}'


def test_a_foreign_key_or_value_is_kept_as_it_came():
    # .status preserves unknown fields (the CRD), and a stage outside the enum is not the operator's to rewrite.
    s = Status.from_json({"stage": "Custom", "note": {"by": "someone"}})
    assert s.stage == "Custom" and s.extra == {"note": {"by": "someone"}}
    assert s.to_json() == {"stage": "Custom", "note": {"by": "someone"}}


@settings(max_examples=300, deadline=None)
@given(stored_statuses)
def test_any_stored_status_round_trips(status):
    assert Status.from_json(status).to_json() == status


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_status_decide_produces_round_trips_byte_for_byte(scenario):
    spec, candidate, script = scenario
    w = World(spec, behaviours={1: Behaviour(), 2: candidate})
    for action, dt in script:
        apply(w, action)
        d = w.tick(dt)
        again = Status.from_json(json.loads(json.dumps(d.status))).to_json()
        assert json.dumps(again, sort_keys=True) == json.dumps(d.status, sort_keys=True)
