"""The operator reads the model store as the trainer lays it out (trainer.store owns the layout; docs/CONTRACTS.md)."""

from __future__ import annotations

import json

from mnist_operator import versions
from trainer import store

from tests.support.model_store import contract_store


def test_the_operator_sees_exactly_the_versions_the_trainer_published(tmp_path):
    with contract_store(tmp_path) as s:
        expected = sorted(int(p.name) for p in s.model_dir.iterdir() if store.is_published(p))
        assert expected == list(s.published)
        assert versions.store_versions(s.model_dir) == expected
        assert versions.unregistered(tmp_path, set()) == [("mnist", v) for v in expected]
        for skipped in (s.in_progress, s.unfinished):
            assert not versions.store_candidate_info(s.model_dir, skipped).exists


def test_the_operator_reads_metrics_json_where_the_trainer_writes_it(tmp_path):
    with contract_store(tmp_path) as s:
        for version in s.published:
            assert versions.store_metrics(s.model_dir, version) == json.loads(
                store.metrics_path(s.model_dir, version).read_text()) == s.metrics[version]
            info = versions.store_candidate_info(s.model_dir, version)
            assert info.exists and info.test_accuracy == s.metrics[version]["test_accuracy"]
