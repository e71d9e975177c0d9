"""Deskewing: shear each digit upright and centre its mass, from the image's own moments.

A classic normalisation of handwritten digits (LeCun et al. 1998 list deskewed inputs among MNIST's best
preprocessings). Here it gives a member of the ensemble a different view of the digit: a network trained on
deskewed digits misses other images than one trained on the digits as drawn, so their average misses fewer
(docs/TRAINER.md, "Why this recipe").
"""

from __future__ import annotations

import tensorflow as tf

# Pixel coordinates of the image centre: pixel i covers [i, i + 1), so the centre of 28 pixels is 13.5.
CENTRE = 13.5
# The largest shear applied, in pixels of horizontal shift per pixel of height (45 degrees): a stroke cannot be
# more slanted than that and still be read as written, and it bounds the transform of a degenerate image.
MAX_SHEAR = 1.0
# Guards for an empty image (no ink) and a flat one (all ink on one row).
_EPS_MASS = 1e-6
_EPS_VARIANCE = 1e-3


def deskew_transforms(images: tf.Tensor) -> tf.Tensor:
    """The [B, 8] projective transforms (ImageProjectiveTransformV3's layout) that deskew `images` [B, H, W, 1].

    From the ink's centre of mass (cx, cy), the vertical variance var(y) and the covariance cov(x, y): the shear
    alpha = cov / var(y) makes the covariance zero (the principal axis upright), and the shift puts the centre of
    mass at the centre. The transform maps an output pixel (x, y) to the input pixel
    (x + alpha (y - c) + cx - c, y + cy - c), c the centre.
    """
    ink = tf.cast(images, tf.float32)[..., 0]
    height, width = ink.shape[1], ink.shape[2]
    rows = tf.range(height, dtype=tf.float32)[tf.newaxis, :, tf.newaxis]
    cols = tf.range(width, dtype=tf.float32)[tf.newaxis, tf.newaxis, :]
    mass = tf.reduce_sum(ink, axis=[1, 2]) + _EPS_MASS
    cy = tf.reduce_sum(ink * rows, axis=[1, 2]) / mass
    cx = tf.reduce_sum(ink * cols, axis=[1, 2]) / mass
    dy = rows - cy[:, tf.newaxis, tf.newaxis]
    dx = cols - cx[:, tf.newaxis, tf.newaxis]
    var_y = tf.reduce_sum(ink * dy * dy, axis=[1, 2]) / mass
    cov_xy = tf.reduce_sum(ink * dx * dy, axis=[1, 2]) / mass
    alpha = tf.clip_by_value(cov_xy / (var_y + _EPS_VARIANCE), -MAX_SHEAR, MAX_SHEAR)
    ones, zeros = tf.ones_like(alpha), tf.zeros_like(alpha)
    return tf.stack([ones, alpha, cx - CENTRE - alpha * CENTRE, zeros, ones, cy - CENTRE, zeros, zeros], axis=1)


def deskew(images: tf.Tensor) -> tf.Tensor:
    """Deskewed float32 [B, 28, 28, 1] images (ink in [0, 1] on 0) from the same, by bilinear resampling."""
    images = tf.cast(images, tf.float32)
    # The static size where known, so that the output keeps the input's static shape.
    size = images.shape[1:3] if images.shape[1:3].is_fully_defined() else tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=deskew_transforms(images), output_shape=tf.convert_to_tensor(size, tf.int32),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
