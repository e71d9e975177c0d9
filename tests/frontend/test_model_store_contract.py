"""The embedded backend reads the model store and calls the signature as the trainer writes them (docs/CONTRACTS.md)."""

from __future__ import annotations

from frontend.backends import base
from frontend.backends.embedded import version_dirs
from trainer import export, store

from tests.support.model_store import contract_store


def test_the_embedded_backend_sees_exactly_the_versions_the_trainer_published(tmp_path):
    with contract_store(tmp_path) as s:
        expected = {int(p.name): p for p in s.model_dir.iterdir() if store.is_published(p)}
        assert sorted(expected) == list(s.published)
        assert version_dirs(s.model_dir) == expected


def test_the_backends_call_the_signature_the_trainer_exports():
    assert (base.SIGNATURE, base.INPUT_NAME, base.OUTPUT_PROBABILITIES, base.OUTPUT_DIGIT) == (
        export.SIGNATURE_NAME, export.INPUT_NAME, export.OUTPUT_PROBABILITIES, export.OUTPUT_DIGIT)
