"""Evaluation figures written to metrics.json (pure numpy, no TensorFlow)."""

from __future__ import annotations

import datetime as dt

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Rows: true digit, columns: predicted digit."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float]:
    totals = matrix.sum(axis=1)
    return [float(matrix[i, i] / totals[i]) if totals[i] else 0.0 for i in range(len(matrix))]


def rfc3339_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_metrics(*, labels: np.ndarray, predictions: np.ndarray, model: str, version: int, epochs: int,
                  duration_s: float, device: str, dataset_sha256: str, git_commit: str | None,
                  history: dict[str, list[float]], extra: dict | None = None) -> dict:
    """The metrics.json document of the model-store contract (docs/CONTRACTS.md)."""
    matrix = confusion_matrix(labels, predictions)
    return {
        "model": model,
        "version": int(version),
        "created": rfc3339_now(),
        "test_accuracy": float(np.mean(labels == predictions)),
        "test_examples": int(len(labels)),
        "per_class_accuracy": per_class_accuracy(matrix),
        "confusion_matrix": matrix.tolist(),
        "epochs": int(epochs),
        "duration_s": round(float(duration_s), 3),
        "device": device,
        "dataset_sha256": dataset_sha256,
        "git_commit": git_commit,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
        **(extra or {}),
    }
