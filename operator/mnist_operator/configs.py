"""Desired configs from a status alone: TF Serving's model config and the routing document each stage implies,
what a finished rollout leaves behind, and what deleting an unfinished one restores. Rendered from the status and
nothing else, so a restarted operator writes the same bytes and traffic never jumps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mnist_operator.render import Route, RoutingState, ServingState
from mnist_operator.status import TERMINAL, TRAFFIC_STAGES, Phase, Stage, Status, value_or

CANDIDATE_LABEL = {Stage.CANARY: "canary", Stage.ABTEST: "candidate", Stage.SHADOW: "shadow"}


def as_status(status: Status | dict[str, Any] | None) -> Status:
    return status if isinstance(status, Status) else Status.from_json(status)


def desired_configs(status: Status | dict[str, Any], rollout: str,
                    base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """The model config and routing implied by a status; (None, None) where this rollout must not write."""
    st = as_status(status)
    stage = st.stage
    model, stable, cand = st.model, st.stable_version, st.candidate_version
    if st.phase in TERMINAL or stage in (None, Stage.WAITING) or model is None:
        return None, None
    if stable is None:
        return _initial_configs(st, rollout, base_path)
    only_stable_routing = RoutingState(model=model, strategy="single", routes=(Route(stable, "stable", 100),),
                                       rollout=rollout)
    if stage == Stage.GATE:
        return ServingState(model, base_path, (stable,), {"stable": stable}), only_stable_routing
    if stage == Stage.LOADING:
        return ServingState(model, base_path, (stable, cand), {"stable": stable}), only_stable_routing
    if stage == Stage.ROLLING_BACK:
        return ServingState(model, base_path, (stable, cand), {"stable": stable}), only_stable_routing
    if stage == Stage.PROMOTING:
        routing = RoutingState(model=model, strategy="single", routes=(Route(cand, "stable", 100),), rollout=rollout)
        return ServingState(model, base_path, (stable, cand), {"stable": cand}), routing
    if stage in TRAFFIC_STAGES:
        label = CANDIDATE_LABEL[stage]
        serving = ServingState(model, base_path, (stable, cand), {"stable": stable, label: cand})
        if stage == Stage.SHADOW:
            routing = RoutingState(model=model, strategy="shadow", routes=(Route(stable, "stable", 100),),
                                   shadow=(cand, int(value_or(st.shadow_percent, 100))), rollout=rollout)
        else:
            w = int(value_or(st.candidate_weight, 0))
            routes = tuple(r for r in (Route(stable, "stable", 100 - w), Route(cand, label, w)) if r.weight > 0)
            sticky = st.sticky_header if stage == Stage.ABTEST else None
            routing = RoutingState(model=model, strategy="abtest" if stage == Stage.ABTEST else "canary", routes=routes,
                                   sticky_header=sticky, rollout=rollout)
        return serving, routing
    return None, None


def _initial_configs(st: Status, rollout: str, base_path: str) -> tuple[ServingState | None, RoutingState | None]:
    """An initial rollout (nothing served before): load the candidate alone, then label it stable and route to it."""
    model, cand, stage = st.model, st.candidate_version, st.stage
    if not st.initial or cand is None:
        return None, None
    if stage == Stage.LOADING:  # load first: no label may name a version TF Serving has not loaded yet
        return ServingState(model, base_path, (cand,), {}), None
    if stage == Stage.PROMOTING:
        return (ServingState(model, base_path, (cand,), {"stable": cand}),
                RoutingState(model=model, strategy="single", routes=(Route(cand, "stable", 100),), rollout=rollout))
    return None, None  # Gate: nothing serves and nothing is written yet


def final_configs(status: Status | dict[str, Any], rollout: str,
                  base_path: str) -> tuple[ServingState, RoutingState] | None:
    """What a finished rollout leaves behind (also what deletion of an unfinished one restores)."""
    st = as_status(status)
    model, stable, cand = st.model, st.stable_version, st.candidate_version
    promoted = st.phase == Phase.PROMOTED
    if model is None or (stable is None and not promoted) or (promoted and cand is None):
        return None  # an initial rollout that did not finish has no stable version to go back to: touch nothing
    keep = cand if promoted else stable
    return (ServingState(model, base_path, (keep,), {"stable": keep}),
            RoutingState(model=model, strategy="single", routes=(Route(keep, "stable", 100),), rollout=rollout))


def deleted_configs(status: Status | dict[str, Any], rollout: str,
                    base_path: str) -> tuple[ServingState, RoutingState] | None:
    """Configs to write when an unfinished rollout is deleted: everything back to stable; None: touch nothing."""
    st = as_status(status)
    if st.phase in TERMINAL or st.stage in (None, Stage.WAITING):
        return None
    return final_configs(replace(st, phase=Phase.ROLLED_BACK), rollout, base_path)
