"""Export the trained model as a SavedModel with the platform's `serving_default` signature."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from trainer.store import ASSETS_EXTRA, METRICS_FILE, WARMUP_FILE

# The signature every client calls (docs/CONTRACTS.md); the frontend's backends/base.py names the same.
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_DIGIT = "digit"


def serving_signature_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)


def export_saved_model(model: keras.Model, out_dir: Path) -> None:
    """Write saved_model.pb + variables/ with `serving_default`: images -> probabilities, digit."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.cast(model(images, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {OUTPUT_PROBABILITIES: probabilities,
                OUTPUT_DIGIT: tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    archive.add_endpoint(SIGNATURE_NAME, serve, input_signature=[serving_signature_spec()])
    archive.write_out(str(out_dir), verbose=False)


def warmup_records(model_name: str, images: np.ndarray, batch_sizes: tuple[int, ...] = (1, 8)) -> list[bytes]:
    """Serialized PredictionLog records, one per batch size, so TF Serving warms each batch shape up."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    records = []
    for n in batch_sizes:
        batch = images[:n].astype(np.float32)
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_NAME))
        request.inputs[INPUT_NAME].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def write_warmup(path: Path, records: list[bytes]) -> None:
    """TF Serving's warmup format: a TFRecord file of PredictionLog protos."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def write_metrics(path: Path, metrics: dict) -> None:
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def export_version(model: keras.Model, out_dir: Path, model_name: str, warmup_images: np.ndarray,
                   metrics: dict) -> Path:
    """Everything one version dir holds except the report PNGs: SavedModel, warmup requests, metrics.json."""
    export_saved_model(model, out_dir)
    extra = out_dir / ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    write_warmup(extra / WARMUP_FILE, warmup_records(model_name, warmup_images))
    write_metrics(extra / METRICS_FILE, metrics)
    return extra
