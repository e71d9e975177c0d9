"""What a published version holds: the serving signature, warmup records, metrics.json, the report."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from trainer import store
from trainer.export import ASSETS_EXTRA, METRICS_FILE, SIGNATURE_NAME, WARMUP_FILE
from trainer.metrics import confusion_matrix, per_class_accuracy
from trainer.report import CONFUSION_FILE, CURVES_FILE

CONTRACT_FIELDS = {"test_accuracy", "per_class_accuracy", "confusion_matrix", "epochs", "duration_s", "device",
                   "dataset_sha256", "git_commit", "version", "model", "created"}


def test_version_dir_has_the_model_store_layout(published_models):
    vdir = published_models.base_path / "1"
    assert store.is_published(vdir)  # the readers' definition (docs/CONTRACTS.md) holds for what export writes
    assert (vdir / "variables" / "variables.index").is_file()
    assert {p.name for p in (vdir / ASSETS_EXTRA).iterdir()} == {WARMUP_FILE, METRICS_FILE, CURVES_FILE,
                                                                  CONFUSION_FILE}


def test_serving_signature_matches_the_contract(published_models):
    loaded = tf.saved_model.load(str(published_models.base_path / "1"))
    sig = loaded.signatures[SIGNATURE_NAME]
    _, inputs = sig.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.float32 and inputs["images"].shape.as_list() == [None, 28, 28, 1]
    outputs = sig.structured_outputs
    assert set(outputs) == {"probabilities", "digit"}
    assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape.as_list() == [None, 10]
    assert outputs["digit"].dtype == tf.int64 and outputs["digit"].shape.as_list() == [None]


def test_smoke_trained_version_is_well_above_chance_on_held_out_real_test_digits(published_models, mnist_npz):
    with np.load(mnist_npz) as npz:
        images, labels = npz["x_test"][-2000:].astype(np.float32)[..., None] / 255.0, npz["y_test"][-2000:]
    serve = tf.saved_model.load(str(published_models.base_path / "2")).signatures[SIGNATURE_NAME]
    out = serve(images=tf.constant(images))
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["digit"].numpy(), probabilities.argmax(axis=1))
    assert float(np.mean(out["digit"].numpy() == labels)) > 0.8


def test_warmup_file_is_tf_serving_prediction_log_records(published_models):
    path = published_models.base_path / "1" / ASSETS_EXTRA / WARMUP_FILE
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert len(records) == 2
    batch_sizes = []
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "mnist"
        assert request.model_spec.signature_name == SIGNATURE_NAME
        images = tf.make_ndarray(request.inputs["images"])
        assert images.dtype == np.float32 and images.shape[1:] == (28, 28, 1)
        assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.5
        batch_sizes.append(images.shape[0])
    assert batch_sizes == [1, 8]


def test_metrics_json_has_every_contract_field(published_models):
    metrics = json.loads((published_models.base_path / "2" / ASSETS_EXTRA / METRICS_FILE).read_text())
    assert set(metrics) >= CONTRACT_FIELDS
    assert metrics["model"] == "mnist" and metrics["version"] == 2 and metrics["epochs"] == 1
    assert metrics["device"] == "CPU"
    assert len(metrics["per_class_accuracy"]) == 10
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["test_examples"]
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert metrics["test_accuracy"] == published_models.accuracy[2]
    assert len(metrics["dataset_sha256"]) == 64
    assert metrics["created"].endswith("Z")
    broken = json.loads((published_models.base_path / "3" / ASSETS_EXTRA / METRICS_FILE).read_text())
    assert broken["shuffled_labels"] is True and metrics["shuffled_labels"] is False


def test_report_pngs_are_real_images(published_models):
    for name in (CURVES_FILE, CONFUSION_FILE):
        data = (published_models.base_path / "1" / ASSETS_EXTRA / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_confusion_matrix_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 0, 2])
    matrix = confusion_matrix(labels, predictions, num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert per_class_accuracy(matrix) == [0.5, 1.0, 0.5]
    assert per_class_accuracy(np.zeros((2, 2), int)) == [0.0, 0.0]


def test_every_metrics_json_field_is_documented(published_models, repo_root):
    """docs/TRAINER.md's metrics.json table names every field a run writes, and no field it does not write."""
    metrics = json.loads((published_models.base_path / "2" / ASSETS_EXTRA / METRICS_FILE).read_text())
    doc = (repo_root / "docs" / "TRAINER.md").read_text()
    table = doc[doc.index("metrics.json fields:"):].split("\n\n", 2)[1]
    documented = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split(" | ")[0])}
    assert documented == set(metrics)
