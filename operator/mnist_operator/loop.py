"""One tick, shared by both shells: gather the facts the status needs -> decide -> apply.

The kopf shell (handlers.py) and the local shell (local.py) differ only in where facts come from and where the
decision goes; each gives an Adapter for that. Which facts a tick needs is the core's (decide.facts_needed), so
both shells gather the same facts at the same stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mnist_operator import decide as core
from mnist_operator.analysis import Snapshot
from mnist_operator.observation import CandidateInfo, Observation
from mnist_operator.spec import SpecError, parse_spec


class Adapter(Protocol):
    """Where one shell reads facts and writes decisions."""

    def other_rollouts(self, model: str) -> list[tuple[str, str, str | None]]:
        """Every rollout of the model as (key, creationTimestamp, phase), for blocking_rollout."""

    def routing(self, model: str) -> dict[str, Any] | None:
        """The routing document in place, None when there is none (or it is not a JSON object)."""

    def version_facts(self, model: str, wanted: list[int]) -> dict[int, CandidateInfo]:
        """Gate facts about each version (called whenever the candidate's facts are needed, even for none)."""

    def metrics(self, model: str) -> Snapshot:
        """A metrics snapshot of the frontends."""

    def base_path(self, model: str) -> str:
        """The model's base_path in TF Serving's model config."""

    def apply(self, before: dict[str, Any], decision: core.Decision) -> None:
        """Write the configs (model config first, routing second) and store the status."""


@dataclass(frozen=True)
class Rollout:
    """One rollout as the shell read it."""

    key: str  # "namespace/name"
    spec: dict[str, Any]
    status: dict[str, Any] | None
    generation: int = 1
    created: str = ""  # creationTimestamp: the order of rollouts of one model


def stable_version_to_check(spec: dict[str, Any], routing: dict[str, Any] | None) -> int | None:
    """The stable version whose facts the gate needs (decide.stable_to_check), None when none is to be checked: an
    invalid spec (decide() refuses it), or a stable version that is the candidate (the gate refuses that)."""
    try:
        parsed = parse_spec(spec)
    except SpecError:
        return None
    stable = core.stable_to_check(parsed, routing)
    return None if stable == parsed.candidate_version else stable


def gather(adapter: Adapter, rollout: Rollout) -> Observation:
    """The facts decide() needs for this rollout now (decide.facts_needed), and no others."""
    spec, status = rollout.spec, rollout.status or {}
    need = core.facts_needed(status)
    model = spec.get("model") if isinstance(spec.get("model"), str) else None
    blocked = routing = metrics = None
    candidate = CandidateInfo()
    versions: dict[int, CandidateInfo] = {}
    if model:
        if need.arbitration:
            blocked = core.blocking_rollout(rollout.key, rollout.created, status.get("phase"),
                                            adapter.other_rollouts(model))
        routing = adapter.routing(model)
        if need.candidate:
            cv = spec.get("candidateVersion")
            cand = cv if isinstance(cv, int) and cv > 0 else None
            stable = stable_version_to_check(spec, routing) if need.stable else None
            facts = adapter.version_facts(model, [v for v in (cand, stable) if v is not None])
            if cand is not None:
                candidate = facts[cand]
            if stable is not None:
                versions = {stable: facts[stable]}
        if need.metrics:
            metrics = adapter.metrics(model)
    return Observation(rollout=rollout.key, generation=rollout.generation, metrics=metrics, candidate=candidate,
                       serving_base_path=adapter.base_path(model or "model"), current_routing=routing,
                       blocked_by=blocked, versions=versions)


Decide = Callable[[dict[str, Any], dict[str, Any] | None, Observation, float], core.Decision]


def tick(adapter: Adapter, rollout: Rollout, now: float, decide: Decide = core.decide) -> core.Decision:
    """Gather, decide, apply; `decide` is replaceable so a shell can name its own input in an error."""
    obs = gather(adapter, rollout)
    decision = decide(rollout.spec, rollout.status, obs, now)
    adapter.apply(rollout.status or {}, decision)
    return decision
