"""Rendered configs parse with TF Serving's own protobuf and with the frontend's own routing parser."""

from __future__ import annotations

import json

import pytest
from frontend.routing import parse_routing_text
from google.protobuf import text_format
from mnist_operator.decide import desired_configs, final_configs
from mnist_operator.render import (
    Route,
    RoutingState,
    ServingState,
    render_model_config,
    render_routing,
    stable_version_of_routing,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.operator.helpers import KEY, Behaviour, World, canary_spec


def parse_model_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_model_config_matches_the_contract_example_and_parses_with_tf_serving_protos():
    text = render_model_config([ServingState("mnist", "/models/mnist", (4, 3), {"stable": 3, "canary": 4})])
    cfg = parse_model_config(text)
    (m,) = cfg.model_config_list.config
    assert (m.name, m.base_path, m.model_platform) == ("mnist", "/models/mnist", "tensorflow")
    assert list(m.model_version_policy.specific.versions) == [3, 4]
    assert dict(m.version_labels) == {"stable": 3, "canary": 4}


def test_model_config_quotes_odd_paths_safely():
    cfg = parse_model_config(render_model_config([ServingState("m.x_1", '/data/we"ird path', (1,), {})]))
    assert cfg.model_config_list.config[0].base_path == '/data/we"ird path'


def test_routing_matches_the_contract_and_the_frontend_accepts_it():
    r = RoutingState("mnist", "canary", (Route(3, "stable", 90), Route(4, "canary", 10)), rollout="default/mnist-v4")
    text = render_routing(r, 7)
    assert json.loads(text) == {"model": "mnist", "strategy": "canary",
                                "routes": [{"version": 3, "label": "stable", "weight": 90},
                                           {"version": 4, "label": "canary", "weight": 10}],
                                "sticky_header": None, "shadow": None, "rollout": "default/mnist-v4", "generation": 7}
    parsed = parse_routing_text(text, "mnist")
    assert parsed.generation == 7 and [x.weight for x in parsed.routes] == [90, 10]


@pytest.mark.parametrize("strategy", ["canary", "abtest", "shadow"])
def test_every_config_a_rollout_writes_parses_on_both_sides(strategy):
    spec = canary_spec(strategy=strategy, abtest={"duration": "10s", "minSamples": 50},
                       shadow={"duration": "10s", "promote": "canary"})
    w = World(spec, behaviours={1: Behaviour(), 2: Behaviour()})
    seen = 0
    for _ in range(200):
        d = w.tick()
        if d.serving is not None:
            parse_model_config(render_model_config([d.serving]))
        if d.routing is not None:
            parse_routing_text(render_routing(d.routing, d.routing_generation), "mnist")
            seen += 1
        if w.phase in ("Promoted", "RolledBack", "Failed"):
            break
    assert w.phase == "Promoted" and seen > 3


def test_final_configs_after_rollback_keep_only_stable():
    status = {"phase": "RolledBack", "model": "mnist", "stableVersion": 3, "candidateVersion": 4, "stage": "Done"}
    serving, routing = final_configs(status, KEY, "/models/mnist")
    assert serving.versions == (3,) and routing.routes == (Route(3, "stable", 100),)
    assert desired_configs(status, KEY, "/models/mnist") == (None, None)


def test_stable_version_is_read_from_single_and_labelled_routing():
    assert stable_version_of_routing({"strategy": "single", "routes": [{"version": 5, "weight": 100}]}) == 5
    assert stable_version_of_routing({"strategy": "canary", "routes": [{"version": 6, "label": "canary"},
                                                                        {"version": 5, "label": "stable"}]}) == 5
    assert stable_version_of_routing(None) is None
    assert stable_version_of_routing({"strategy": "canary", "routes": [{"version": 6, "label": "canary"}]}) is None


def test_single_routing_is_what_the_frontend_reads_as_one_version_taking_all_traffic():
    parsed = parse_routing_text(render_routing(RoutingState.single("mnist", 3), 1), "mnist")
    assert (parsed.strategy, [(r.version, r.label, r.weight) for r in parsed.routes]) == ("single", [(3, "stable", 100)])
    assert parsed.rollout is None and parsed.generation == 1
