"""The TF Serving stand-in speaks TF Serving's real gRPC and REST protocols over real SavedModels.

Fast tests use tiny, untrained SavedModels with the contract's signature (exported here); the test that
needs a model that knows digits uses the trainer's `published_models`.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from scripts.demo.ports import free_port
from tests.support.tfserving_standin import ServingError, StandIn
from tests.support.tfserving_standin import config as standin_config
from tests.support.tfserving_standin.__main__ import main as standin_main
from tests.support.tfserving_standin.__main__ import prometheus_path
from tests.support.tfserving_standin.errors import http_status
from tests.support.tfserving_standin.metrics import Metrics

MODEL = "mnist"


# ---- tiny SavedModels with the contract's signature -------------------------------------------------

def export_tiny_model(export_dir: Path, seed: int) -> Path:
    """A linear softmax model (random weights) with serving_default: images -> probabilities, digit."""
    rng = np.random.default_rng(seed)

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(rng.normal(0.0, 0.5, (784, 10)).astype("float32"))
            self.b = tf.Variable(rng.normal(0.0, 0.1, 10).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            probabilities = tf.nn.softmax(tf.matmul(tf.reshape(images, [-1, 784]), self.w) + self.b)
            return {"probabilities": probabilities, "digit": tf.argmax(probabilities, axis=1, output_type=tf.int64)}

    module = Tiny()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir


def expected_outputs(export_dir: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """What the SavedModel itself computes, loaded independently of the stand-in."""
    outputs = tf.saved_model.load(str(export_dir)).signatures["serving_default"](images=tf.constant(images))
    return {name: value.numpy() for name, value in outputs.items()}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine model store <tmp>/models/mnist with versions 1, 2, 3 (copy it before changing it)."""
    base = tmp_path_factory.mktemp("tiny") / "models" / MODEL
    for version in (1, 2, 3):
        export_tiny_model(base / str(version), seed=version)
    return base


@pytest.fixture
def store(tiny_store: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny store that a test may change (add, remove, break versions)."""
    return Path(shutil.copytree(tiny_store, tmp_path / "models" / MODEL))


@pytest.fixture(scope="module")
def serving(tiny_store: Path) -> Iterator[StandIn]:
    """A shared stand-in serving versions 1 and 2 with labels stable=1, canary=2 (tests must not change it)."""
    with StandIn(model_base_path=tiny_store, model_name=MODEL, versions=[1, 2]) as standin:
        standin.reload_config(config_text(tiny_store, [1, 2], {"stable": 1, "canary": 2}))
        yield standin


def config_text(base_path: Path | str, versions: list[int], labels: dict[str, int] | None = None) -> str:
    """A ModelServerConfig in text format, like the operator writes into the ConfigMap."""
    lines = ["model_config_list {", "  config {", f'    name: "{MODEL}"', f'    base_path: "{base_path}"',
             '    model_platform: "tensorflow"', "    model_version_policy { specific {" +
             "".join(f" versions: {v}" for v in versions) + " } }"]
    lines += [f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items()]
    return "\n".join([*lines, "  }", "}", ""])


def write_config(path: Path, text: str) -> None:
    """Replace the config file atomically, as a ConfigMap update does (symlink swap)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def digits(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 28, 28, 1), dtype=np.float32)


def predict_request(images: np.ndarray, *, version: int | None = None, label: str | None = None,
                    name: str = MODEL, **spec: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def prediction_stub(standin: StandIn) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(standin.grpc_target))


def model_stub(standin: StandIn) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(standin.grpc_target))


def grpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=10, **kwargs)
    return info.value


def rest_status(standin: StandIn, version: int | None = None) -> dict:
    suffix = "" if version is None else f"/versions/{version}"
    return requests.get(f"{standin.rest_url}/v1/models/{MODEL}{suffix}", timeout=10).json()


# ---- gRPC -----------------------------------------------------------------------------------------

def test_grpc_predict_computes_with_the_requested_version_and_label(serving: StandIn, tiny_store: Path) -> None:
    stub = prediction_stub(serving)
    images = digits(3)
    for version in (1, 2):
        response = stub.Predict(predict_request(images, version=version), timeout=10)
        expected = expected_outputs(tiny_store / str(version), images)
        assert response.model_spec.name == MODEL
        assert response.model_spec.version.value == version
        assert response.model_spec.signature_name == "serving_default"
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"],
                                   rtol=1e-5)
        assert tf.make_ndarray(response.outputs["digit"]).tolist() == expected["digit"].tolist()
        # TF Serving writes outputs as typed value fields, not tensor_content.
        assert len(response.outputs["probabilities"].float_val) == 30
    assert stub.Predict(predict_request(images, label="canary"), timeout=10).model_spec.version.value == 2
    assert stub.Predict(predict_request(images, label="stable"), timeout=10).model_spec.version.value == 1
    # No version: the latest available one.
    assert stub.Predict(predict_request(images), timeout=10).model_spec.version.value == 2


def test_grpc_output_filter_returns_only_the_named_outputs(serving: StandIn) -> None:
    request = predict_request(digits(2), version=1)
    request.output_filter.append("digit")
    response = prediction_stub(serving).Predict(request, timeout=10)
    assert set(response.outputs) == {"digit"}


@pytest.mark.parametrize(("request_args", "code", "message"), [
    ({"name": "nosuchmodel"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nosuchmodel)"),
    ({"version": 7}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(mnist, 7)"),
    ({"label": "nosuchlabel"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nosuchlabel"),
    ({"version": 1, "signature_name": "nosuchsig"}, grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nosuchsig" not found.'),
    ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
])
def test_grpc_predict_errors_carry_tf_serving_codes(serving: StandIn, request_args: dict, code: grpc.StatusCode,
                                                    message: str) -> None:
    error = grpc_error(prediction_stub(serving).Predict, predict_request(digits(1), **request_args))
    assert error.code() == code
    assert error.details() == message


def test_grpc_predict_rejects_bad_input_with_invalid_argument(serving: StandIn) -> None:
    stub = prediction_stub(serving)
    wrong_dtype = predict_pb2.PredictRequest()
    wrong_dtype.model_spec.name = MODEL
    wrong_dtype.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28, 1), np.int64)))
    wrong_shape = predict_request(np.zeros((1, 28, 28), np.float32))
    wrong_name = predict_pb2.PredictRequest()
    wrong_name.model_spec.name = MODEL
    wrong_name.inputs["pixels"].CopyFrom(tf.make_tensor_proto(digits(1)))
    bad_filter = predict_request(digits(1))
    bad_filter.output_filter.append("logits")
    for request, fragment in [(wrong_dtype, "Expects arg[0] to be float but int64 is provided"),
                              (wrong_shape, "not compatible"),
                              (wrong_name, "Missing but required: {images}"),
                              (bad_filter, "output tensor alias not found in signature: logits")]:
        error = grpc_error(stub.Predict, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in error.details()


def test_grpc_model_status_lists_every_version_newest_first(serving: StandIn) -> None:
    stub = model_stub(serving)
    response = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL}), timeout=10)
    states = [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state), s.status.error_code)
              for s in response.model_version_status]
    assert states == [(2, "AVAILABLE", 0), (1, "AVAILABLE", 0)]
    one = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL})
    one.model_spec.version.value = 1
    assert [s.version for s in stub.GetModelStatus(one, timeout=10).model_version_status] == [1]
    one.model_spec.version.value = 3  # on disk, but not in the version policy
    error = grpc_error(stub.GetModelStatus, one)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 3 of model mnist")
    error = grpc_error(stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "x"}))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model x")


def test_grpc_metadata_returns_the_saved_models_signature_defs(serving: StandIn) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    request.model_spec.version_label = "stable"
    response = prediction_stub(serving).GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    serving_default = signatures.signature_def["serving_default"]
    assert serving_default.method_name == "tensorflow/serving/predict"
    images = serving_default.inputs["images"]
    assert images.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 28, 28, 1]
    assert set(serving_default.outputs) == {"probabilities", "digit"}
    assert serving_default.outputs["digit"].dtype == tf.int64.as_datatype_enum
    request.metadata_field[0] = "graph"
    assert grpc_error(prediction_stub(serving).GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- REST -----------------------------------------------------------------------------------------

def test_rest_model_status_json_is_tf_servings(serving: StandIn) -> None:
    ok = {"error_code": "OK", "error_message": ""}
    assert rest_status(serving) == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": ok},
        {"version": "1", "state": "AVAILABLE", "status": ok}]}
    assert rest_status(serving, 1) == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]}


def test_rest_metadata_json_has_model_spec_and_signature_def(serving: StandIn) -> None:
    body = requests.get(f"{serving.rest_url}/v1/models/{MODEL}/versions/2/metadata", timeout=10).json()
    assert body["model_spec"] == {"name": MODEL, "version": "2", "signature_name": ""}
    images = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]


def test_rest_predict_row_and_columnar_formats(serving: StandIn, tiny_store: Path) -> None:
    images = digits(2, seed=5)
    expected = expected_outputs(tiny_store / "1", images)
    url = f"{serving.rest_url}/v1/models/{MODEL}/versions/1:predict"
    row = requests.post(url, json={"instances": images.tolist()}, timeout=10)
    assert row.status_code == 200
    assert row.headers["Content-Type"] == "application/json"
    predictions = row.json()["predictions"]
    assert [p["digit"] for p in predictions] == expected["digit"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected["probabilities"], rtol=1e-5)
    columnar = requests.post(url, json={"inputs": images.tolist()}, timeout=10).json()["outputs"]
    assert columnar["digit"] == expected["digit"].tolist()
    np.testing.assert_allclose(columnar["probabilities"], expected["probabilities"], rtol=1e-5)
    # Named instances, a label in the path, and the signature named explicitly.
    named = requests.post(f"{serving.rest_url}/v1/models/{MODEL}/labels/stable:predict", timeout=10,
                          json={"signature_name": "serving_default", "instances": [{"images": images[0].tolist()}]})
    assert named.json()["predictions"][0]["digit"] == expected["digit"][0]


@pytest.mark.parametrize(("method", "path", "body", "status", "fragment"), [
    ("POST", "/v1/models/nosuchmodel:predict", {"instances": [[0]]}, 404, "Servable not found for request"),
    ("POST", "/v1/models/mnist/versions/9:predict", {"instances": [[0]]}, 404, "Specific(mnist, 9)"),
    ("POST", "/v1/models/mnist/labels/nope:predict", {"instances": [[0]]}, 400, "Unrecognized servable version"),
    ("POST", "/v1/models/mnist:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "/v1/models/mnist:predict", b"", 400, "The document is empty"),
    ("POST", "/v1/models/mnist:predict", {"images": []}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/mnist:predict", {"instances": [[[0.0] * 28] * 28, [[0.0] * 27]]}, 400, ""),
    ("POST", "/v1/models/mnist:predict", {"instances": [[["a"] * 28] * 28]}, 400, "not of expected type"),
    ("POST", "/v1/models/mnist:predict", {"inputs": [[0.5] * 28] * 28}, 400, "not compatible"),
    ("POST", "/v1/models/mnist:predict", {"instances": [], "inputs": []}, 400, "only one of"),
    ("GET", "/v1/models/nosuchmodel", None, 404, "Could not find any versions of model nosuchmodel"),
    ("GET", "/v1/models/mnist/versions/3", None, 404, "Could not find version 3 of model mnist"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/nonsense", None, 400, "Malformed request: GET /v1/nonsense"),
    ("PUT", "/v1/models/mnist", None, 400, "Malformed request: PUT /v1/models/mnist"),
])
def test_rest_errors_are_tf_serving_json_with_its_status_codes(serving: StandIn, method: str, path: str,
                                                               body: object, status: int, fragment: str) -> None:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = requests.request(method, serving.rest_url + path, data=data, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str) and fragment in error


def test_rest_unknown_path_is_404_and_keep_alive_reuses_one_connection(serving: StandIn) -> None:
    assert requests.get(f"{serving.rest_url}/healthz", timeout=10).status_code == 404
    connection = http.client.HTTPConnection("127.0.0.1", serving.rest_port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", f"/v1/models/{MODEL}")
            response = connection.getresponse()
            assert response.status == 200 and response.version == 11
            response.read()
        local_port = connection.sock.getsockname()[1]
        connection.request("GET", f"/v1/models/{MODEL}/versions/1")
        connection.getresponse().read()
        assert connection.sock.getsockname()[1] == local_port  # same TCP connection throughout
    finally:
        connection.close()


def test_rest_accepts_a_chunked_request_body(serving: StandIn) -> None:
    body = json.dumps({"instances": digits(2).tolist()}).encode()
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))
    response = requests.post(f"{serving.rest_url}/v1/models/{MODEL}/versions/1:predict", data=chunks, timeout=10)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2


def test_concurrent_predicts_on_both_transports_each_get_their_own_version(serving: StandIn) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = digits(4, seed=9)
    stub = prediction_stub(serving)

    def call(index: int) -> int:
        version = 1 + index % 2
        if index % 3:
            return stub.Predict(predict_request(images, version=version), timeout=30).model_spec.version.value
        url = f"{serving.rest_url}/v1/models/{MODEL}/versions/{version}:predict"
        response = requests.post(url, json={"instances": images.tolist()}, timeout=30)
        return version if response.status_code == 200 and len(response.json()["predictions"]) == 4 else -1

    with ThreadPoolExecutor(max_workers=16) as pool:
        answered = list(pool.map(call, range(64)))
    assert answered == [1 + i % 2 for i in range(64)]


def test_prometheus_metrics_count_requests(serving: StandIn) -> None:
    before = serving.predict_count(version=2)
    prediction_stub(serving).Predict(predict_request(digits(1), label="canary"), timeout=10)
    requests.post(f"{serving.rest_url}/v1/models/{MODEL}/versions/2:predict", json={"instances": digits(1).tolist()},
                  timeout=10)
    assert serving.predict_count(version=2) == before + 2
    page = requests.get(f"{serving.rest_url}/monitoring/prometheus/metrics", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/plain")
    text = page.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="mnist",status="OK"}' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="mnist",API="Predict",entrypoint="GRPC",le="+Inf"}' \
        in text
    assert ':tensorflow:serving:standin:predict_count{model_name="mnist",version="2",entrypoint="REST",status="OK"}' \
        in text


# ---- configuration: version policy, config file polling, labels ----------------------------------

def test_config_file_polling_loads_and_unloads_versions(store: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1]))
    with StandIn(model_config_file=config_file, poll_seconds=0.1) as standin:
        assert standin.status(1) == "AVAILABLE" and standin.status(2) is None
        write_config(config_file, config_text(store, [1, 2], {"stable": 1}))
        assert standin.wait_for_state(2, "AVAILABLE", timeout=20)
        assert standin.labels() == {"stable": 1}
        write_config(config_file, config_text(store, [2], {"stable": 2}))
        assert standin.wait_for_state(1, "END", timeout=20)
        assert standin.labels() == {"stable": 2}
        assert standin.history(1) == ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
        assert standin.history(2) == ["START", "LOADING", "AVAILABLE"]
        # TF Serving keeps reporting unloaded versions as END.
        assert [(s["version"], s["state"]) for s in rest_status(standin)["model_version_status"]] == \
            [("2", "AVAILABLE"), ("1", "END")]
        error = grpc_error(prediction_stub(standin).Predict, predict_request(digits(1), version=1))
        assert error.code() == grpc.StatusCode.NOT_FOUND


def test_label_for_a_version_not_yet_loaded_is_refused_and_the_old_config_kept(store: Path, tmp_path: Path,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1]))
    with StandIn(model_config_file=config_file, poll_seconds=0.1) as standin:
        write_config(config_file, config_text(store, [1], {"stable": 1}))
        assert standin.manager.wait_for(lambda: standin.labels() == {"stable": 1}, timeout_s=20)
        with caplog.at_level(logging.ERROR, logger="tfserving_standin"):
            write_config(config_file, config_text(store, [1, 2], {"stable": 1, "canary": 2}))
            time.sleep(1.0)  # several polls
        assert "Request to assign label to version 2 of model mnist, which is not currently available for " \
               "inference" in caplog.text
        assert standin.status(2) is None  # nothing of the refused config was applied
        assert standin.labels() == {"stable": 1}
        # Load first, label second: the operator's sequence works.
        write_config(config_file, config_text(store, [1, 2], {"stable": 1}))
        assert standin.wait_for_state(2, "AVAILABLE", timeout=20)
        write_config(config_file, config_text(store, [1, 2], {"stable": 1, "canary": 2}))
        assert standin.manager.wait_for(lambda: standin.labels() == {"stable": 1, "canary": 2}, timeout_s=20)


def test_reload_config_over_grpc_answers_failed_precondition_for_an_early_label(store: Path) -> None:
    with StandIn(model_base_path=store, versions=[1]) as standin:
        stub = model_stub(standin)
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(model_server_config_pb2.ModelServerConfig())
        text_format.Parse(config_text(store, [1, 3], {"canary": 3}), request.config)
        error = grpc_error(stub.HandleReloadConfigRequest, request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert standin.status(3) is None
        request.config.model_config_list.config[0].version_labels.clear()
        response = stub.HandleReloadConfigRequest(request, timeout=30)
        assert response.status.error_code == 0
        assert standin.wait_for_state(3, "AVAILABLE", timeout=20)


def test_labels_in_the_startup_config_need_allow_version_labels_for_unavailable_models(store: Path,
                                                                                     tmp_path: Path) -> None:
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1, 2], {"stable": 1, "canary": 2}))
    with pytest.raises(ServingError) as info:
        StandIn(model_config_file=config_file).start()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with StandIn(model_config_file=config_file, allow_version_labels_for_unavailable_models=True) as standin:
        assert standin.labels() == {"stable": 1, "canary": 2}
        # Like the real server, start() waits for the model, not for every version of it.
        assert standin.wait_for_state(2, "AVAILABLE", timeout=30)
        response = prediction_stub(standin).Predict(predict_request(digits(1), label="canary"), timeout=10)
        assert response.model_spec.version.value == 2


def test_with_the_flag_a_new_label_may_name_a_version_still_to_load(store: Path, tmp_path: Path) -> None:
    """server_core.cc UpdateModelVersionLabelMap: a label not in the map in effect may point anywhere."""
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1], {"stable": 1}))
    with StandIn(model_config_file=config_file, poll_seconds=0.1,
                 allow_version_labels_for_unavailable_models=True) as standin:
        write_config(config_file, config_text(store, [1, 2], {"stable": 1, "canary": 2}))
        assert standin.wait_for_state(2, "AVAILABLE", timeout=30)
        assert standin.labels() == {"stable": 1, "canary": 2} and standin.manager.refused() == []


def test_with_the_flag_moving_an_existing_label_to_an_unloaded_version_is_refused_and_stays_stuck(
        store: Path, tmp_path: Path) -> None:
    """A replica that missed the config loading v2 and then gets `stable` moved to v2 (the promotion) refuses it on
    every poll and never loads v2: the refused config is not applied at all, so nothing would ever load it."""
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1], {"stable": 1}))
    with StandIn(model_config_file=config_file, poll_seconds=0.1,
                 allow_version_labels_for_unavailable_models=True) as standin:
        write_config(config_file, config_text(store, [1, 2], {"stable": 2}))
        assert standin.manager.wait_for(lambda: len(standin.manager.refused()) >= 5, timeout_s=20)  # every poll
        assert set(standin.manager.refused()) == {"Request to assign label to version 2 of model mnist, which is "
                                                  "not currently available for inference"}
        time.sleep(1.0)
        assert standin.status(2) is None and standin.labels() == {"stable": 1}  # stuck: v2 never starts loading
        # Only a config that stops moving the label (here: load first) gets it out.
        write_config(config_file, config_text(store, [1, 2], {"stable": 1}))
        assert standin.wait_for_state(2, "AVAILABLE", timeout=30)
        write_config(config_file, config_text(store, [1, 2], {"stable": 2}))
        assert standin.manager.wait_for(lambda: standin.labels() == {"stable": 2}, timeout_s=20)


def test_a_refused_label_move_goes_through_on_a_later_poll_once_the_version_loaded(store: Path) -> None:
    """The version is loading from an earlier accepted config: the same refused config is accepted once it is
    AVAILABLE (TF Serving re-applies the file on every poll)."""
    with StandIn(model_base_path=store, versions=[1], allow_version_labels_for_unavailable_models=True) as standin:
        standin.reload_config(config_text(store, [1], {"stable": 1}))
        standin.reload_config(config_text(store, [1, 2], {"stable": 1}))  # v2 starts loading; returns at once
        with pytest.raises(ServingError) as info:
            standin.reload_config(config_text(store, [1, 2], {"stable": 2}))
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and standin.labels() == {"stable": 1}
        assert standin.wait_for_state(2, "AVAILABLE", timeout=30)
        standin.reload_config(config_text(store, [1, 2], {"stable": 2}))
        assert standin.labels() == {"stable": 2} and len(standin.manager.refused()) == 1


def test_missing_and_broken_version_directories_report_like_tf_serving(store: Path) -> None:
    (store / "4").mkdir()  # a version directory without a SavedModel
    with StandIn(model_base_path=store, versions=[1, 4, 9]) as standin:
        assert standin.wait_for_state(4, "END", timeout=20)
        assert standin.status(9) is None  # never aspired: TF Serving only logs a warning
        broken = rest_status(standin, 4)["model_version_status"][0]
        assert broken["state"] == "END" and broken["status"]["error_code"] == "NOT_FOUND"
        assert "Could not find SavedModel .pb" in broken["status"]["error_message"]
        response = requests.get(f"{standin.rest_url}/v1/models/{MODEL}/versions/9", timeout=10)
        assert response.status_code == 404
        assert response.json() == {"error": "Could not find version 9 of model mnist"}


def test_latest_policy_follows_newly_published_versions(store: Path) -> None:
    shutil.rmtree(store / "3")
    with StandIn(model_base_path=store, poll_seconds=0.1) as standin:  # no versions: latest only
        assert standin.status(2) == "AVAILABLE" and standin.status(1) is None
        # The trainer publishes atomically: a hidden temp dir (ignored), then a rename.
        export_tiny_model(store / ".tmp-3", seed=3)
        time.sleep(0.3)
        assert standin.status(3) is None
        os.rename(store / ".tmp-3", store / "3")
        assert standin.wait_for_state(3, "AVAILABLE", timeout=20)
        assert standin.wait_for_state(2, "END", timeout=20)
        assert prediction_stub(standin).Predict(predict_request(digits(1)), timeout=10).model_spec.version.value == 3


def test_path_map_serves_a_config_written_for_the_cluster_paths(store: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text("/models/mnist", [2]))
    with StandIn(model_config_file=config_file, path_map={"/models": store.parent}) as standin:
        assert standin.status(2) == "AVAILABLE"


def write_warmup(export_dir: Path, images: np.ndarray) -> None:
    log_entry = prediction_log_pb2.PredictionLog()
    log_entry.predict_log.request.CopyFrom(predict_request(images))
    (export_dir / "assets.extra").mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(export_dir / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(log_entry.SerializeToString())


def test_warmup_requests_are_replayed_and_a_bad_one_fails_the_load(store: Path) -> None:
    write_warmup(store / "1", digits(2))
    write_warmup(store / "2", np.zeros((1, 28, 28), np.float32))  # wrong rank: the load must fail
    with StandIn(model_base_path=store, versions=[1, 2]) as standin:
        assert standin.wait_for_state(2, "END", timeout=20)
        assert standin.status(1) == "AVAILABLE"
        broken = rest_status(standin, 2)["model_version_status"][0]["status"]
        assert broken["error_code"] == "INVALID_ARGUMENT"


def test_real_trained_models_answer_real_test_digits_with_their_recorded_accuracy(published_models,
                                                                                     mnist_npz: Path) -> None:
    with np.load(mnist_npz) as data:
        images = (data["x_test"][:2000].astype(np.float32) / 255.0)[..., np.newaxis]
        labels = data["y_test"][:2000]
    good = max((v for v in published_models.accuracy if v != published_models.broken_version),
               key=published_models.accuracy.get)
    broken = published_models.broken_version
    with StandIn(model_base_path=published_models.base_path, model_name=published_models.name,
                 versions=[good, broken]) as standin:
        request = predict_request(images, version=good, name=published_models.name)
        request.output_filter.append("digit")
        predicted = tf.make_ndarray(prediction_stub(standin).Predict(request, timeout=120).outputs["digit"])
        # The trainer measured metrics.json's test_accuracy on these same 2000 digits.
        assert float(np.mean(predicted == labels)) == pytest.approx(published_models.accuracy[good], abs=0.002)
        url = f"{standin.rest_url}/v1/models/{published_models.name}/versions/{{}}:predict"
        answers = {version: requests.post(url.format(version), json={"inputs": images[:200].tolist()},
                                          timeout=60).json()["outputs"]["digit"] for version in (good, broken)}
        assert np.mean(np.array(answers[good]) == labels[:200]) > 0.8
        assert np.mean(np.array(answers[broken]) == labels[:200]) < 0.5  # the deliberately bad candidate


# ---- faults ---------------------------------------------------------------------------------------

def test_slow_fault_delays_predict_past_client_deadlines(tiny_store: Path) -> None:
    with StandIn(model_base_path=tiny_store, versions=[1]) as standin:
        standin.set_fault("slow", delay=30.0)  # the sleeping calls are woken when the stand-in stops
        error = grpc_error_with_timeout(prediction_stub(standin), 0.3)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(requests.Timeout):
            requests.post(f"{standin.rest_url}/v1/models/{MODEL}:predict", json={"instances": digits(1).tolist()},
                          timeout=0.3)
        started = time.monotonic()
        assert requests.get(f"{standin.rest_url}/v1/models/{MODEL}", timeout=10).status_code == 200
        assert time.monotonic() - started < 10  # the status API is not slowed down
        standin.resume()
        assert prediction_stub(standin).Predict(predict_request(digits(1)), timeout=10).model_spec.version.value == 1


def grpc_error_with_timeout(stub: prediction_service_pb2_grpc.PredictionServiceStub, timeout: float) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(predict_request(digits(1)), timeout=timeout)
    return info.value


def test_error_fault_fails_every_predict_with_unavailable(tiny_store: Path) -> None:
    with StandIn(model_base_path=tiny_store, versions=[1]) as standin:
        standin.set_fault("error")
        assert grpc_error(prediction_stub(standin).Predict, predict_request(digits(1))).code() == \
            grpc.StatusCode.UNAVAILABLE
        response = requests.post(f"{standin.rest_url}/v1/models/{MODEL}:predict",
                                 json={"instances": digits(1).tolist()}, timeout=10)
        assert response.status_code == 503 and "error" in response.json()
        standin.set_fault("error", code="INTERNAL", transport="rest")
        response = requests.post(f"{standin.rest_url}/v1/models/{MODEL}:predict",
                                 json={"instances": digits(1).tolist()}, timeout=10)
        assert response.status_code == 500
        standin.resume()
        assert prediction_stub(standin).Predict(predict_request(digits(1)), timeout=10).model_spec.version.value == 1


def test_down_fault_stops_listening_and_resume_reopens_the_same_ports(tiny_store: Path) -> None:
    with StandIn(model_base_path=tiny_store, versions=[1]) as standin:
        grpc_port, rest_port = standin.grpc_port, standin.rest_port
        channel = grpc.insecure_channel(standin.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        session = requests.Session()
        assert session.get(f"{standin.rest_url}/v1/models/{MODEL}", timeout=5).status_code == 200
        standin.set_fault("down")
        assert grpc_error(stub.Predict, predict_request(digits(1))).code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(requests.ConnectionError):
            session.get(f"{standin.rest_url}/v1/models/{MODEL}", timeout=5)  # even on the kept-alive connection
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", rest_port)) != 0
        standin.resume()
        assert (standin.grpc_port, standin.rest_port) == (grpc_port, rest_port)
        # The same channel and session recover by themselves.
        assert stub.Predict(predict_request(digits(1)), timeout=10, wait_for_ready=True).model_spec.version.value == 1
        assert session.get(f"{standin.rest_url}/v1/models/{MODEL}", timeout=5).status_code == 200
        # One transport only.
        standin.set_fault("down", transport="grpc")
        assert session.get(f"{standin.rest_url}/v1/models/{MODEL}", timeout=5).status_code == 200
        assert grpc_error(stub.Predict, predict_request(digits(1))).code() == grpc.StatusCode.UNAVAILABLE
        standin.resume()
        channel.close()


# ---- process mode ---------------------------------------------------------------------------------

def test_process_mode_takes_tensorflow_model_server_flags(tiny_store: Path, repo_root: Path) -> None:
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.tfserving_standin", f"--port={grpc_port}", "--rest_api_port",
         str(rest_port), "--model_name=mnist", f"--model_base_path={tiny_store}", "--enable_batching=true"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120  # importing TensorFlow takes a while on a busy machine
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the stand-in process did not answer within 120 s"
            time.sleep(0.2)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        assert stub.Predict(predict_request(digits(1)), timeout=30).model_spec.version.value == 3
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert f"Running gRPC ModelServer at 127.0.0.1:{grpc_port}" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_process_mode_refuses_to_start_with_labels_for_unloaded_versions_like_the_real_server(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "models.config"
    write_config(config_file, config_text(store, [1], {"stable": 1}))
    assert standin_main([f"--port={free_port()}", f"--model_config_file={config_file}"]) == 1
    assert "Failed to start server. Error: FAILED_PRECONDITION: Request to assign label to version 1 of model " \
           "mnist, which is not currently available for inference" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        standin_main(["--no_such_flag=1"])


def test_metrics_page_follows_the_monitoring_config_file_in_process_mode(tmp_path: Path) -> None:
    monitoring = tmp_path / "monitoring.config"
    assert prometheus_path("") is None  # the real server's default: no metrics page
    monitoring.write_text("prometheus_config { enable: true }\n")
    assert prometheus_path(str(monitoring)) == "/monitoring/prometheus/metrics"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    assert prometheus_path(str(monitoring)) == "/metrics"
    monitoring.write_text("prometheus_config { enable: false }\n")
    assert prometheus_path(str(monitoring)) is None


# ---- pure parts -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "expected"), [
    ("", {5}),  # TF Serving's default: the latest version
    ("model_version_policy { latest { num_versions: 2 } }", {3, 5}),
    ("model_version_policy { all {} }", {1, 3, 5}),
    ("model_version_policy { specific { versions: 1 versions: 4 } }", {1}),
])
def test_version_policy_picks_versions_from_disk(policy: str, expected: set[int]) -> None:
    config = standin_config.parse_config_text(
        f'model_config_list {{ config {{ name: "m" base_path: "/m" {policy} }} }}')
    model = config.model_config_list.config[0]
    assert standin_config.aspired_versions(model, [1, 3, 5]) == expected


def test_config_validation_and_path_mapping() -> None:
    with pytest.raises(ServingError, match="Illegal to list model m multiple times"):
        standin_config.validate(standin_config.parse_config_text(
            'model_config_list { config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" } }'))
    with pytest.raises(ServingError, match="to have an absolute path"):
        standin_config.validate(standin_config.parse_config_text(
            'model_config_list { config { name: "m" base_path: "relative" } }'))
    with pytest.raises(ServingError) as info:
        standin_config.parse_config_text("model_config_list { config { nme: 1 } }")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    mapping = {"/models": "/tmp/x", "/models/mnist": "/srv/mnist"}
    assert standin_config.remap_path("/models/mnist", mapping) == Path("/srv/mnist")
    assert standin_config.remap_path("/models/other/3", mapping) == Path("/tmp/x/other/3")
    assert standin_config.remap_path("/elsewhere", mapping) == Path("/elsewhere")
    assert standin_config.parse_version_dir(".tmp-3") is None and standin_config.parse_version_dir("12") == 12


def test_http_status_mapping_is_tf_servings() -> None:
    assert {code.name: http_status(code) for code in (
        grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED)} == {
        "NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAVAILABLE": 503,
        "DEADLINE_EXCEEDED": 504, "INTERNAL": 500, "RESOURCE_EXHAUSTED": 429}


def test_metrics_render_as_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    metrics.record_request("mnist", "OK")
    metrics.record_request("mnist", "OK")
    metrics.record_latency("mnist", "Predict", "GRPC", 1500.0)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    counts = {s.labels["status"]: s.value for s in families[":tensorflow:serving:request_count"].samples}
    assert counts == {"OK": 2}
    buckets = [s for s in families[":tensorflow:serving:request_latency"].samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1
    assert min(float(s.labels["le"]) for s in buckets if s.value == 1) >= 1500.0
