"""TF Serving over gRPC: PredictionService/Predict and ModelService/GetModelStatus with TensorProto payloads.

One channel per TF Serving replica per worker process (frontend.backends.replicas: the target's name is resolved
again every `resolve_every_s`, calls go round-robin, a Predict that meets UNAVAILABLE is made once more on another
replica). Made lazily, and again after a fork. Messages come from the vendored official descriptors
(frontend.tfs_protos), so TensorFlow is not needed at run time. Channels reconnect with a short backoff, so a
restarted replica is used again within about a second.
"""

from __future__ import annotations

import os
import threading
import time

import grpc
import numpy as np

from frontend.backends.base import (
    INPUT_NAME,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    BackendEvents,
    BackendResult,
    check_result,
    missing_from,
)
from frontend.backends.replicas import (
    DEFAULT_RESOLVE_EVERY_S,
    Replicas,
    Resolve,
    host_for_url,
    parse_grpc_target,
    system_resolve,
)
from frontend.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError, ModelNotServed
from frontend.tfs_protos import messages as tfs

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Defaults back off up to 120 s after a failure; we want to notice a restarted TF Serving quickly.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


def tensor_from_images(images: np.ndarray):
    tensor = tfs.TensorProto(dtype=tfs.DT_FLOAT)
    for size in images.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = np.ascontiguousarray(images, dtype="<f4").tobytes()
    return tensor


def array_from_tensor(tensor, dtype: str) -> np.ndarray:
    """TensorProto -> ndarray: TF Serving fills tensor_content; repeated *_val fields are read as a fallback."""
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        array = np.frombuffer(tensor.tensor_content, dtype=dtype)
    elif dtype == "<f4":
        array = np.asarray(tensor.float_val, dtype=dtype)
    else:
        array = np.asarray(tensor.int64_val, dtype=dtype)
    try:
        return array.reshape(shape)
    except ValueError:
        raise BackendError(f"backend tensor of {array.size} values does not fit shape {shape}") from None


def error_from_rpc(error: grpc.RpcError, what: str) -> BackendError:
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(f"{what}: TF Serving did not answer in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"{what}: TF Serving is unreachable ({details[:200]})")
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotServed(f"{what}: not available at TF Serving ({details[:200]})")
    name = code.name if code is not None else "UNKNOWN"
    return BackendError(f"{what}: TF Serving answered {name}: {details[:200]}")


def _retryable(error: BaseException) -> bool:
    """UNAVAILABLE: the replica could not take the call (connection refused or dropped, or it said so)."""
    return isinstance(error, grpc.RpcError) and hasattr(error, "code") and error.code() == grpc.StatusCode.UNAVAILABLE


class _Stubs:
    """One replica's channel and the two methods called on it."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.predict = self.channel.unary_unary(
            tfs.PREDICT_METHOD, request_serializer=tfs.PredictRequest.SerializeToString,
            response_deserializer=tfs.PredictResponse.FromString)
        self.status = self.channel.unary_unary(
            tfs.GET_MODEL_STATUS_METHOD, request_serializer=tfs.GetModelStatusRequest.SerializeToString,
            response_deserializer=tfs.GetModelStatusResponse.FromString)


class GrpcBackend:
    kind = "grpc"

    def __init__(self, target: str, model: str, *, resolve: Resolve = system_resolve,
                 resolve_every_s: float = DEFAULT_RESOLVE_EVERY_S, events: BackendEvents | None = None) -> None:
        try:
            self.host, self.port = parse_grpc_target(target)
        except ValueError as exc:
            raise ConfigError(f"TF Serving gRPC target {target!r}: {exc}") from None
        self.target = target
        self.model = model
        self._resolve = resolve
        self._resolve_every_s = resolve_every_s
        self.events = events or BackendEvents()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._replicas: Replicas[_Stubs] | None = None

    def replicas(self) -> Replicas[_Stubs]:
        """This process's replicas (made again after a fork: a parent's channels are not usable in a child)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._replicas = Replicas(
                        self.host, self.port, lambda address: _Stubs(f"{host_for_url(address)}:{self.port}"),
                        lambda stubs: stubs.channel.close(), resolve=self._resolve,
                        resolve_every_s=self._resolve_every_s, on_resolved=self.events.resolved,
                        on_retry=self.events.retried)
                    self._pid = os.getpid()
        return self._replicas

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float) -> BackendResult:
        deadline = time.monotonic() + timeout_s
        request = tfs.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = SIGNATURE
        if version is not None:
            request.model_spec.version.value = version
        request.inputs[INPUT_NAME].CopyFrom(tensor_from_images(images))
        request.output_filter.extend([OUTPUT_PROBABILITIES, OUTPUT_DIGIT])
        what = f"model {self.model} version {version if version is not None else '(default)'}"
        try:
            # A retry gets what is left of the one deadline (it is at least most of it: UNAVAILABLE comes fast).
            response = self.replicas().call(
                lambda stubs: stubs.predict(request, timeout=max(deadline - time.monotonic(), 0.001)), _retryable)
        except grpc.RpcError as error:
            raise error_from_rpc(error, what) from None
        if OUTPUT_PROBABILITIES not in response.outputs or OUTPUT_DIGIT not in response.outputs:
            raise BackendError(f"{what}: response lacks the {OUTPUT_PROBABILITIES}/{OUTPUT_DIGIT} outputs")
        answered = response.model_spec.version.value if response.model_spec.HasField("version") else version
        if answered is None:
            raise BackendError(f"{what}: response does not say which version answered")
        return check_result(array_from_tensor(response.outputs[OUTPUT_PROBABILITIES], "<f4"),
                            array_from_tensor(response.outputs[OUTPUT_DIGIT], "<i8"), len(images), int(answered))

    def available_versions(self, timeout_s: float) -> set[int]:
        """What one replica (the next round-robin) reports: replicas load the same model config."""
        request = tfs.GetModelStatusRequest()
        request.model_spec.name = self.model
        try:
            response = self.replicas().call(lambda stubs: stubs.status(request, timeout=timeout_s))
        except grpc.RpcError as error:
            raise error_from_rpc(error, f"status of model {self.model}") from None
        return {int(s.version) for s in response.model_version_status if s.state == tfs.STATE_AVAILABLE}

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        return missing_from(self.available_versions(timeout_s), wanted)

    def close(self) -> None:
        if self._replicas is not None and self._pid == os.getpid():
            self._replicas.close()
        self._pid = None
