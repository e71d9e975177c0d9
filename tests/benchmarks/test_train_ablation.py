"""benchmarks/train_ablation.py: every variant is built as described and timed, on a small input."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest

from tests.benchmarks import BENCHMARKS, load_script


def test_the_variants_add_one_change_at_a_time_from_the_seed_model_to_the_default():
    bench = load_script("train_ablation")
    from trainer.config import ModelConfig, TrainConfig
    from trainer.device import AMX_BF16, choose_device

    names = [v.name for v in bench.VARIANTS]
    assert names == ["seed", "no-xla", "stem-pool", "one-block", "fused-bn", "batch-256", "average", "bfloat16"]
    first = bench.VARIANTS[0]
    default = next(v for v in bench.VARIANTS if v.name == bench.DEFAULT)
    assert (first.model.blocks_per_stage, first.model.stem_pool, first.fused_bn, first.xla) == (2, False, False, True)
    # The default variant is the trainer's default: its model, its batch, no XLA on the CPU, the weight average,
    # the precision it picks on a CPU, AMX or not; the last one is the opt-in --precision mixed_bfloat16.
    assert (default.model, default.batch_size, default.fused_bn, default.xla, default.average) == (
        ModelConfig(), TrainConfig().batch_size, True, False, TrainConfig().average_decay > 0)
    assert default.precision == choose_device([], {AMX_BF16}).precision == "float32"
    assert bench.VARIANTS[-1].precision == choose_device([], {AMX_BF16}, "mixed_bfloat16").precision
    assert names.index(bench.DEFAULT) == len(names) - 2
    for before, after in itertools.pairwise(bench.VARIANTS):
        changed = [field for field in before._fields[1:] if getattr(before, field) != getattr(after, field)]
        assert len(changed) == 1, (before.name, after.name, changed)


def test_keras_batch_norm_variants_have_no_fused_layer():
    bench = load_script("train_ablation")
    from trainer.model import FusedBatchNorm

    plain = bench.build(bench.VARIANTS[3], 10)
    fused = bench.build(bench.VARIANTS[4], 10)
    assert not any(isinstance(layer, FusedBatchNorm) for layer in plain.layers)
    assert sum(isinstance(layer, FusedBatchNorm) for layer in fused.layers) == 7
    assert plain.count_params() == fused.count_params() == 78_042


def test_the_bfloat16_variant_computes_in_bfloat16_and_leaves_the_global_policy_alone():
    import keras

    bench = load_script("train_ablation")
    before = keras.mixed_precision.global_policy().name
    model = bench.build(bench.VARIANTS[-1], 10)
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert bench.build(bench.VARIANTS[-2], 10).get_layer("stem_conv").compute_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == before


@pytest.mark.slow
def test_a_small_run_times_every_variant(mnist_npz):
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "train_ablation.py"), "--data", str(mnist_npz),
                                "--images", "1024", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    rows = [line.split() for line in lines[1:-1]]
    assert re.fullmatch(r"weight average: \d+\.\d\d ms an update, \d+\.\d% of the default's \d+\.\d ms step", lines[-1])
    assert [row[0] for row in rows] == ["seed", "no-xla", "stem-pool", "one-block", "fused-bn", "batch-256",
                                        "average", "bfloat16"]
    assert rows[0][1] == "175706" and rows[-1][1] == "78042"
    assert rows[0][3] == "1.00" and all(float(row[2]) > 0 for row in rows)


@pytest.mark.parametrize(("argv", "message"), [
    (["--images", "0"], "'0' must be at least 1"),
    (["--rounds", "many"], "'many' is not an integer"),
    (["--images", "100"], "--images must be at least 1024"),
])
def test_bad_arguments_are_refused_with_one_line(argv, message, mnist_npz, capsys):
    bench = load_script("train_ablation")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--data", str(mnist_npz), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
