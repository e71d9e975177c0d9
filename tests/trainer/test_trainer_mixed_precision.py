"""The GPU code path's precision handling, exercised on the CPU (no GPU here; the dtype policy is the only difference)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from trainer.config import ModelConfig, TrainConfig
from trainer.device import policy_scope
from trainer.export import export_saved_model
from trainer.model import build_model, float32_copy
from trainer.train import compile_model


@pytest.fixture
def mixed_precision_policy():
    """What trainer.device.detect_and_apply sets when it finds a GPU; restored afterwards."""
    with policy_scope("mixed_float16"):
        yield


def test_mixed_precision_trains_with_loss_scaling_and_exports_the_float32_contract(mixed_precision_policy, tmp_path,
                                                                                 mnist_arrays):
    model = build_model(ModelConfig(stem_filters=8, stage_filters=(8, 8, 8), blocks_per_stage=1))
    compile_model(model, TrainConfig(), total_steps=4)
    # float16 compute in the body, float32 logits (softmax and loss in full precision), dynamic loss scaling.
    assert model.get_layer("stem_conv").compute_dtype == "float16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    x, y = mnist_arrays
    images = x[:64].astype(np.float32)[..., None] / 255.0
    model.fit(images, keras.utils.to_categorical(y[:64], 10), batch_size=32, epochs=1, verbose=0)
    export_saved_model(model, tmp_path / "1")
    out = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"](images=tf.constant(images[:4]))
    assert out["probabilities"].dtype == tf.float32 and out["probabilities"].shape == (4, 10)
    assert out["digit"].dtype == tf.int64
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-3)


@pytest.fixture
def bfloat16_policy():
    """What trainer.device.detect_and_apply sets for --precision mixed_bfloat16; restored afterwards."""
    with policy_scope("mixed_bfloat16"):
        yield


def test_bfloat16_training_publishes_a_float32_copy_with_the_same_weights(bfloat16_policy, tmp_path, mnist_arrays):
    config = ModelConfig(stem_filters=8, stage_filters=(8, 8, 8), blocks_per_stage=1)
    model = build_model(config)
    compile_model(model, TrainConfig(), total_steps=4)
    # bfloat16 has float32's range: no loss scaling; the logits stay float32.
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert type(model.optimizer).__name__ != "LossScaleOptimizer"
    x, y = mnist_arrays
    images = x[:64].astype(np.float32)[..., None] / 255.0
    model.fit(images, keras.utils.to_categorical(y[:64], 10), batch_size=32, epochs=1, verbose=0)
    copy = float32_copy(model, config)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # the caller's policy is left alone
    assert {layer.compute_dtype for layer in copy.layers if layer.weights} == {"float32"}
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The same function up to bfloat16's rounding (8 bits of mantissa).
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), atol=0.1)
    export_saved_model(copy, tmp_path / "1")
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    # The signature's own nodes call the model's functions, which the graph's library holds.
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    graph_dtypes = {attr.type for node in nodes for attr in node.attr.values() if attr.HasField("type")}
    assert tf.float32.as_datatype_enum in graph_dtypes
    assert tf.bfloat16.as_datatype_enum not in graph_dtypes
