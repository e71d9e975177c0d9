"""The shared `published_models` fixture delivers what other components rely on."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def test_published_models_has_two_good_versions_and_one_broken(published_models, mnist_npz):
    base = published_models.base_path
    assert published_models.name == "mnist"
    assert sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) == [1, 2, 3]
    assert not [p for p in base.iterdir() if p.name.startswith(".tmp-")]
    assert published_models.broken_version == 3
    assert published_models.accuracy[1] > 0.8
    assert published_models.accuracy[2] > 0.8
    assert published_models.accuracy[3] < 0.3


def test_published_models_serve_real_test_digits(published_models, mnist_npz):
    with np.load(mnist_npz) as npz:
        images = npz["x_test"][-500:].astype(np.float32)[..., None] / 255.0
        labels = npz["y_test"][-500:]
    serve = tf.saved_model.load(str(published_models.base_path / "2")).signatures["serving_default"]
    out = serve(images=tf.constant(images))
    assert out["probabilities"].shape == (500, 10)
    assert out["digit"].dtype == tf.int64
    assert float(np.mean(out["digit"].numpy() == labels)) > 0.8
