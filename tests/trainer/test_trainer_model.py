"""The pre-activation ResNet: shapes, parameter count, structure."""

from __future__ import annotations

import keras
import numpy as np
from trainer.config import ModelConfig
from trainer.model import FusedBatchNorm, build_model


def expected_parameter_count(cfg: ModelConfig) -> int:
    """Count by hand: convs without bias, BN with 4 parameters per channel, a projection where shapes change."""
    total = 9 * 1 * cfg.stem_filters
    channels = cfg.stem_filters
    for stage, filters in enumerate(cfg.stage_filters):
        for block in range(cfg.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            total += 4 * channels                 # bn1
            total += 9 * channels * filters       # conv1
            total += 4 * filters                  # bn2
            total += 9 * filters * filters        # conv2
            if strides != 1 or channels != filters:
                total += channels * filters       # 1x1 projection
            channels = filters
    total += 4 * channels                         # final BN
    total += channels * cfg.num_classes + cfg.num_classes
    return total


def test_default_model_maps_images_to_ten_logits():
    model = build_model(ModelConfig())
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    out = model(np.zeros((3, 28, 28, 1), np.float32), training=False)
    assert out.shape == (3, 10)


def test_parameter_count_matches_the_architecture():
    for cfg in (ModelConfig(), ModelConfig(stem_filters=8, stage_filters=(8, 16, 32), blocks_per_stage=1)):
        assert build_model(cfg).count_params() == expected_parameter_count(cfg)
    assert build_model(ModelConfig()).count_params() == 78_042


def test_model_has_three_stages_of_preactivation_blocks_with_projection_shortcuts():
    cfg = ModelConfig()
    names = [layer.name for layer in build_model(cfg).layers]
    blocks = {n.split("_")[0] + "_" + n.split("_")[1] for n in names if n.startswith("stage")}
    assert len(blocks) == len(cfg.stage_filters) * cfg.blocks_per_stage
    # Stage 1 keeps the stem's width (identity); stages 2 and 3 halve the resolution (projection).
    assert [n for n in names if n.endswith("_proj")] == ["stage2_block1_proj", "stage3_block1_proj"]
    # Pre-activation: each block starts with BN then ReLU, and the net ends with BN-ReLU before pooling.
    assert names.index("stage1_block1_bn1") < names.index("stage1_block1_relu1") < names.index("stage1_block1_conv1")
    assert names[-4:] == ["final_bn", "final_relu", "gap", "logits"]


def test_build_model_is_pure_same_config_same_structure():
    a, b = build_model(ModelConfig()), build_model(ModelConfig())
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]


def test_the_stem_pool_halves_the_resolution_before_the_first_stage():
    model = build_model(ModelConfig())
    assert model.get_layer("stem_conv").output.shape[1:3] == (28, 28)
    assert model.get_layer("stem_pool").output.shape[1:3] == (14, 14)
    assert model.get_layer("stage3_block1_add").output.shape[1:3] == (4, 4)
    unpooled = build_model(ModelConfig(stem_pool=False))
    assert "stem_pool" not in [layer.name for layer in unpooled.layers]
    assert unpooled.get_layer("stage3_block1_add").output.shape[1:3] == (7, 7)


def test_fused_batch_norm_computes_what_keras_batch_normalization_computes():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (16, 5, 5, 4)).astype(np.float32)
    fused, plain = FusedBatchNorm(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    for layer in (fused, plain):
        layer.build(x.shape)
        layer.gamma.assign(rng.uniform(0.5, 2.0, 4).astype(np.float32))
        layer.beta.assign(rng.normal(0.0, 1.0, 4).astype(np.float32))
    plain.gamma.assign(fused.gamma.numpy())
    plain.beta.assign(fused.beta.numpy())
    # Training: normalised with the batch's statistics; the moving mean follows the same momentum rule.
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-5)
    # The fused kernel keeps the unbiased (n-1) batch variance for the moving average, Keras the biased one.
    n = 16 * 5 * 5
    np.testing.assert_allclose(fused.moving_variance.numpy() - 0.9,
                               (plain.moving_variance.numpy() - 0.9) * n / (n - 1), rtol=1e-4)
    # Inference: normalised with the moving statistics.
    plain.moving_variance.assign(fused.moving_variance.numpy())
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-4)
    assert FusedBatchNorm.from_config(fused.get_config()).momentum == 0.9
