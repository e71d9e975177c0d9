"""Pure rendering of the two files the operator owns: TF Serving's model config and the frontend's routing.json.

The one writer of both (docs/CONTRACTS.md): the demo, the benchmarks and the test harnesses render through here;
the routing schema itself is frontend.routing.parse_routing's, which tests/operator/test_render.py checks against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServingState:
    """Which versions TF Serving loads for one model, and which labels point at them."""

    model: str
    base_path: str
    versions: tuple[int, ...]
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    version: int
    label: str
    weight: int


@dataclass(frozen=True)
class RoutingState:
    """The routing config that frontend.routing.parse_routing reads, without the generation (that is stamped when written)."""

    model: str
    strategy: str  # canary | abtest | shadow | single
    routes: tuple[Route, ...]
    sticky_header: str | None = None
    shadow: tuple[int, int] | None = None  # (version, percent)
    rollout: str | None = None

    def weight_of(self, version: int) -> int:
        return sum(r.weight for r in self.routes if r.version == version)

    @classmethod
    def single(cls, model: str, version: int, rollout: str | None = None) -> RoutingState:
        """All traffic to one version: what serves before and after a rollout (and what the demo starts from)."""
        return cls(model=model, strategy="single", routes=(Route(version, "stable", 100),), rollout=rollout)


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid protobuf text-format string


def render_model_config(states: list[ServingState]) -> str:
    """ModelServerConfig in protobuf text format (the ConfigMap key `models.config`)."""
    lines = ["model_config_list {"]
    for s in states:
        lines += ["  config {", f"    name: {_quote(s.model)}", f"    base_path: {_quote(s.base_path)}",
                  '    model_platform: "tensorflow"', "    model_version_policy {", "      specific {"]
        lines += [f"        versions: {v}" for v in sorted(set(s.versions))]
        lines += ["      }", "    }"]
        for label, version in sorted(s.labels.items()):
            lines.append(f"    version_labels {{ key: {_quote(label)} value: {version} }}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def routing_document(r: RoutingState, generation: int) -> dict[str, Any]:
    return {
        "model": r.model,
        "strategy": r.strategy,
        "routes": [{"version": x.version, "label": x.label, "weight": x.weight} for x in r.routes],
        "sticky_header": r.sticky_header,
        "shadow": None if r.shadow is None else {"version": r.shadow[0], "percent": r.shadow[1]},
        "rollout": r.rollout,
        "generation": generation,
    }


def render_routing(r: RoutingState, generation: int) -> str:
    """routing.json text (stable key order, so an unchanged config is byte-identical)."""
    return json.dumps(routing_document(r, generation), indent=2) + "\n"


def stable_version_of_routing(doc: dict[str, Any] | None) -> int | None:
    """The version serving as stable in an existing routing document (the `stableVersion` default)."""
    if not isinstance(doc, dict):
        return None
    routes = doc.get("routes") or []
    for label in ("stable", None):
        for r in routes:
            if isinstance(r, dict) and (label is None or r.get("label") == label) and isinstance(r.get("version"), int):
                if label is None and doc.get("strategy") not in ("single", None):
                    continue
                return r["version"]
    return None
