"""The routing config (routing.json, which the operator writes; parse_routing owns its schema, docs/CONTRACTS.md):
pure parsing/validation and the per-request route choice."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from frontend.errors import ConfigError

STRATEGIES = ("single", "canary", "abtest", "shadow")
LABELS = ("stable", "canary", "candidate", "shadow")
DEFAULT_ROUTE = "default"
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")  # an HTTP token; fullmatch (`$` passes "x\n")
_BUCKETS = 10_000  # sticky users are spread over basis points of the weight range


@dataclass(frozen=True)
class Route:
    version: int
    label: str
    weight: int


@dataclass(frozen=True)
class Shadow:
    version: int
    percent: int


@dataclass(frozen=True)
class RoutingConfig:
    model: str
    strategy: str
    routes: tuple[Route, ...]
    sticky_header: str | None = None
    shadow: Shadow | None = None
    rollout: str | None = None
    generation: int = 0

    @property
    def versions(self) -> set[int]:
        """Every version this config can send a request to (routes and shadow)."""
        found = {route.version for route in self.routes if route.weight > 0}
        if self.shadow is not None and self.shadow.percent > 0:
            found.add(self.shadow.version)
        return found


@dataclass(frozen=True)
class Decision:
    """Where one request goes: `version` None means the backend's default (latest) version."""

    version: int | None
    route: str
    shadow_version: int | None = None


def _int(value: Any, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{what} must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return value


def parse_routing(data: Any, expected_model: str) -> RoutingConfig:
    """Validate a decoded routing.json; any problem raises ConfigError with a message naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("routing config must be a JSON object")
    model = data.get("model")
    if model != expected_model:
        raise ConfigError(f"routing config is for model {model!r}, this frontend serves {expected_model!r}")
    strategy = data.get("strategy")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    raw_routes = data.get("routes")
    if not isinstance(raw_routes, list) or not raw_routes:
        raise ConfigError("routes must be a non-empty list")
    routes = []
    for index, raw in enumerate(raw_routes):
        if not isinstance(raw, dict):
            raise ConfigError(f"routes[{index}] must be an object")
        label = raw.get("label")
        if label not in LABELS:
            raise ConfigError(f"routes[{index}].label must be one of {', '.join(LABELS)}, got {label!r}")
        routes.append(Route(version=_int(raw.get("version"), f"routes[{index}].version", 1),
                            label=label, weight=_int(raw.get("weight"), f"routes[{index}].weight", 0, 100)))
    if sum(route.weight for route in routes) != 100:
        raise ConfigError(f"route weights must sum to 100, got {sum(route.weight for route in routes)}")
    if len({route.label for route in routes}) != len(routes):
        raise ConfigError("route labels must be unique")
    if strategy == "single" and len(routes) != 1:
        raise ConfigError("strategy 'single' takes exactly one route")
    sticky = data.get("sticky_header")
    if sticky is not None and (not isinstance(sticky, str) or not _HEADER_NAME.fullmatch(sticky)):
        raise ConfigError(f"sticky_header must be null or an HTTP header name, got {sticky!r}")
    shadow = None
    raw_shadow = data.get("shadow")
    if raw_shadow is not None:
        if not isinstance(raw_shadow, dict):
            raise ConfigError("shadow must be null or an object {version, percent}")
        shadow = Shadow(version=_int(raw_shadow.get("version"), "shadow.version", 1),
                        percent=_int(raw_shadow.get("percent", 100), "shadow.percent", 0, 100))
    if strategy == "shadow" and shadow is None:
        raise ConfigError("strategy 'shadow' needs a shadow {version, percent}")
    rollout = data.get("rollout")
    if rollout is not None and not isinstance(rollout, str):
        raise ConfigError("rollout must be null or a string")
    generation = _int(data.get("generation", 0), "generation", 0)
    return RoutingConfig(model=model, strategy=strategy, routes=tuple(routes), sticky_header=sticky,
                         shadow=shadow, rollout=rollout, generation=generation)


def parse_routing_text(text: bytes | str, expected_model: str) -> RoutingConfig:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"routing file is not valid JSON: {exc}") from None
    return parse_routing(data, expected_model)


def sticky_point(value: str) -> float:
    """A user's fixed place in [0, 100): the same header value always lands on the same point."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return (int.from_bytes(digest[:8], "big") % _BUCKETS) * 100.0 / _BUCKETS


def pick_route(routes: tuple[Route, ...], point: float) -> Route:
    """The route whose cumulative weight interval holds `point` (in [0, 100)).

    Intervals follow the order of `routes`; with the candidate listed last, raising its weight only moves
    users *onto* it, so sticky users never flip back and forth during a canary.
    """
    cumulative = 0
    for route in routes:
        cumulative += route.weight
        if point < cumulative:
            return route
    return next(route for route in reversed(routes) if route.weight > 0)


def decide(config: RoutingConfig | None, sticky_value: str | None, draw: float, shadow_draw: float) -> Decision:
    """The route for one request; `draw` and `shadow_draw` are uniform in [0, 1) (random, injected for tests)."""
    if config is None:
        return Decision(version=None, route=DEFAULT_ROUTE)
    point = sticky_point(sticky_value) if (config.sticky_header and sticky_value) else draw * 100.0
    route = pick_route(config.routes, point)
    shadow_version = None
    shadow = config.shadow
    if shadow is not None and shadow_draw * 100.0 < shadow.percent and shadow.version != route.version:
        shadow_version = shadow.version
    return Decision(version=route.version, route=route.label, shadow_version=shadow_version)
