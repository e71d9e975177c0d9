"""The demo's starting configs are the operator's renderings, read back as the frontend and TF Serving read them."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from scripts.demo.configs import read_routes, write_initial_state


def test_the_starting_state_sends_everything_to_stable_and_loads_it_unlabelled(tmp_path):
    routing, serving = tmp_path / "routing.json", tmp_path / "models.config"
    write_initial_state(routing, serving, "mnist", tmp_path / "models" / "we\"ird", stable=2)
    assert [(r.version, r.label, r.weight) for r in read_routes(routing, "mnist")] == [(2, "stable", 100)]
    config = text_format.Parse(serving.read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path) == ("mnist", str(tmp_path / "models" / "we\"ird"))
    assert list(model.model_version_policy.specific.versions) == [2] and not model.version_labels


def test_a_missing_or_refused_routing_file_has_no_routes(tmp_path):
    assert read_routes(tmp_path / "absent.json", "mnist") == ()
    (tmp_path / "half.json").write_text('{"model": "mnist", "rou')
    assert read_routes(tmp_path / "half.json", "mnist") == ()
    routing = tmp_path / "routing.json"
    write_initial_state(routing, tmp_path / "models.config", "mnist", tmp_path, stable=1)
    assert read_routes(routing, "fashion") == ()  # another model's file is refused, as the frontend refuses it
