"""One loaded SavedModel version: its signatures (as the SavedModel declares them) and Predict on them."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from .errors import ServingError, failed_precondition, invalid_argument, not_found
from .tensors import dtype_name, proto_to_ndarray

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def _read_signature_defs(export_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The `serve` meta graph's SignatureDefs, read from saved_model.pb exactly as TF Serving sees them."""
    pb = export_dir / "saved_model.pb"
    if not pb.is_file():
        raise not_found(f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {export_dir}. "
                        "Check that the directory exists and that you have the right permissions for accessing it.")
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(pb.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise not_found(f"Could not find meta graph def matching supplied tags: {{ serve }}. in {export_dir}")


def read_tfrecords(path: Path) -> Iterator[bytes]:
    """Records of a TFRecord file (length, crc, data, crc); the CRCs are not checked."""
    with path.open("rb") as stream:
        while header := stream.read(12):
            if len(header) < 12:
                raise ServingError(grpc.StatusCode.DATA_LOSS, f"truncated record in {path}")
            (length,) = struct.unpack("<Q", header[:8])
            data = stream.read(length)
            stream.read(4)
            if len(data) < length:
                raise ServingError(grpc.StatusCode.DATA_LOSS, f"truncated record in {path}")
            yield data


class LoadedModel:
    """A SavedModel version loaded with tf.saved_model.load; thread-safe Predict."""

    def __init__(self, export_dir: Path) -> None:
        self.export_dir = Path(export_dir)
        self.signature_defs = _read_signature_defs(self.export_dir)
        loaded = tf.saved_model.load(str(self.export_dir), tags=["serve"])
        self._loaded = loaded  # keeps the variables the signature functions capture alive
        self._functions = {name: loaded.signatures[name]
                           for name in self.signature_defs if name in loaded.signatures}

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        """A signature by name ("" = serving_default); FAILED_PRECONDITION if absent, like Predict does."""
        name = name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return self.signature_defs[name]

    def input_dtypes(self, signature_name: str) -> dict[str, int]:
        """Input name -> DataType enum; the REST API needs it to parse JSON (INVALID_ARGUMENT if unknown)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return {key: info.dtype for key, info in self.signature_defs[name].inputs.items()}

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs; errors carry TF Serving's codes and messages."""
        signature = self.signature(signature_name)
        self._check_inputs(signature, inputs)
        aliases = list(output_filter) or sorted(signature.outputs)
        seen: set[str] = set()
        for alias in aliases:
            if alias not in signature.outputs:
                raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected to "
                                       f"be in the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        function = self._functions[signature_name or DEFAULT_SIGNATURE]
        try:
            results = function(**{name: tf.constant(value) for name, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise invalid_argument(str(exc).strip().splitlines()[0]) from None
        except tf.errors.OpError as exc:
            raise ServingError(grpc.StatusCode.INTERNAL, exc.message) from None
        return {alias: results[alias].numpy() for alias in aliases}

    @staticmethod
    def _check_inputs(signature: meta_graph_pb2.SignatureDef, inputs: Mapping[str, np.ndarray]) -> None:
        expected = set(signature.inputs)
        sent = set(inputs)
        if sent != expected:
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}})"
                f" != len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        for index, name in enumerate(sorted(expected)):
            info = signature.inputs[name]
            value = inputs[name]
            want = tf.dtypes.as_dtype(info.dtype)
            got = tf.dtypes.as_dtype(value.dtype)
            if want != got:
                raise invalid_argument(f"Expects arg[{index}] to be {dtype_name(want.as_datatype_enum)} but "
                                       f"{dtype_name(got.as_datatype_enum)} is provided")
            if info.tensor_shape.unknown_rank:
                continue
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) != value.ndim or any(d >= 0 and d != s for d, s in zip(dims, value.shape, strict=False)):
                raise invalid_argument(
                    f"input tensor alias {name} has shape {list(value.shape)} which is not compatible with the "
                    f"signature's shape {['?' if d < 0 else d for d in dims]} ({dtype_name(info.dtype)})")

    def run_warmup(self) -> int:
        """Replay assets.extra/tf_serving_warmup_requests (Predict logs) as TF Serving does while loading."""
        path = self.export_dir / WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        for record in read_tfrecords(path):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(record)
            if log.WhichOneof("log_type") != "predict_log":
                raise invalid_argument(f"Unsupported log_type for warmup: {log.WhichOneof('log_type')}")
            request = log.predict_log.request
            inputs = {name: proto_to_ndarray(name, proto) for name, proto in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
        return count
