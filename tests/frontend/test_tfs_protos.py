"""frontend.tfs_protos: the vendored descriptors are the official tensorflow-serving-api ones, byte for byte on
the wire, so the grpc backend needs no TensorFlow at run time."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from frontend.backends.grpc_backend import array_from_tensor, tensor_from_images
from frontend.tfs_protos import generate
from frontend.tfs_protos import messages as tfs


def test_vendored_descriptors_match_the_installed_official_package():
    assert generate.OUT.read_text() == generate.render(), "run: python -m frontend.tfs_protos.generate"


def test_messages_are_wire_compatible_with_the_official_classes():
    from tensorflow_serving.apis import predict_pb2

    images = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    ours = tfs.PredictRequest()
    ours.model_spec.name = "mnist"
    ours.model_spec.version.value = 4
    ours.inputs["images"].CopyFrom(tensor_from_images(images))
    official = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert official.model_spec.version.value == 4
    assert list(official.inputs["images"].tensor_shape.dim)[0].size == 2
    back = tfs.PredictRequest.FromString(official.SerializeToString())
    np.testing.assert_array_equal(array_from_tensor(back.inputs["images"], "<f4"), images)


def test_grpc_backend_imports_without_tensorflow():
    code = ("import sys, frontend.app, frontend.backends.grpc_backend, frontend.backends.rest; "
            "sys.exit(1 if any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
