"""A model store laid out by the trainer's own publishing code, for the readers' contract tests (no training).

Each published version holds an empty saved_model.pb (readers only test that it exists) and a metrics.json;
beside them lie what every reader must ignore: a publish in progress (a held claim, its .tmp-N directory already
holding a saved_model.pb) and an integer directory without a SavedModel.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer import publish, store


@dataclass(frozen=True)
class ContractStore:
    model_dir: Path
    published: tuple[int, ...]
    in_progress: int
    unfinished: int
    metrics: dict[int, dict]


def metrics_doc(model: str, version: int) -> dict:
    return {"model": model, "version": version, "test_accuracy": 0.9 + version / 100,
            "created": "2026-12-01T00:00:00Z", "dataset_sha256": "ab" * 32, "git_commit": f"c0ffee{version}"}


@contextlib.contextmanager
def contract_store(root: Path, model: str = "mnist", published: tuple[int, ...] = (1, 2)) -> Iterator[ContractStore]:
    """<root>/<model>/ with `published` versions, the next one being published (claim held) and one unfinished."""
    model_dir = root / model
    metrics = {}
    for version in published:
        with publishing_version(model_dir, version) as tmp:
            metrics[version] = metrics_doc(model, version)
            (tmp / store.ASSETS_EXTRA / store.METRICS_FILE).write_text(json.dumps(metrics[version]))
    in_progress = max(published) + 1
    unfinished = in_progress + 1
    (model_dir / str(unfinished) / store.ASSETS_EXTRA).mkdir(parents=True)  # a copy by hand, SavedModel not yet there
    claim = publish.claim_version(model_dir, in_progress)
    (claim.tmp_dir / store.SAVED_MODEL_FILE).write_bytes(b"")
    try:
        yield ContractStore(model_dir, tuple(published), in_progress, unfinished, metrics)
    finally:
        publish.release(claim)


@contextlib.contextmanager
def publishing_version(model_dir: Path, version: int) -> Iterator[Path]:
    """Publish one version with the trainer's protocol; the caller fills the temp dir (SavedModel made here)."""
    with publish.publishing(model_dir, version) as claim:
        (claim.tmp_dir / store.SAVED_MODEL_FILE).write_bytes(b"")
        (claim.tmp_dir / store.ASSETS_EXTRA).mkdir()
        yield claim.tmp_dir
