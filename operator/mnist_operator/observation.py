"""What the shell gathers before a decision: facts about model versions, the routing in place, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnist_operator import analysis as an


@dataclass(frozen=True)
class CandidateInfo:
    """What the world says about one model version (the candidate, or the stable one in Observation.versions)."""

    exists: bool = False
    test_accuracy: float | None = None
    available: bool = False  # AVAILABLE on every ready TF Serving replica (or the model store check without one)
    detail: str = ""  # where the facts came from, for messages


@dataclass(frozen=True)
class Observation:
    """Facts gathered by the shell before a decision (no I/O happens inside decide)."""

    rollout: str  # "namespace/name"
    generation: int = 1
    metrics: an.Snapshot | None = None
    candidate: CandidateInfo = field(default_factory=CandidateInfo)
    serving_base_path: str = "/models/mnist"
    current_routing: dict[str, Any] | None = None  # the routing document in place now
    blocked_by: str | None = None  # another rollout that holds this model
    # Facts about the stable version (stable_to_check), gathered like the candidate's: the gate routes nothing to a
    # version that is not published and AVAILABLE. A version missing here counts as not found.
    versions: dict[int, CandidateInfo] = field(default_factory=dict)
