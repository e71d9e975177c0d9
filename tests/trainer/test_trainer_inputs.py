"""The tf.data pipeline: batches, dtypes, value range, seeded augmentation that keeps digits digits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import tensorflow as tf
from trainer.config import TrainConfig
from trainer.deskew import deskew
from trainer.inputs import build_eval_inputs, build_inputs, random_affine, random_stroke


def take(ds: tf.data.Dataset, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_training_batches_are_float_images_in_unit_range_with_one_hot_labels(mnist_arrays):
    x, y = mnist_arrays
    ds = build_inputs(TrainConfig(batch_size=32), x, y)
    images, labels = take(ds, 1)[0]
    assert images.shape == (32, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.shape == (32, 10) and np.all(labels.sum(axis=1) == 1)


def test_pipeline_is_endless_so_epochs_keep_advancing(mnist_arrays):
    x, y = mnist_arrays
    ds = build_inputs(TrainConfig(batch_size=100, augment=False), x[:200], y[:200])
    batches = take(ds, 6)  # three passes over two batches
    assert len(batches) == 6
    # Reshuffled each pass: the first batch of pass 2 is not the first batch of pass 1.
    assert not np.array_equal(batches[0][0], batches[2][0])


def test_same_seed_same_stream_different_seed_different_stream(mnist_arrays):
    x, y = mnist_arrays
    a = take(build_inputs(TrainConfig(batch_size=16, seed=5), x, y), 3)
    b = take(build_inputs(TrainConfig(batch_size=16, seed=5), x, y), 3)
    c = take(build_inputs(TrainConfig(batch_size=16, seed=6), x, y), 3)
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[0][0], c[0][0])


def test_augmentation_moves_pixels_a_little_and_keeps_the_digit(mnist_arrays):
    x, _ = mnist_arrays
    images = tf.constant(x[:64].astype(np.float32)[..., None] / 255.0)
    moved = random_affine(images, tf.constant([1, 2], tf.int64)).numpy()
    assert moved.shape == images.shape
    assert not np.allclose(moved, images.numpy())
    # Small shifts/rotations: most of the ink stays and the digit stays near the centre.
    ink_before, ink_after = images.numpy().sum(axis=(1, 2, 3)), moved.sum(axis=(1, 2, 3))
    assert np.all(np.abs(ink_after / ink_before - 1.0) < 0.35)
    rows = np.arange(28)[None, :, None, None]
    centre_after = (moved * rows).sum(axis=(1, 2, 3)) / ink_after
    centre_before = (images.numpy() * rows).sum(axis=(1, 2, 3)) / ink_before
    assert np.all(np.abs(centre_after - centre_before) < 4.0)


def test_augmentation_never_mirrors_a_digit(mnist_arrays):
    x, _ = mnist_arrays
    images = tf.constant(x[:200].astype(np.float32)[..., None] / 255.0)
    moved = random_affine(images, tf.constant([3, 4], tf.int64)).numpy()
    flipped = images.numpy()[:, :, ::-1, :]
    # Each augmented digit is much closer to its original than to the original's mirror image.
    to_original = np.abs(moved - images.numpy()).sum(axis=(1, 2, 3))
    to_mirror = np.abs(moved - flipped).sum(axis=(1, 2, 3))
    assert np.mean(to_original < to_mirror) > 0.9


def test_eval_inputs_are_finite_unshuffled_and_unaugmented(mnist_arrays):
    x, y = mnist_arrays
    batches = take(build_eval_inputs(x[:250], y[:250], batch_size=100), 10)
    assert [len(b[0]) for b in batches] == [100, 100, 50]
    np.testing.assert_array_equal(batches[0][0][..., 0], x[:100] / np.float32(255.0))
    np.testing.assert_array_equal(batches[0][1].argmax(axis=1), y[:100])


def test_stroke_augmentation_thickens_or_thins_about_half_the_digits(mnist_arrays):
    x, _ = mnist_arrays
    images = tf.constant(x[:256].astype(np.float32)[..., None] / 255.0)
    seed = tf.constant([7, 8], tf.int64)
    changed = random_stroke(images, seed).numpy()
    ink_ratio = changed.sum(axis=(1, 2, 3)) / images.numpy().sum(axis=(1, 2, 3))
    untouched = np.isclose(ink_ratio, 1.0, atol=1e-6)
    # About half the digits are left alone; of the rest, some gain ink (thicker) and some lose it (thinner).
    assert 0.35 < untouched.mean() < 0.65
    assert (ink_ratio > 1.05).sum() > 30 and (ink_ratio < 0.95).sum() > 30
    assert changed.min() >= 0.0 and changed.max() <= 1.0
    np.testing.assert_array_equal(random_stroke(images, seed).numpy(), changed)



def test_stroke_probability_zero_leaves_the_strokes_alone(mnist_arrays):
    x, y = mnist_arrays
    config = TrainConfig(batch_size=64, seed=3, clean_fraction=0.0, stroke_probability=0.5)
    images = tf.constant(x[:64].astype(np.float32)[..., None] / 255.0)
    assert np.array_equal(random_stroke(images, tf.constant([1, 1], tf.int64), probability=0.0).numpy(), images.numpy())
    with_strokes = take(build_inputs(config, x[:256], y[:256]), 2)
    without = take(build_inputs(replace(config, stroke_probability=0.0), x[:256], y[:256]), 2)
    assert not np.allclose(with_strokes[0][0], without[0][0])


def test_the_first_clean_fraction_of_the_run_is_not_augmented_and_the_rest_is(mnist_arrays):
    x, y = mnist_arrays
    # 10 epochs of 4 steps: 20% of the run is the first 8 steps.
    config = TrainConfig(batch_size=64, seed=3, epochs=10, clean_fraction=0.2)
    augmented = take(build_inputs(config, x[:256], y[:256]), 12)
    plain = take(build_inputs(replace(config, augment=False), x[:256], y[:256]), 12)
    # The same seeded order either way: the first 8 batches are the plain images, the next 4 are not.
    for step, (a, p) in enumerate(zip(augmented, plain, strict=True)):
        np.testing.assert_array_equal(a[1], p[1])
        assert np.array_equal(a[0], p[0]) == (step < 8), step


def test_a_default_member_trains_its_first_third_of_an_epoch_on_plain_images_and_a_one_epoch_run_is_augmented():
    default = TrainConfig()
    steps = 60_000 // default.batch_size
    assert int(default.clean_fraction * default.epochs * steps) == 76  # 0.325 of an epoch of 234 steps
    assert int(default.clean_fraction * 1 * steps) == 5


def test_the_deskewed_view_deskews_before_it_augments(mnist_arrays):
    x, y = mnist_arrays
    config = TrainConfig(batch_size=64, seed=3, epochs=10, clean_fraction=0.2)
    plain = take(build_inputs(replace(config, augment=False), x[:256], y[:256]), 12)
    viewed = take(build_inputs(replace(config, augment=False), x[:256], y[:256], "deskewed"), 12)
    augmented = take(build_inputs(config, x[:256], y[:256], "deskewed"), 12)
    for step, (p, v, a) in enumerate(zip(plain, viewed, augmented, strict=True)):
        np.testing.assert_allclose(v[0], deskew(p[0]).numpy(), atol=1e-5)
        # The plain start is the deskewed images; after it the augmentation moves them (after deskewing: a shift
        # or a rotation is trained on, not undone).
        assert np.array_equal(a[0], v[0]) == (step < 8), step
    evaluated = next(iter(build_eval_inputs(x[:64], y[:64], view="deskewed")))[0].numpy()
    np.testing.assert_allclose(evaluated, deskew(x[:64].astype(np.float32)[..., None] / 255.0).numpy(), atol=1e-5)
