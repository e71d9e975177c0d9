"""The demo's model store logic: what counts as published, what gets trained, the trainer command line."""

from __future__ import annotations

import json

from scripts.demo.models import (
    TRAIN_SPECS,
    is_published,
    offline_accuracy,
    train_command,
    versions_to_train,
    worth_showing,
)


def publish_fake_layout(model_dir, version, accuracy=None):
    """Only the files these functions look at (a real SavedModel is not needed to test path logic)."""
    path = model_dir / str(version)
    (path / "assets.extra").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    if accuracy is not None:
        (path / "assets.extra" / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))


def test_only_missing_versions_are_trained_unless_retrain(tmp_path):
    publish_fake_layout(tmp_path, 1, 0.91)
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / "2").mkdir()  # no saved_model.pb: not a finished version
    assert is_published(tmp_path, 1) and not is_published(tmp_path, 2)
    assert versions_to_train(tmp_path, [1, 2], retrain=False) == [2]
    assert versions_to_train(tmp_path, [1, 2], retrain=True) == [1, 2]
    assert offline_accuracy(tmp_path, 1) == 0.91
    assert offline_accuracy(tmp_path, 2) is None


def test_v2_learns_more_than_v1_and_v3_is_the_broken_one():
    v1, v2, v3 = TRAIN_SPECS[1], TRAIN_SPECS[2], TRAIN_SPECS[3]
    assert v2.train_limit * v2.epochs > v1.train_limit * v1.epochs
    assert not v1.shuffle_labels and not v2.shuffle_labels and v3.shuffle_labels
    assert "BROKEN" in v3.describe()


def test_train_command_uses_the_real_trainer_cli_flags(tmp_path):
    from trainer.cli import build_parser

    argv = train_command(TRAIN_SPECS[3], tmp_path / "mnist.npz", tmp_path / "models" / "mnist")
    assert argv[0].endswith("/mnist-train")
    args = build_parser().parse_args(argv[1:])
    assert (args.version, args.epochs, args.train_limit, args.seed) == (3, 1, TRAIN_SPECS[3].train_limit, 3)
    assert args.shuffle_labels and args.register == "never"
    assert args.model_base_path == tmp_path / "models" / "mnist"


def test_tensorflow_startup_chatter_is_kept_out_of_the_terminal():
    assert not worth_showing("I0000 00:00:1795759828.419775   19670 port.cc:153] oneDNN custom operations are on.")
    assert not worth_showing("E0000 00:00:1795759835.551269   19670 cuda_platform.cc:52] failed call to cuInit")
    assert not worth_showing("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not worth_showing("   ")
    assert worth_showing("test accuracy 0.8937 on 10000 images")
    assert worth_showing("WARNING: --shuffle-labels: training on permuted labels, this version is deliberately broken")
