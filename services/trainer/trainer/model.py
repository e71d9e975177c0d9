"""The small pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from trainer.config import VIEWS, ModelConfig
from trainer.deskew import deskew
from trainer.device import policy_scope

INPUT_SHAPE = (28, 28, 1)
# Keras' 0.99 leaves the moving statistics near their initial values after the few dozen steps of a
# smoke run (test accuracy at chance); 0.9 tracks within ~20 steps and is as good for long runs.
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="trainer")
class FusedBatchNorm(layers.BatchNormalization):
    """BatchNormalization over the last axis of NHWC images, computed by TensorFlow's fused kernel.

    Keras 3 normalises with separate mean, variance, subtract, multiply and add ops; on the CPU those
    cost about a fifth of this small net's training step. FusedBatchNormV3 does the same in one op
    (oneDNN on the CPU, cuDNN on a GPU), in both directions. The moving statistics follow the same
    momentum rule; the exported graph holds an inference-mode FusedBatchNormV3, which TF Serving runs.
    """

    def call(self, inputs, training=None, mask=None):
        # float32 statistics and affine parameters, whatever the compute dtype (float16 under mixed precision).
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
            return outputs
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon, is_training=False)
        return outputs


def _bn(name: str) -> FusedBatchNorm:
    return FusedBatchNorm(momentum=BN_MOMENTUM, name=name)


def _conv(filters: int, strides: int, weight_decay: float, name: str) -> layers.Conv2D:
    return layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                         kernel_initializer="he_normal", kernel_regularizer=keras.regularizers.L2(weight_decay),
                         name=name)


def _preact_block(x, filters: int, strides: int, weight_decay: float, name: str):
    """BN-ReLU-Conv, BN-ReLU-Conv, plus an identity or 1x1 projection shortcut."""
    pre = layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(x))
    if strides != 1 or x.shape[-1] != filters:
        # The projection reads the pre-activated tensor, as in the paper's full pre-activation variant.
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, kernel_initializer="he_normal",
                                 kernel_regularizer=keras.regularizers.L2(weight_decay), name=f"{name}_proj")(pre)
    else:
        shortcut = x
    y = _conv(filters, strides, weight_decay, f"{name}_conv1")(pre)
    y = layers.ReLU(name=f"{name}_relu2")(_bn(f"{name}_bn2")(y))
    y = _conv(filters, 1, weight_decay, f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_model(config: ModelConfig, name: str = "mnist_preact_resnet") -> keras.Model:
    """Stem conv (then 2x2 max-pool), 3 stages of pre-activation blocks (stride 2 between stages), BN-ReLU,
    GAP, Dense(10) logits."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="images")
    x = _conv(config.stem_filters, 1, config.weight_decay, "stem_conv")(inputs)
    if config.stem_pool:
        # Downsample before the blocks: every stage then runs on a quarter of the pixels. On a CPU the
        # step time follows the pixels, and MNIST's strokes survive 14x14 (see docs/TRAINER.md).
        x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for stage, filters in enumerate(config.stage_filters):
        for block in range(config.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _preact_block(x, filters, strides, config.weight_decay, f"stage{stage + 1}_block{block + 1}")
    x = layers.ReLU(name="final_relu")(_bn("final_bn")(x))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    # Logits stay float32 under mixed precision so softmax and the loss are computed in full precision.
    logits = layers.Dense(config.num_classes, dtype="float32", name="logits",
                          kernel_regularizer=keras.regularizers.L2(config.weight_decay))(x)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="trainer")
class MeanProbabilityLogits(layers.Layer):
    """Logits whose softmax is the mean of the members' softmax probabilities: log(mean_i softmax(logits_i)).

    Logits, not probabilities, so that an ensemble is a drop-in model: the loss, the evaluation and the export's
    softmax (trainer.export) treat it as they treat one network. Computed as a log-sum-exp of log-softmaxes, in
    float32, so that a confident member's near-zero probabilities do not underflow.
    """

    def call(self, member_logits):
        log_probabilities = tf.stack([tf.nn.log_softmax(tf.cast(x, tf.float32), axis=-1) for x in member_logits])
        return tf.reduce_logsumexp(log_probabilities, axis=0) - tf.math.log(float(len(member_logits)))


@keras.saving.register_keras_serializable(package="trainer")
class Deskew(layers.Layer):
    """The images deskewed (trainer.deskew): the input of a member that sees the "deskewed" view.

    Part of the published model, so that TF Serving deskews what it is sent exactly as training did; it has no
    weights. In training the input pipeline deskews before it augments (trainer.inputs), and the network is fitted
    without this layer in front (trainer.train).
    """

    def call(self, images):
        return tf.cast(deskew(images), self.compute_dtype)


def member_name(index: int) -> str:
    return f"member{index + 1}"


def with_view(network: keras.Model, view: str, name: str) -> keras.Model:
    """The network as a member seeing `view` (config.VIEWS): itself for "plain", Deskew then the network for
    "deskewed"."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    if view == "plain":
        return network
    inputs = keras.Input(shape=INPUT_SHAPE, name="images")
    return keras.Model(inputs, network(Deskew(name="deskew")(inputs)), name=name)


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One model averaging the probabilities of `members` (trained apart, each its own seed); one member is itself.

    Members trained from different seeds miss different images, apart from a shared core of ambiguous digits;
    averaging their probabilities removes part of the rest (docs/TRAINER.md, "Why this recipe").
    """
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=INPUT_SHAPE, name="images")
    logits = MeanProbabilityLogits(dtype="float32", name="mean_probability_logits")([m(inputs) for m in members])
    return keras.Model(inputs, logits, name="mnist_preact_resnet_ensemble")


def float32_copy(model: keras.Model, config: ModelConfig) -> keras.Model:
    """The same network and weights computing in float32 (the variables already are float32 under a mixed policy).

    After `--precision mixed_bfloat16` (trainer.device) the published model computes in float32, so that it serves
    on any CPU, with or without AMX, and its measured accuracy is the accuracy of what is served.
    """
    with policy_scope("float32"):
        copy = build_model(config, name=model.name)
    copy.set_weights(model.get_weights())
    return copy
