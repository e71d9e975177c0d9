"""benchmarks/train_bench.py --compare: its last line (the issue's format), its refusals, and a real run on small
inputs whose evaluations are slowed down on purpose, to show that the training clock leaves them out."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks import BENCHMARKS, load_script

LINE = re.compile(r"^time to (\d+\.\d)%: ours >?(\d+\.\d) s, keras-example >?(\d+\.\d) s, "
                  r"pytorch-example >?(\d+\.\d) s; ratio ours/best-peer ([<>]?\d+\.\d\d|n/a)$")
EVAL_DELAY_S = 0.3


def result(name: str, reached_s: float | None, last_s: float) -> dict:
    return {"recipe": name, "reached": reached_s and {"epoch": 1.0, "train_s": reached_s}, "train_s": last_s}


@pytest.mark.parametrize(("times", "expected"), [
    ((12.0, 4.0, 6.0), "time to 99.0%: ours 12.0 s, keras-example 4.0 s, pytorch-example 6.0 s; "
                       "ratio ours/best-peer 3.00"),
    ((None, 4.0, None), "time to 99.0%: ours >30.0 s, keras-example 4.0 s, pytorch-example >30.0 s; "
                        "ratio ours/best-peer >7.50"),
    ((3.0, None, None), "time to 99.0%: ours 3.0 s, keras-example >30.0 s, pytorch-example >30.0 s; "
                        "ratio ours/best-peer <0.10"),
    ((None, None, None), "time to 99.0%: ours >30.0 s, keras-example >30.0 s, pytorch-example >30.0 s; "
                         "ratio ours/best-peer n/a"),
])
def test_last_line_has_the_issues_format_and_bounds_what_was_not_reached(times, expected):
    bench = load_script("train_bench")
    results = [result(name, t, t if t else 30.0) for name, t in zip(("ours", "keras-example", "pytorch-example"),
                                                                    times, strict=True)]
    line = bench.compare_line(0.99, results)
    assert line == expected and LINE.match(line)


def test_on_the_validation_split_the_line_says_so():
    bench = load_script("train_bench")
    results = [result(name, 10.0, 10.0) for name in ("ours", "keras-example", "pytorch-example")]
    assert bench.compare_line(0.99, results, "validation").startswith("time to 99.0% on the validation split: ours")


def test_the_validation_split_is_the_last_training_images_and_never_the_test_set():
    bench = load_script("train_bench")
    x_train, y_train = np.arange(100).reshape(100, 1, 1), np.arange(100) % 10
    data = bench._Limited(x_train, y_train, np.full((20, 1, 1), -1), np.zeros(20))
    split = bench.held_out_validation(data, 30)
    assert split.x_train.ravel().tolist() == list(range(70)) and split.x_test.ravel().tolist() == list(range(70, 100))
    assert split.y_test.tolist() == (np.arange(70, 100) % 10).tolist()


def test_the_reference_recipes_are_the_published_networks():
    bench = load_script("train_bench")
    recipes = {r.name: r for r in bench.RECIPES}
    # Ours trains and is evaluated with the trainer's own weight average; the references have no callbacks.
    from trainer.averaging import WeightAverage

    assert [type(c) for c in recipes["ours"].callbacks(bench.TrainConfig())] == [WeightAverage]
    assert recipes["keras-example"].callbacks(bench.TrainConfig()) == []
    assert recipes["pytorch-example"].callbacks(bench.TrainConfig()) == []
    assert (recipes["keras-example"].batch_size, recipes["keras-example"].epochs) == (128, 15)
    assert (recipes["pytorch-example"].batch_size, recipes["pytorch-example"].epochs) == (64, 14)
    keras_example = bench.build_keras_example(bench.TrainConfig(), 100)
    pytorch_example = bench.build_pytorch_example(bench.TrainConfig(), 100)
    # Parameter counts of the published networks: keras-io's summary says 34,826; PyTorch's Net is 1,199,882.
    assert keras_example.count_params() == 34_826
    assert not keras_example.jit_compile  # Keras' "auto" leaves this network without XLA here
    assert pytorch_example.count_params() == 1_199_882
    # StepLR(gamma=0.7) once per epoch of 100 steps; PyTorch's Adadelta constants.
    optimizer = pytorch_example.optimizer
    assert [round(float(optimizer._learning_rate(step)), 4) for step in (0, 99, 100, 250)] == [1.0, 1.0, 0.7, 0.49]
    assert (optimizer.rho, optimizer.epsilon) == (0.9, 1e-6)


@pytest.mark.parametrize(("argv", "message"), [
    (["--compare", "--train-limit", "200"], "needs at least 1024 training images"),
    (["--compare", "--target", "1.5"], "'1.5' must be above 0 and at most 1"),
    (["--compare", "--max-seconds", "0"], "'0' must be positive"),
    (["--compare", "--train-limit", "2000", "--validation-size", "2000"], "leaves no training images"),
    (["--compare", "--train-limit", "2000", "--validation-size", "1500"], "training images (a quarter epoch"),
    (["--steps", "0"], "'0' must be at least 1"),
    (["--rounds", "-1"], "'-1' must be at least 1"),
    (["--tta-epochs", "0"], "'0' must be at least 1"),
])
def test_bad_arguments_are_refused(argv, message, mnist_npz, capsys):
    bench = load_script("train_bench")
    try:
        code = bench.main(["--data", str(mnist_npz), *argv])
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err  # one line, no usage dump


# Runs the script in a process of its own (TensorFlow's thread settings are per process) with every evaluation
# made EVAL_DELAY_S slower than it is.
SLOW_EVALUATIONS = f"""
import sys, time
sys.argv[0] = {str(BENCHMARKS / "train_bench.py")!r}
sys.path.insert(0, {str(BENCHMARKS.parent)!r})
from tests.benchmarks import load_script
bench = load_script("train_bench")
measure = bench.accuracy_on
def slow(*args, **kwargs):
    time.sleep({EVAL_DELAY_S})
    return measure(*args, **kwargs)
bench.accuracy_on = slow
sys.exit(bench.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_compare_on_small_inputs_prints_the_line_and_leaves_evaluations_off_the_clock(mnist_npz, tmp_path):
    out = tmp_path / "compare.json"
    max_seconds = 3.0
    completed = subprocess.run(
        [sys.executable, "-c", SLOW_EVALUATIONS, "--data", str(mnist_npz), "--compare", "--train-limit", "1024",
         "--test-limit", "300", "--target", "0.5", "--max-seconds", str(max_seconds), "--threads", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    last = completed.stdout.strip().splitlines()[-1]
    match = LINE.match(last)
    assert match, last
    assert match.group(1) == "50.0"
    summary = json.loads(out.read_text())
    assert [r["recipe"] for r in summary["recipes"]] == ["ours", "keras-example", "pytorch-example"]
    # The trainer compiles with XLA only on a GPU; the examples keep Keras' default.
    assert [r["xla"] for r in summary["recipes"]] == [False, False, False]
    # Ours in the precision the trainer picks on this CPU, the references in float32 as they are published.
    from trainer.device import choose_device, cpu_flags

    ours_precision = choose_device([], cpu_flags()).precision
    assert [r["precision"] for r in summary["recipes"]] == [ours_precision, "float32", "float32"]
    assert (summary["train_images"], summary["evaluation_images"], summary["threads"]) == (1024, 300, 2)
    assert summary["evaluated_on"] == "test"
    for recipe, shown in zip(summary["recipes"], match.groups()[1:4], strict=True):
        evaluations = recipe["evaluations"]
        assert evaluations == len(recipe["curve"]) >= 1
        # Every evaluation slept EVAL_DELAY_S: all of it is on the evaluation clock and none on the training one.
        assert recipe["eval_s"] >= EVAL_DELAY_S * evaluations
        assert recipe["train_s"] <= recipe["wall_s"] - EVAL_DELAY_S * evaluations
        assert recipe["train_s"] + recipe["eval_s"] == pytest.approx(recipe["wall_s"], abs=0.5)
        clocks = [point["train_s"] for point in recipe["curve"]]
        assert clocks == sorted(clocks)
        if recipe["reached"]:
            assert recipe["curve"][-1]["test_accuracy"] >= 0.5
            assert shown == f"{recipe['reached']['train_s']:.1f}"  # the line rounds the clock to 0.1 s
        else:  # stopped by the cap, or its whole published length was trained
            assert clocks[-1] >= max_seconds or evaluations == 4 * recipe["epochs_planned"]
            assert all(point["test_accuracy"] < 0.5 for point in recipe["curve"])


@pytest.mark.slow
def test_default_mode_times_the_pipeline_and_the_time_to_a_target_on_the_compare_clock(mnist_npz, tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_bench.py"), "--data", str(mnist_npz), "--steps", "5", "--rounds", "1",
         "--tta-epochs", "1", "--target", "0.5", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out.read_text())
    throughput = result["throughput"]
    assert throughput["steps_per_round"] == 5 and throughput["rounds"] == 1
    assert throughput["pipeline_images_per_s"] > 0 and throughput["in_memory_images_per_s"] > 0
    tta = result["time_to_accuracy"]
    assert (tta["target"], tta["schedule_epochs"]) == (0.5, 1)
    # 50% comes within the first quarter epoch or two; the curve stops at the first evaluation that reaches it.
    assert tta["reached_at_epoch"] == tta["curve"][-1]["epoch"] <= 0.5
    assert tta["curve"][-1]["test_accuracy"] >= 0.5
    assert all(point["test_accuracy"] < 0.5 for point in tta["curve"][:-1])
    assert 0 < tta["training_seconds"] < tta["wall_seconds_including_evaluations"]
