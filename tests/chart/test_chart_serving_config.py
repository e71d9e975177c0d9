"""TF Serving's config files as the chart renders them parse as the protobufs TF Serving reads."""

from __future__ import annotations

from typing import Any

from chartlib import RELEASE, Rendered, component, pod_spec, pods
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2


def serving_container(r: Rendered) -> dict[str, Any]:
    (deployment,) = [o for o in pods(r) if component(o) == "serving"]
    (container,) = pod_spec(deployment)["containers"]
    return container


def test_initial_model_config_parses_and_is_empty(rendered: dict[str, Rendered]) -> None:
    """Ready-but-empty: TF Serving starts with no model until the operator loads the first version."""
    text = rendered["default"].get("ConfigMap", f"{RELEASE}-mnist-platform-model-config")["data"]["models.config"]
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert config.WhichOneof("config") == "model_config_list"
    assert len(config.model_config_list.config) == 0


def test_operator_rendered_model_config_parses_with_the_chart_paths(rendered: dict[str, Rendered]) -> None:
    """What the operator will write into the chart's ConfigMap loads from where the chart mounts the store."""
    from mnist_operator import render
    text = render.render_model_config([render.ServingState(model="mnist", base_path="/models/mnist", versions=(3, 4),
                                                           labels={"stable": 3, "canary": 4})])
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [3, 4]
    assert dict(model.version_labels) == {"canary": 4, "stable": 3}
    mounts = {m["mountPath"] for m in serving_container(rendered["default"])["volumeMounts"]}
    assert any(model.base_path.startswith(path + "/") for path in mounts)


def test_custom_initial_model_config_is_rendered_verbatim(helm: str) -> None:
    from chartlib import render

    wanted = 'model_config_list { config { name: "mnist" base_path: "/models/mnist" model_platform: "tensorflow" } }\n'
    r = render(helm, "default", "--set-string", f"serving.initialModelConfig={wanted}")
    text = r.get("ConfigMap", f"{RELEASE}-mnist-platform-model-config")["data"]["models.config"]
    assert text == wanted
    assert text_format.Parse(text, model_server_config_pb2.ModelServerConfig()).model_config_list.config[0].name == "mnist"


def _int64_value_messages() -> tuple[Any, Any]:
    """MonitoringConfig and BatchingParameters, declared from TF Serving's field names and numbers.

    The tensorflow-serving-api wheel ships neither generated module, so the two messages are declared here
    (monitoring_config.proto; the four BatchingParameters fields the chart sets, as google.protobuf.Int64Value)
    to check the rendered text's syntax and field names the way TF Serving's text parser would.
    """
    from google.protobuf import wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name="chart_check.proto", package="tensorflow.serving",
                                               dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)
    prometheus.field.add(name="path", number=2, type=9, label=1)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=11, label=1,
                         type_name=".tensorflow.serving.PrometheusConfig")
    batching = proto.message_type.add(name="BatchingParameters")
    for number, field in ((1, "max_batch_size"), (2, "batch_timeout_micros"), (3, "max_enqueued_batches"),
                          (4, "num_batch_threads")):
        batching.field.add(name=field, number=number, type=11, label=1, type_name=".google.protobuf.Int64Value")
    pool.Add(proto)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")))


def test_monitoring_and_batching_configs_parse(rendered: dict[str, Rendered]) -> None:
    monitoring_cls, batching_cls = _int64_value_messages()
    data = rendered["default"].get("ConfigMap", f"{RELEASE}-mnist-platform-serving-config")["data"]
    monitoring = text_format.Parse(data["monitoring.config"], monitoring_cls())
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"  # where the operator and the chart read TF Serving's metrics
    batching = text_format.Parse(data["batching.config"], batching_cls())
    assert batching.max_batch_size.value == 64 and batching.num_batch_threads.value == 2


def test_tf_serving_reads_the_files_the_chart_mounts(rendered: dict[str, Rendered]) -> None:
    container = serving_container(rendered["default"])
    args = dict(a.split("=", 1) for a in container["args"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for flag in ("--model_config_file", "--monitoring_config_file", "--batching_parameters_file"):
        assert args[flag].rsplit("/", 1)[0] in mounts, flag
    assert args["--enable_batching"] == "true"
    assert int(args["--model_config_file_poll_wait_seconds"]) > 0
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "/v1/models/mnist" in probe and "AVAILABLE" in probe
