"""tf.data input pipeline: shuffle, digit-friendly augmentation, batching, prefetch."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from trainer.config import TrainConfig
from trainer.deskew import deskew

# Small affine jitter that keeps a digit a digit: no flips (a mirrored 2 is not a 2).
MAX_ROTATION_DEG = 10.0
MAX_SHIFT_PX = 2.0
MAX_SCALE = 0.1
NUM_CLASSES = 10


def to_model_input(images: tf.Tensor) -> tf.Tensor:
    """uint8 [B, 28, 28] -> float32 [B, 28, 28, 1] in [0, 1], the serving contract."""
    return tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0


def random_affine(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Rotate, scale and shift each image by a small random amount (stateless, so reproducible)."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (MAX_ROTATION_DEG * math.pi / 180.0)
    scale = 1.0 + tf.random.stateless_uniform([batch], seeds[1], -MAX_SCALE, MAX_SCALE)
    dx = tf.random.stateless_uniform([batch], seeds[2], -MAX_SHIFT_PX, MAX_SHIFT_PX)
    dy = tf.random.stateless_uniform([batch], seeds[3], -MAX_SHIFT_PX, MAX_SHIFT_PX)
    # The transform maps output pixel coordinates to input coordinates, around the image centre.
    c = 13.5
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = c - a0 * c - a1 * c + dx
    b2 = c - b0 * c - b1 * c + dy
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([28, 28]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


def random_stroke(images: tf.Tensor, seed: tf.Tensor, probability: float = 0.5) -> tf.Tensor:
    """Thicken or thin the strokes of some images by a random amount (stateless, so reproducible).

    MNIST's strokes are 2-3 px wide; a marker or a fine pen, once preprocessed to 28x28, is wider or
    narrower and fainter. Each image, with `probability`, moves a random fraction t of the way towards its
    3x3 grey-level dilation (t > 0) or erosion (t < 0): a stroke width from about one pixel thinner to one
    pixel thicker.
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    chosen = tf.cast(tf.random.stateless_uniform([batch, 1, 1, 1], seeds[0]) < probability, images.dtype)
    t = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1], -1.0, 1.0) * chosen
    dilated = tf.nn.max_pool2d(images, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
    return images + tf.nn.relu(t) * (dilated - images) + tf.nn.relu(-t) * (eroded - images)


def view_of(images: tf.Tensor, view: str) -> tf.Tensor:
    """Model-input images as a member with `view` (config.VIEWS) sees them."""
    return deskew(images) if view == "deskewed" else images


def build_inputs(config: TrainConfig, x: np.ndarray, y: np.ndarray, view: str = "plain") -> tf.data.Dataset:
    """Endless training stream of (images, one-hot labels) batches; fit() runs it with steps_per_epoch.

    Endless so that the shuffle order and the augmentation seeds keep advancing
    across epochs instead of repeating; every random choice is derived from `seed`. The first
    `config.clean_fraction` of the run's steps (config.epochs passes over x) are not augmented. A "deskewed" view
    deskews each image before augmenting it, so that the augmentation's shifts and rotations are trained on instead
    of undone (the published member deskews at its input: trainer.model.with_view).
    """
    seed, augment = config.seed, config.augment
    clean_steps = int(config.clean_fraction * config.epochs * (len(x) // config.batch_size))
    stroke_probability = config.stroke_probability
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(config.batch_size, drop_remainder=True)
    counter = tf.data.Dataset.counter()

    def prepare(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = batch
        plain = view_of(to_model_input(images), view)
        if not augment:
            return plain, tf.one_hot(labels, NUM_CLASSES)
        affine_seed, stroke_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), step]), 2))

        def augmented() -> tf.Tensor:
            moved = random_affine(plain, affine_seed)
            # Skipped when off: the dilation and erosion would cost the input thread for nothing.
            return random_stroke(moved, stroke_seed, stroke_probability) if stroke_probability > 0 else moved

        images = tf.cond(step < clean_steps, lambda: plain, augmented)
        return images, tf.one_hot(labels, NUM_CLASSES)

    threads = config.input_threads
    ds = tf.data.Dataset.zip((counter, ds)).map(prepare, num_parallel_calls=threads, deterministic=True)
    # A private, fixed-size pool and no autotuning: on 2 shared cores tf.data's default (a pool per core plus
    # autotuning) competes with the training step and cost up to a third of the throughput in our benchmark.
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.enabled = False
    return ds.prefetch(2 * threads).with_options(options)


def build_eval_inputs(x: np.ndarray, y: np.ndarray, batch_size: int = 1000, view: str = "plain") -> tf.data.Dataset:
    """Finite, unshuffled, unaugmented batches for evaluation, as a member with `view` sees them."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.map(lambda images, labels: (view_of(to_model_input(images), view), tf.one_hot(labels, NUM_CLASSES)),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
