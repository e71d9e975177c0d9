"""TF Serving messages and method names, from the vendored descriptors (see the package docstring)."""

from __future__ import annotations

import base64

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from frontend.tfs_protos._descriptors import FILE_DESCRIPTOR_SET_B64

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"


def _build_pool() -> descriptor_pool.DescriptorPool:
    file_set = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(FILE_DESCRIPTOR_SET_B64))
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:  # stored in dependency order
        pool.Add(file_proto)
    return pool


POOL = _build_pool()


def _message(full_name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


PredictRequest = _message("tensorflow.serving.PredictRequest")
PredictResponse = _message("tensorflow.serving.PredictResponse")
GetModelStatusRequest = _message("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = _message("tensorflow.serving.GetModelStatusResponse")
TensorProto = _message("tensorflow.TensorProto")

_DATA_TYPE = POOL.FindEnumTypeByName("tensorflow.DataType")
DT_FLOAT = _DATA_TYPE.values_by_name["DT_FLOAT"].number
DT_INT64 = _DATA_TYPE.values_by_name["DT_INT64"].number
_STATE = POOL.FindEnumTypeByName("tensorflow.serving.ModelVersionStatus.State")
STATE_AVAILABLE = _STATE.values_by_name["AVAILABLE"].number
