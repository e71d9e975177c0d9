"""The model store's layout: the names every reader of a published version relies on (docs/CONTRACTS.md).

The frontend's embedded backend and the operator read this layout without importing the trainer (their images do
not install it); tests/frontend/test_model_store_contract.py and tests/operator/test_model_store_contract.py keep
their readers equal to this module. No TensorFlow here, so those tests stay cheap.
"""

from __future__ import annotations

from pathlib import Path

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA = "assets.extra"
METRICS_FILE = "metrics.json"
WARMUP_FILE = "tf_serving_warmup_requests"
# Everything a publish in progress writes starts with this (a hidden name): TF Serving and every reader skip it.
TMP_PREFIX = ".tmp-"


def is_published(version_dir: Path) -> bool:
    """A published version: an integer-named directory holding the SavedModel (renamed into place complete)."""
    return version_dir.name.isdigit() and (version_dir / SAVED_MODEL_FILE).is_file()


def metrics_path(model_dir: Path, version: int) -> Path:
    """Where one version's metrics.json lives."""
    return model_dir / str(version) / ASSETS_EXTRA / METRICS_FILE
