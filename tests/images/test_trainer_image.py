"""The trainer image trains on the data baked into it and publishes a version the host can load and predict with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_trainer_image_publishes_version_1_from_the_baked_in_data(trainer_run, mnist_npz: Path, built_from: str) -> None:
    result, base = trainer_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("published version 1 at /models/mnist/1 ")
    assert sorted(p.name for p in base.iterdir()) == ["1"], "only the version: no .tmp-* or lock left behind"
    version = base / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    metrics = json.loads((version / "assets.extra" / "metrics.json").read_text())
    # The image's own copy of data/mnist.npz (trainer.dataPath in the chart), byte for byte.
    assert metrics["dataset_sha256"] == hashlib.sha256(mnist_npz.read_bytes()).hexdigest()
    assert metrics["device"].startswith("CPU"), metrics["device"]
    assert metrics["git_commit"] == built_from, "the image's GIT_COMMIT: the commit it was built from"
    # Written as the chart's user, as the model store's other readers (TF Serving, the frontend) expect.
    assert {p.stat().st_uid for p in version.rglob("*")} == {10001}


def test_published_version_loads_and_predicts_on_the_host_through_the_serving_signature(trained_store: Path,
                                                                                      mnist_npz: Path) -> None:
    import tensorflow as tf
    from frontend.backends.base import INPUT_NAME, OUTPUT_DIGIT, OUTPUT_PROBABILITIES, SIGNATURE

    base = trained_store
    with np.load(mnist_npz) as data:
        x, y = data["x_test"][:2000], data["y_test"][:2000]
    signature = tf.saved_model.load(str(base / "1")).signatures[SIGNATURE]
    assert set(signature.structured_input_signature[1]) == {INPUT_NAME}
    outputs = signature(**{INPUT_NAME: tf.constant(x.reshape(-1, 28, 28, 1).astype(np.float32) / 255.0)})
    probabilities, digits = outputs[OUTPUT_PROBABILITIES].numpy(), outputs[OUTPUT_DIGIT].numpy()
    assert probabilities.shape == (2000, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert (digits == probabilities.argmax(axis=1)).all()
    accuracy = float((digits == y).mean())
    metrics = json.loads((base / "1" / "assets.extra" / "metrics.json").read_text())
    # Far above chance after one epoch on 2,000 images, and what the container measured on the same 2,000 digits.
    assert accuracy > 0.5
    assert abs(accuracy - metrics["test_accuracy"]) < 0.01, (accuracy, metrics["test_accuracy"])
