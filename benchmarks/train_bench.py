"""Trainer benchmark: input pipeline vs in-memory fit (same model, same run), and time to 99.0% test accuracy.

1. Throughput: images/s of the trainer's tf.data pipeline (shuffle, augmentation, prefetch) feeding
   model.fit, against plain model.fit on in-memory float tensors (no augmentation), for the same model
   compiled the same way. Both are warmed up first (compile excluded), then timed in alternating
   rounds so that load from other processes hits both alike; `ratio` uses each side's best round,
   `ratio_of_totals` all images over all seconds of each side.
2. Time to 99.0%: the trainer's default recipe (one-cycle over --tta-epochs epochs), evaluated on the
   10,000 test images every quarter epoch; the clock (training time only, evaluation excluded) stops at
   the first evaluation >= --target.

    .venv/bin/python benchmarks/train_bench.py --data data/mnist.npz
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import load_npz  # noqa: E402
from trainer.device import detect_and_apply  # noqa: E402
from trainer.inputs import build_eval_inputs, build_inputs  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.train import compile_model  # noqa: E402


def timed_fit(model: keras.Model, fit_kwargs: dict, images: int) -> float:
    start = time.perf_counter()
    model.fit(verbose=0, **fit_kwargs)
    return images / (time.perf_counter() - start)


def throughput(data, config: TrainConfig, steps: int, rounds: int) -> dict:
    """Best images/s over `rounds` alternating rounds of `steps` steps each, pipeline vs in-memory."""
    n = steps * config.batch_size
    x, y = data.x_train[:n], data.y_train[:n]
    x_mem = x.astype(np.float32)[..., None] / 255.0
    y_mem = keras.utils.to_categorical(y, 10)
    # Compiled exactly as in a default full run (schedule length, hence XLA on), for both sides.
    total = (len(data.x_train) // config.batch_size) * config.epochs
    pipe_model, mem_model = build_model(config.model), build_model(config.model)
    compile_model(pipe_model, config, total)
    compile_model(mem_model, config, total)
    pipeline = build_inputs(config, x, y)
    pipe_fit = {"x": pipeline, "steps_per_epoch": steps, "epochs": 1, "shuffle": False}
    mem_fit = {"x": x_mem, "y": y_mem, "batch_size": config.batch_size, "epochs": 1, "shuffle": True}
    timed_fit(pipe_model, {**pipe_fit, "steps_per_epoch": 5}, 5 * config.batch_size)  # compile, warm up
    timed_fit(mem_model, {**mem_fit, "x": x_mem[:5 * config.batch_size], "y": y_mem[:5 * config.batch_size]},
              5 * config.batch_size)
    pipe_rates, mem_rates = [], []
    for _ in range(rounds):
        pipe_rates.append(timed_fit(pipe_model, pipe_fit, n))
        mem_rates.append(timed_fit(mem_model, mem_fit, n))
        print(f"  round: pipeline {pipe_rates[-1]:.0f} img/s, in-memory {mem_rates[-1]:.0f} img/s", flush=True)
    # Two views of one noisy measurement: best round against best round, and all images over all seconds.
    pipe_total = rounds * n / sum(n / r for r in pipe_rates)
    mem_total = rounds * n / sum(n / r for r in mem_rates)
    return {"pipeline_images_per_s": round(max(pipe_rates), 1), "in_memory_images_per_s": round(max(mem_rates), 1),
            "ratio": round(max(pipe_rates) / max(mem_rates), 3),
            "ratio_of_totals": round(pipe_total / mem_total, 3), "steps_per_round": steps, "rounds": rounds,
            "pipeline_rounds": [round(r, 1) for r in pipe_rates], "in_memory_rounds": [round(r, 1) for r in mem_rates]}


class _StopAtTarget(keras.callbacks.Callback):
    """Evaluate on the test set after each (quarter-)epoch; record training-only time; stop at the target."""

    def __init__(self, eval_ds, target: float):
        super().__init__()
        self.eval_ds, self.target = eval_ds, target
        self.train_s, self.curve, self.reached_at = 0.0, [], None
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_s += time.perf_counter() - self._t0
        accuracy = float(self.model.evaluate(self.eval_ds, verbose=0, return_dict=True)["accuracy"])
        self.curve.append((round((epoch + 1) / 4, 2), round(self.train_s, 1), round(accuracy, 4)))
        print(f"  epoch {(epoch + 1) / 4:.2f}: {self.train_s:.0f} s training, test accuracy {accuracy:.4f}",
              flush=True)
        if accuracy >= self.target and self.reached_at is None:
            self.reached_at = (round((epoch + 1) / 4, 2), round(self.train_s, 1))
            self.model.stop_training = True


def time_to_accuracy(data, config: TrainConfig, epochs: int, target: float) -> dict:
    keras.utils.set_random_seed(config.seed)
    steps = len(data.x_train) // config.batch_size
    quarter = steps // 4
    model = build_model(config.model)
    compile_model(model, config, quarter * 4 * epochs)
    stopper = _StopAtTarget(build_eval_inputs(data.x_test, data.y_test), target)
    start = time.perf_counter()
    model.fit(build_inputs(config, data.x_train, data.y_train), steps_per_epoch=quarter, epochs=4 * epochs,
              callbacks=[stopper], verbose=0)
    return {"target": target, "schedule_epochs": epochs, "reached_at_epoch": stopper.reached_at and stopper.reached_at[0],
            "training_seconds": stopper.reached_at and stopper.reached_at[1],
            "wall_seconds_including_evaluations": round(time.perf_counter() - start, 1), "curve": stopper.curve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MNIST_DATA", "data/mnist.npz")))
    parser.add_argument("--steps", type=int, default=60, help="steps per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tta-epochs", type=int, default=3, help="one-cycle length of the time-to-accuracy run")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--skip-tta", action="store_true", help="throughput only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    data = load_npz(args.data)
    plan = detect_and_apply()
    config = TrainConfig()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {plan.description}",
              "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    print("throughput (pipeline with augmentation vs in-memory tensors, same model):", flush=True)
    result["throughput"] = throughput(data, config, args.steps, args.rounds)
    if not args.skip_tta:
        print(f"time to {args.target:.3f} test accuracy (one-cycle over {args.tta_epochs} epochs):", flush=True)
        result["time_to_accuracy"] = time_to_accuracy(data, config, args.tta_epochs, args.target)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
