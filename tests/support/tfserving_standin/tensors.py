"""Conversions between numpy arrays, TensorProtos and TF Serving's REST JSON (row and columnar formats).

Pure functions. The JSON rules follow tensorflow_serving/util/json_tensor.cc: "instances" is a list with
one entry per example (plain values when the signature has one input, objects keyed by input name
otherwise), "inputs" is one batched value or an object of them; responses mirror the request format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from .errors import invalid_argument

# TensorProto repeated field holding each dtype's values when written "as proto field", as TF Serving does.
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
}


# TF's C++ DataTypeString spells a few dtypes differently from Python.
_CPP_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


def dtype_name(dtype_enum: int) -> str:
    """The dtype as TF Serving's messages spell it ("float", "int64")."""
    name = tf.dtypes.as_dtype(dtype_enum).name
    return _CPP_NAMES.get(name, name)


def proto_to_ndarray(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a request TensorProto; INVALID_ARGUMENT when it is malformed."""
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the caller's malformed tensor
        raise invalid_argument(f"tensor parsing error: {name}: {exc}") from None


def ndarray_to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode an output like TF Serving's Predict (Tensor::AsProtoField: typed *_val fields, no tensor_content)."""
    dtype = tf.dtypes.as_dtype(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=int(size))
    field = _VALUE_FIELD.get(dtype.as_datatype_enum)
    if field is None:
        return tf.make_tensor_proto(array)
    getattr(proto, field).extend(array.ravel().tolist())
    return proto


# ---- REST JSON -> arrays ----------------------------------------------------------------------------

def _is_base64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _to_array(value: Any, dtype_enum: int, where: str) -> np.ndarray:
    """One JSON value (number or nested lists) as a dense array of the signature's dtype."""
    np_dtype = tf.dtypes.as_dtype(dtype_enum).as_numpy_dtype
    if dtype_enum == types_pb2.DT_STRING:
        raise invalid_argument(f"{where}: string inputs are not supported by the stand-in")
    try:
        raw = np.asarray(value)
    except ValueError:
        raise invalid_argument(f"{where}: JSON Value: {_short(value)} is not a dense (rectangular) list") from None
    if raw.dtype == object or raw.dtype.kind in "USV":
        raise invalid_argument(
            f"{where}: JSON Value: {_short(value)} is not of expected type: {dtype_name(dtype_enum)}")
    kind = np.dtype(np_dtype).kind
    if raw.dtype.kind == "b" and kind != "b":
        raise invalid_argument(
            f"{where}: JSON Value: {_short(value)} Type: Bool is not of expected type: {dtype_name(dtype_enum)}")
    if kind in "iu" and raw.dtype.kind == "f":
        raise invalid_argument(
            f"{where}: JSON Value: {_short(value)} Type: Number is not of expected type: {dtype_name(dtype_enum)}")
    return raw.astype(np_dtype)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def instances_to_arrays(instances: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Row format: stack each example of "instances" into batched arrays keyed by input name."""
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' array")
    names = sorted(input_dtypes)
    objects = isinstance(instances[0], dict) and not _is_base64_object(instances[0])
    if not objects and len(names) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple "
                               "input tensors required as per tensorinfo_map")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for index, item in enumerate(instances):
        if objects:
            if not isinstance(item, dict):
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            if set(item) != set(names):
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                       f"{_short(item)} keys must be equal to: {','.join(names)}")
            values = item
        else:
            if isinstance(item, dict):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            values = {names[0]: item}
        for name in names:
            where = f"Failed to process element: {index} of 'instances' list"
            array = _to_array(values[name], input_dtypes[name], where)
            if columns[name] and array.shape != columns[name][0].shape:
                raise invalid_argument(f"{where}. Error: Expecting shape {list(columns[name][0].shape)} "
                                       f"but got: {list(array.shape)}")
            columns[name].append(array)
    return {name: np.stack(parts) for name, parts in columns.items()}


def inputs_to_arrays(inputs: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Columnar format: "inputs" is one batched value (single input) or an object of them."""
    names = sorted(input_dtypes)
    if not isinstance(inputs, dict) or _is_base64_object(inputs):
        if len(names) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple "
                                   "input tensors required as per tensorinfo_map")
        return {names[0]: _to_array(inputs, input_dtypes[names[0]], "'inputs'")}
    arrays = {}
    for name in names:
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _to_array(inputs[name], input_dtypes[name], f"'inputs' key {name}")
    return arrays


# ---- arrays -> REST JSON ----------------------------------------------------------------------------

def _json_values(array: np.ndarray) -> Any:
    """Nested lists; float32 written by its shortest repr (0.1, not 0.10000000149011612) like TF Serving."""
    if array.dtype != np.float32:
        return array.tolist()
    if array.ndim == 0:
        return float(str(array))
    if array.ndim == 1:
        return [float(str(value)) for value in array]
    return [_json_values(part) for part in array]


def row_response(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """{"predictions": [...]}: one entry per example; objects keyed by output name when there are several."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    batch = None
    for name, array in outputs.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                                   f"expecting: {batch}")
        batch = array.shape[0]
    columns = {name: _json_values(array) for name, array in sorted(outputs.items())}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{name: columns[name][i] for name in columns} for i in range(batch or 0)]}


def columnar_response(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """{"outputs": value} for one output, {"outputs": {name: value}} for several."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    columns = {name: _json_values(array) for name, array in sorted(outputs.items())}
    if len(columns) == 1:
        return {"outputs": next(iter(columns.values()))}
    return {"outputs": columns}
