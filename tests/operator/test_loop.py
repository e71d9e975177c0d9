"""The shared tick: each shell gathers exactly the facts the core asks for (facts_needed), then decides and applies."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from mnist_operator import analysis as an
from mnist_operator import decide as core
from mnist_operator import loop
from mnist_operator.handlers import KubeShell
from mnist_operator.local import LocalShell
from mnist_operator.observation import CandidateInfo

SPEC = {"model": "mnist", "candidateVersion": 2, "strategy": "canary"}
ROUTING = {"model": "mnist", "strategy": "single", "routes": [{"version": 1, "label": "stable", "weight": 100}],
           "generation": 3}


class Recorder:
    """An adapter that answers with fixed facts and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        self.applied: list[tuple[dict[str, Any], core.Decision]] = []

    def other_rollouts(self, model: str) -> list[tuple[str, str, str | None]]:
        self.asked.append(("other_rollouts", model))
        return [("default/older", "2026-01-01T00:00:00Z", "Progressing")]

    def routing(self, model: str) -> dict[str, Any] | None:
        self.asked.append(("routing", model))
        return dict(ROUTING)

    def version_facts(self, model: str, wanted: list[int]) -> dict[int, CandidateInfo]:
        self.asked.append(("version_facts", tuple(wanted)))
        return {v: CandidateInfo(True, 0.98, True, f"v{v}") for v in wanted}

    def metrics(self, model: str) -> an.Snapshot:
        self.asked.append(("metrics", model))
        return an.Snapshot(taken_at=0.0, errors=["none here"])

    def base_path(self, model: str) -> str:
        return f"/models/{model}"

    def apply(self, before: dict[str, Any], decision: core.Decision) -> None:
        self.applied.append((before, decision))


def asked(status: dict[str, Any] | None, spec: dict[str, Any] = SPEC) -> list[str]:
    r = Recorder()
    loop.gather(r, loop.Rollout("default/r", spec, status, created="2026-02-01T00:00:00Z"))
    return [what for what, _ in r.asked]


@pytest.mark.parametrize(("status", "expected"), [
    (None, ["other_rollouts", "routing", "version_facts"]),  # a new rollout: its turn, the gate's facts
    ({"phase": "Pending", "stage": "Waiting"}, ["other_rollouts", "routing", "version_facts"]),
    ({"phase": "Progressing", "stage": "Gate"}, ["routing", "version_facts"]),
    ({"phase": "Progressing", "stage": "Loading"}, ["routing", "version_facts", "metrics"]),
    ({"phase": "Progressing", "stage": "Canary"}, ["routing", "version_facts", "metrics"]),
    ({"phase": "Paused", "stage": "ABTest"}, ["routing", "version_facts", "metrics"]),
    ({"phase": "Progressing", "stage": "Promoting"}, ["routing", "version_facts", "metrics"]),
    ({"phase": "Progressing", "stage": "RollingBack"}, ["routing", "metrics"]),
    ({"phase": "Promoted", "stage": "Done"}, ["other_rollouts", "routing"]),
])
def test_each_stage_gathers_what_the_core_asks_for_and_nothing_else(status, expected):
    assert asked(status) == expected
    need = core.facts_needed(status or {})
    assert need.arbitration == ("other_rollouts" in expected) and need.metrics == ("metrics" in expected)


def test_the_gate_asks_about_the_candidate_and_the_stable_version_it_would_route_to():
    r = Recorder()
    obs = loop.gather(r, loop.Rollout("default/r", SPEC, {"phase": "Progressing", "stage": "Gate"}))
    assert ("version_facts", (2, 1)) in r.asked
    assert obs.candidate.detail == "v2" and list(obs.versions) == [1] and obs.current_routing == ROUTING
    assert obs.blocked_by is None and obs.metrics is None and obs.serving_base_path == "/models/mnist"
    r = Recorder()
    loop.gather(r, loop.Rollout("default/r", SPEC, {"phase": "Progressing", "stage": "Canary"}))
    assert ("version_facts", (2,)) in r.asked, "only the gate checks the stable version"


def test_an_older_active_rollout_of_the_model_blocks_a_new_one():
    obs = loop.gather(Recorder(), loop.Rollout("default/r", SPEC, None, created="2026-02-01T00:00:00Z"))
    assert obs.blocked_by == "default/older"


def test_a_spec_without_a_model_gathers_nothing():
    # decide() refuses the spec; no ConfigMap name can be made without a model.
    assert asked(None, {"candidateVersion": 2}) == []
    assert asked({"phase": "Progressing", "stage": "Gate"}, {"model": "mnist", "candidateVersion": "two"}) == \
        ["routing", "version_facts"]


def test_a_tick_applies_the_decision_over_the_status_it_started_from():
    r = Recorder()
    d = loop.tick(r, loop.Rollout("default/r", SPEC, None, generation=4, created="2026-02-01T00:00:00Z"), 1000.0)
    assert r.applied == [({}, d)]
    assert d.status["phase"] == "Pending" and d.status["reason"] == "WaitingForRollout"
    assert d.status["observedGeneration"] == 4


@pytest.mark.parametrize("shell", [KubeShell, LocalShell])
def test_both_shells_are_adapters_of_the_one_loop(shell):
    wanted = {name for name, _ in inspect.getmembers(loop.Adapter, inspect.isfunction) if not name.startswith("_")}
    assert wanted == {"other_rollouts", "routing", "version_facts", "metrics", "base_path", "apply"}
    for name in wanted:
        assert list(inspect.signature(getattr(shell, name)).parameters)[1:] == \
            list(inspect.signature(getattr(loop.Adapter, name)).parameters)[1:]
