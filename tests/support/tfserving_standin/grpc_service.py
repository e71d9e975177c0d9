"""TF Serving's gRPC API (PredictionService, ModelService) from the official protos, on a grpcio server."""

from __future__ import annotations

import logging
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from .core import ServingCore, elapsed_us, status_name
from .errors import ServingError, code_number, invalid_argument
from .tensors import ndarray_to_proto, proto_to_ndarray

log = logging.getLogger("tfserving_standin")

# Proto states by name (get_model_status.proto ModelVersionStatus.State).
_STATE = get_model_status_pb2.ModelVersionStatus.State


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify/Regress/MultiInference stay UNIMPLEMENTED (no such signatures)."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
                ) -> predict_pb2.PredictResponse:  # noqa: N802 - gRPC method name
        started = time.monotonic()
        error: ServingError | None = None
        try:
            version, signature_name, outputs = self._core.predict(
                request.model_spec, "GRPC",
                lambda _model: {name: proto_to_ndarray(name, proto) for name, proto in request.inputs.items()},
                list(request.output_filter))
        except ServingError as exc:
            error = exc
        self._core.metrics.record_request(request.model_spec.name, status_name(error))
        if error is not None:
            log.debug("Predict failed: %s", error)
            context.abort(error.code, error.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature_name
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(ndarray_to_proto(array))
        self._core.metrics.record_latency(request.model_spec.name, "Predict", "GRPC", elapsed_us(started))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        try:
            return self._core.metadata(request)
        except ServingError as exc:
            context.abort(exc.code, exc.message)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        try:
            return model_status_response(self._core, request)
        except ServingError as exc:
            context.abort(exc.code, exc.message)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802 - gRPC method name
        try:
            self._core.manager.reload_config(request.config)
        except ServingError as exc:
            log.error("ReloadConfig failed: %s", exc.message)
            context.abort(exc.code, exc.message)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = code_number(grpc.StatusCode.OK)
        return response


def model_status_response(core: ServingCore, request: get_model_status_pb2.GetModelStatusRequest
                          ) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus as TF Serving answers it (a version_label in the spec is ignored, as there)."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in core.manager.model_status(spec.name, version):
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = _STATE.Value(status.state)
        entry.status.error_code = code_number(status.code)
        entry.status.error_message = status.message
    return response


def start_grpc_server(core: ServingCore, port: int, workers: int = 8,
                      host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    """Serve both services on host:port (0 = any free port); returns the server and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="standin-grpc"),
                         # Like tensorflow_model_server: no message size cap (gRPC's default is 4 MiB);
                         # no SO_REUSEPORT, so a port is never shared with another process.
                         options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", -1),
                                  ("grpc.max_send_message_length", -1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    server.start()
    return server, bound
