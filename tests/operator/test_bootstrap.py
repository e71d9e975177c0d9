"""`mnist-operator run --create-configmaps --initial-rollout` (mnist_operator.bootstrap): the pure parts.

On the real control plane, as the chart's ServiceAccount: tests/cluster/test_chart_first_model.py.
"""

from __future__ import annotations

from google.protobuf import text_format
from mnist_operator import bootstrap
from mnist_operator.cli import build_parser
from mnist_operator.config import OperatorConfig
from tensorflow_serving.config import model_server_config_pb2

CHART_ENV = {"MNIST_OPERATOR_SERVING_CONFIGMAP": "mnist-mnist-platform-model-config",
             "MNIST_OPERATOR_ROUTING_CONFIGMAP": "mnist-mnist-platform-routing"}


def test_initial_configmaps_are_an_empty_model_config_and_a_routing_without_routing_json():
    made = {cm["metadata"]["name"]: cm for cm in bootstrap.initial_configmaps(OperatorConfig.from_env(CHART_ENV))}
    assert set(made) == set(CHART_ENV.values())
    text = made["mnist-mnist-platform-model-config"]["data"]["models.config"]
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())  # what TF Serving reads
    assert parsed.HasField("model_config_list") and not parsed.model_config_list.config, "starts ready but empty"
    assert made["mnist-mnist-platform-routing"]["data"] == {}, "no routing.json: the frontend's default route"


def test_initial_configmaps_leave_out_no_tf_serving_and_per_model_names():
    embedded = OperatorConfig.from_env({**CHART_ENV, "MNIST_OPERATOR_SERVING_CONFIGMAP": ""})
    assert [cm["metadata"]["name"] for cm in bootstrap.initial_configmaps(embedded)] == ["mnist-mnist-platform-routing"]
    templated = OperatorConfig.from_env({"MNIST_OPERATOR_SERVING_CONFIGMAP": "{model}-serving",
                                         "MNIST_OPERATOR_ROUTING_CONFIGMAP": "{model}-routing"})
    assert bootstrap.initial_configmaps(templated) == [], "the model is not known at start"


def test_initial_rollout_only_when_nothing_routes_and_no_rollout_of_the_model_exists():
    body, why = bootstrap.initial_rollout("mnist", 1, [], None)
    assert body is not None and body["metadata"]["name"] == "mnist-initial" and "v1" in why
    assert body["spec"] == {"model": "mnist", "candidateVersion": 1}, "no stableVersion: the initial version"
    other_model = [{"metadata": {"name": "fashion-v2"}, "spec": {"model": "fashion", "candidateVersion": 2}}]
    assert bootstrap.initial_rollout("mnist", 3, other_model, "")[0] is not None
    routed, why = bootstrap.initial_rollout("mnist", 2, [], '{"model": "mnist"}')
    assert routed is None and "routed already" in why
    failed = [{"metadata": {"name": "mnist-v2-canary"}, "spec": {"model": "mnist", "candidateVersion": 2}}]
    none, why = bootstrap.initial_rollout("mnist", 3, failed, None)
    assert none is None and "mnist-v2-canary" in why, "any rollout of the model, in any phase, means a human decides"
    assert bootstrap.initial_rollout("My_Model.x", 1, [], None)[0]["metadata"]["name"] == "my-model-x-initial"


def test_run_flags_parse_and_are_off_by_default():
    args = build_parser().parse_args(["run", "--standalone"])
    assert not args.create_configmaps and not args.initial_rollout
    args = build_parser().parse_args(["run", "--create-configmaps", "--initial-rollout"])
    assert args.create_configmaps and args.initial_rollout
