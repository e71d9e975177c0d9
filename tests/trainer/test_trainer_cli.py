"""`mnist-train` end to end: exit codes, one-line errors, determinism, fail-soft registration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from trainer.cli import EXIT_ACCURACY, EXIT_STORE, EXIT_USAGE, build_parser

TINY = ["--train-limit", "256", "--batch-size", "64", "--epochs", "1", "--test-limit", "200"]


def mnist_train(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_help_in_docs_is_the_real_help(repo_root, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    doc = (repo_root / "docs" / "TRAINER.md").read_text()
    start = doc.index("<!-- mnist-train --help -->")
    block = doc[start:].split("```", 2)[1]
    assert block.removeprefix("text\n").strip() == build_parser().format_help().strip()


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0"], "argument --epochs: '0' must be at least 1"),
    (["--batch-size", "many"], "argument --batch-size: 'many' is not an integer"),
    (["--min-accuracy", "1.5"], "must be between 0 and 1"),
    (["--register", "sometimes"], "argument --register: invalid choice"),
    (["--precision", "float16"], "argument --precision: invalid choice: 'float16'"),
    (["--train-limit", "10"], "--train-limit 10 is smaller than one batch"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    result = mnist_train(*args)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stderr.startswith("mnist-train: error: ")


def test_unwritable_store_exits_5_before_training(tmp_path, mnist_npz):
    blocker = tmp_path / "models"
    blocker.write_text("a file where the store should be")
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(blocker / "mnist"), *TINY)
    assert result.returncode == EXIT_STORE
    assert result.stderr.count("\n") == 1 and "is not writable" in result.stderr


def test_taken_explicit_version_exits_5_before_training(tmp_path, mnist_npz):
    (tmp_path / "mnist" / "3").mkdir(parents=True)
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(tmp_path / "mnist"), "--version", "3",
                         *TINY)
    assert result.returncode == EXIT_STORE
    assert result.stderr.count("\n") == 1 and "version 3 already exists" in result.stderr


def test_model_below_min_accuracy_exits_4_and_publishes_nothing(tmp_path, mnist_npz):
    store = tmp_path / "mnist"
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(store), *TINY, "--min-accuracy", "0.999",
                         "--register", "never")
    assert result.returncode == EXIT_ACCURACY, result.stderr[-2000:]
    assert last_line(result.stderr).startswith("mnist-train: error: test accuracy")
    assert "nothing published" in last_line(result.stderr)
    assert list(store.iterdir()) == []


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory, mnist_npz):
    """Two tiny runs with the same seed, each told to register against an API server that is not there."""
    root = tmp_path_factory.mktemp("twins")
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    runs = []
    for name in ("a", "b"):
        store = root / name / "mnist"
        result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(store), *TINY, "--seed", "7",
                             "--register", "always", env={"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": "ml"})
        runs.append((store, result))
    return runs


def test_cli_prints_version_path_and_accuracy_last(twin_runs):
    store, result = twin_runs[0]
    assert result.returncode == 0, result.stderr[-2000:]
    assert last_line(result.stdout).startswith(f"published version 1 at {store / '1'} test_accuracy ")
    accuracy = float(last_line(result.stdout).split()[-1])
    metrics = json.loads((store / "1" / "assets.extra" / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=5e-5)
    assert "device: CPU, float32" in result.stdout
    assert metrics["precision"] == "float32"


def test_registration_failure_warns_and_training_still_succeeds(twin_runs):
    for store, result in twin_runs:
        assert result.returncode == 0
        warnings = [line for line in result.stdout.splitlines() if "could not register ModelVersion" in line]
        assert len(warnings) == 1 and warnings[0].startswith("WARNING: could not register ModelVersion mnist-v1")
        assert (store / "1" / "saved_model.pb").is_file()


def test_same_seed_on_cpu_gives_identical_weights_and_metrics(twin_runs, mnist_npz):
    (store_a, _), (store_b, _) = twin_runs

    def weights(store: Path) -> list[bytes]:
        # The export's variable order is not stable between processes: compare the multiset of exact arrays.
        ckpt = tf.train.load_checkpoint(str(store / "1" / "variables" / "variables"))
        names = [n for n in ckpt.get_variable_to_shape_map() if n.endswith("VARIABLE_VALUE")]
        return sorted(str(ckpt.get_tensor(n).shape).encode() + ckpt.get_tensor(n).tobytes() for n in names)

    weights_a, weights_b = weights(store_a), weights(store_b)
    assert len(weights_a) > 50
    assert weights_a == weights_b
    with np.load(mnist_npz) as npz:
        images = tf.constant(npz["x_test"][-100:].astype(np.float32)[..., None] / 255.0)
    outputs = [tf.saved_model.load(str(s / "1")).signatures["serving_default"](images=images)["probabilities"].numpy()
               for s in (store_a, store_b)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    metrics_a, metrics_b = (json.loads((s / "1" / "assets.extra" / "metrics.json").read_text()) for s in
                            (store_a, store_b))
    for key in ("test_accuracy", "confusion_matrix", "history", "per_class_accuracy"):
        assert metrics_a[key] == metrics_b[key]


def test_python_dash_m_and_console_script_are_the_same_cli():
    script = Path(sys.executable).with_name("mnist-train")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0
    assert result.stdout.startswith("usage: mnist-train")


@pytest.mark.parametrize(("args", "message"), [
    (["--train-limit", "256", "--validation-size", "256"], "--validation-size 256 leaves none of --train-limit 256"),
    (["--validation-size", "-1"], "argument --validation-size: '-1' must not be negative"),
])
def test_bad_validation_sizes_exit_2_with_one_line(args, message):
    result = mnist_train(*args)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_validation_size_holds_out_the_last_training_images_for_the_curve(tmp_path, mnist_npz):
    store = tmp_path / "mnist"
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(store), "--register", "never",
                         "--train-limit", "384", "--validation-size", "128", "--batch-size", "64", "--epochs", "2",
                         "--test-limit", "200", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((store / "1" / "assets.extra" / "metrics.json").read_text())
    assert (metrics["train_examples"], metrics["validation_examples"]) == (256, 128)
    # The per-epoch curve was measured on the 128 held-out images; the test set is measured once, at the end.
    assert len(metrics["history"]["val_accuracy"]) == 2 * 4  # 2 epochs of each of the 4 members
    assert all(round(v * 128) == pytest.approx(v * 128, abs=1e-3) for v in metrics["history"]["val_accuracy"])


def test_precision_mixed_bfloat16_trains_in_bfloat16_and_publishes_a_float32_model(tmp_path, mnist_npz):
    store = tmp_path / "mnist"
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(store), "--register", "never",
                         "--train-limit", "512", "--batch-size", "64", "--epochs", "1", "--test-limit", "200",
                         "--precision", "mixed_bfloat16", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # "CPU with AMX" or, on a CPU without it, "CPU without AMX (bfloat16 emulated, slow)".
    assert re.search(r"^device: CPU with(out)? AMX.*, mixed bfloat16$", result.stdout, re.MULTILINE), result.stdout
    metrics = json.loads((store / "1" / "assets.extra" / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16"
    serve = tf.saved_model.load(str(store / "1")).signatures["serving_default"]
    images = np.zeros((2, 28, 28, 1), np.float32)
    out = serve(images=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32 and out["probabilities"].shape == (2, 10)
