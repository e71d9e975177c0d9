"""What both transports share: Predict and metadata on the servable manager, with faults and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from .errors import ServingError, invalid_argument
from .faults import Faults
from .metrics import Metrics
from .model import DEFAULT_SIGNATURE, LoadedModel
from .servables import ServableManager

SIGNATURE_DEF_FIELD = "signature_def"


class ServingCore:
    """Transport-independent request handling."""

    def __init__(self, manager: ServableManager, metrics: Metrics, faults: Faults) -> None:
        self.manager = manager
        self.metrics = metrics
        self.faults = faults

    def predict(self, spec: model_pb2.ModelSpec, entrypoint: str,
                make_inputs: Callable[[LoadedModel], Mapping[str, np.ndarray]],
                output_filter: Sequence[str] = ()) -> tuple[int, str, dict[str, np.ndarray]]:
        """Resolve the servable, build inputs against its signature, run it: (version, signature, outputs).

        `entrypoint` is "GRPC" or "REST"; faults for that transport apply first. Request counting for the
        real metrics is the transport's job (REST counts every call); the stand-in's per-version Predict
        counter is kept here.
        """
        transport = "grpc" if entrypoint == "GRPC" else "rest"
        version: int | None = None
        try:
            self.faults.apply_to_predict(transport)
            version, model = self.manager.resolve(spec)
            signature_name = spec.signature_name or DEFAULT_SIGNATURE
            inputs = make_inputs(model)
            outputs = model.predict(signature_name, inputs, output_filter)
        except ServingError as exc:
            self.metrics.record_predict(spec.name, version, entrypoint, exc.code.name)
            raise
        self.metrics.record_predict(spec.name, version, entrypoint, "OK")
        return version, signature_name, outputs

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the SavedModel's SignatureDefMap, as TF Serving returns it."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        version, model = self.manager.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in model.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def elapsed_us(started: float) -> float:
    return (time.monotonic() - started) * 1e6


def status_name(error: BaseException | None) -> str:
    """The status label TF Serving's request_count uses."""
    if error is None:
        return "OK"
    return error.code.name if isinstance(error, ServingError) else grpc.StatusCode.UNKNOWN.name
