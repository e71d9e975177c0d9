"""The two files the operator drives: routing.json (read by the frontend) and the TF Serving model config.

The demo writes their starting state (everything on the stable version) before anything starts, rendered by the
operator's own code (docs/CONTRACTS.md); after that only the operator writes them.
"""

from __future__ import annotations

from pathlib import Path

from frontend.errors import ConfigError
from frontend.routing import Route, parse_routing_text
from mnist_operator.local import atomic_write
from mnist_operator.render import RoutingState, ServingState, render_model_config, render_routing


def write_initial_state(routing_path: Path, serving_path: Path, model: str, base_path: Path, stable: int) -> None:
    """Everything on `stable`: the state a rollout starts from.

    The serving config loads `stable` but labels nothing yet: TF Serving refuses, at start, a label for a version
    it has not loaded (load first, label second); the frontend routes by exact version and needs no label.
    """
    atomic_write(routing_path, render_routing(RoutingState.single(model, stable), generation=1))
    atomic_write(serving_path, render_model_config([ServingState(model, str(base_path), (stable,))]))


def read_routes(routing_path: Path, model: str) -> tuple[Route, ...]:
    """The routes of the routing file now, as the frontend reads them; () while it is missing or being replaced."""
    try:
        return parse_routing_text(routing_path.read_bytes(), model).routes
    except (OSError, ConfigError):
        return ()
