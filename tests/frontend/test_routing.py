"""frontend.routing: validation of routing.json and the per-request choice (weights, stickiness, shadow)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from frontend.errors import ConfigError
from frontend.routing import DEFAULT_ROUTE, decide, parse_routing, parse_routing_text, pick_route, sticky_point
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.frontend.helpers import routing

DESIGN_EXAMPLE = {"model": "mnist", "strategy": "canary",
                  "routes": [{"version": 3, "label": "stable", "weight": 90},
                             {"version": 4, "label": "canary", "weight": 10}],
                  "sticky_header": "X-User-Id", "shadow": None, "rollout": "default/mnist-v4", "generation": 7}


def test_design_example_parses():
    config = parse_routing(DESIGN_EXAMPLE, "mnist")
    assert config.generation == 7 and config.sticky_header == "X-User-Id"
    assert [(r.version, r.label, r.weight) for r in config.routes] == [(3, "stable", 90), (4, "canary", 10)]
    assert config.versions == {3, 4}


@pytest.mark.parametrize("change, message", [
    ({"model": "other"}, "model"),
    ({"strategy": "blue-green"}, "strategy"),
    ({"routes": []}, "routes"),
    ({"routes": [{"version": 3, "label": "stable", "weight": 50}]}, "sum to 100"),
    ({"routes": [{"version": "3", "label": "stable", "weight": 100}]}, "version"),
    ({"routes": [{"version": True, "label": "stable", "weight": 100}]}, "version"),
    ({"routes": [{"version": 0, "label": "stable", "weight": 100}]}, "version"),
    ({"routes": [{"version": 3, "label": "gold", "weight": 100}]}, "label"),
    ({"routes": [{"version": 3, "label": "stable", "weight": 101}]}, "weight"),
    ({"routes": [{"version": 3, "label": "stable", "weight": 50}, {"version": 4, "label": "stable", "weight": 50}]},
     "unique"),
    ({"strategy": "single"}, "exactly one"),
    ({"sticky_header": "bad header"}, "sticky_header"),
    ({"sticky_header": 5}, "sticky_header"),
    ({"strategy": "shadow", "shadow": None}, "shadow"),
    ({"shadow": {"version": 4, "percent": 120}}, "percent"),
    ({"shadow": [4]}, "shadow"),
    ({"generation": -1}, "generation"),
    ({"rollout": 5}, "rollout"),
])
def test_invalid_configs_are_rejected_with_the_field_named(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_routing({**DESIGN_EXAMPLE, **change}, "mnist")


@pytest.mark.parametrize("text", [b"", b"{", b"[]", b"\xff", b"null"])
def test_unparseable_text_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_routing_text(text, "mnist")


def test_no_config_means_the_default_version():
    decision = decide(None, None, 0.5, 0.5)
    assert decision.version is None and decision.route == DEFAULT_ROUTE and decision.shadow_version is None


def test_weighted_split_follows_the_weights():
    config = parse_routing(routing([(3, "stable", 90), (4, "canary", 10)]), "mnist")
    rng = random.Random(1)
    counts = Counter(decide(config, None, rng.random(), rng.random()).version for _ in range(20_000))
    assert 0.085 < counts[4] / 20_000 < 0.115


def test_zero_weight_route_gets_nothing():
    config = parse_routing(routing([(3, "stable", 100), (4, "canary", 0)]), "mnist")
    assert {decide(config, None, d / 100, 0.0).version for d in range(100)} == {3}
    assert pick_route(config.routes, 99.999).version == 3


def test_sticky_users_always_see_the_same_version():
    config = parse_routing(routing([(3, "stable", 50), (4, "candidate", 50)], strategy="abtest", sticky="X-User-Id"),
                           "mnist")
    rng = random.Random(2)
    for user in (f"user-{i}" for i in range(200)):
        seen = {decide(config, user, rng.random(), rng.random()).version for _ in range(5)}
        assert len(seen) == 1
    spread = Counter(decide(config, f"user-{i}", 0.0, 0.0).version for i in range(4000))
    assert 0.45 < spread[4] / 4000 < 0.55


def test_raising_the_canary_weight_never_moves_a_canary_user_back():
    users = [f"u{i}" for i in range(2000)]
    on_canary_before = set()
    for weight in (10, 25, 50, 100):
        config = parse_routing(routing([(3, "stable", 100 - weight), (4, "canary", weight)], sticky="X-User-Id"),
                               "mnist")
        now = {u for u in users if decide(config, u, 0.0, 0.0).version == 4}
        assert on_canary_before <= now
        on_canary_before = now


def test_shadow_copies_follow_the_percentage_and_never_shadow_the_primary():
    config = parse_routing(routing([(3, "stable", 100)], strategy="shadow", shadow={"version": 4, "percent": 30}),
                           "mnist")
    rng = random.Random(3)
    decisions = [decide(config, None, rng.random(), rng.random()) for _ in range(10_000)]
    assert all(d.version == 3 and d.route == "stable" for d in decisions)
    share = sum(d.shadow_version == 4 for d in decisions) / len(decisions)
    assert 0.27 < share < 0.33
    same = parse_routing(routing([(4, "stable", 100)], strategy="shadow", shadow={"version": 4, "percent": 100}),
                         "mnist")
    assert decide(same, None, 0.1, 0.0).shadow_version is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=4), st.floats(0, 99.9999), st.text(max_size=20))
def test_pick_route_always_lands_on_a_route_with_weight(weights, point, user):
    total = sum(weights)
    if total == 0:
        return
    scaled = [w * 100 // total for w in weights]
    scaled[-1] += 100 - sum(scaled)
    data = routing([(i + 1, label, w) for i, (label, w) in enumerate(zip(["stable", "canary", "candidate", "shadow"],
                                                                         scaled, strict=False))])
    config = parse_routing(data, "mnist")
    assert pick_route(config.routes, point).weight > 0
    assert 0 <= sticky_point(user) < 100
    assert decide(config, user, 0.3, 0.3).version in config.versions
