"""Trainer benchmark: input pipeline vs in-memory fit (same model, same run), and time to 99.0% test accuracy.

1. Throughput: images/s of the trainer's tf.data pipeline (shuffle, augmentation, prefetch) feeding
   model.fit, against plain model.fit on in-memory float tensors (no augmentation), for the same model
   compiled the same way. Both are warmed up first (compile excluded), then timed in alternating
   rounds so that load from other processes hits both alike; `ratio` uses each side's best round,
   `ratio_of_totals` all images over all seconds of each side.
2. Time to 99.0%: the trainer's default recipe (one-cycle over --tta-epochs epochs), evaluated on the
   10,000 test images every quarter epoch on the weights it publishes; the clock (the same as 3's: since fit()
   began, compile included, minus the evaluations) stops at the first evaluation >= --target.
3. `--compare` (instead of 1 and 2): the project's default recipe (imported from the trainer package) against
   two reference recipes users pick instead, re-created in Keras from their published descriptions, trained one
   after the other in the same process on the same images with the same TensorFlow threads and input pipeline
   options. Each is evaluated on the test images every quarter epoch; its clock is everything since its fit()
   began (compile included) minus the evaluations. The test images are only measured, never used to choose.

    .venv/bin/python benchmarks/train_bench.py --data data/mnist.npz
    .venv/bin/python benchmarks/train_bench.py --data data/mnist.npz --compare --max-seconds 1800
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from trainer.argtypes import OneLineParser, non_negative_int, positive_float, positive_fraction, positive_int  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import limit, load_npz  # noqa: E402
from trainer.device import detect_and_apply, policy_scope  # noqa: E402
from trainer.inputs import build_eval_inputs, build_inputs  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.train import ConfigError, compile_model, member_view, split_validation, training_callbacks  # noqa: E402


def timed_fit(model: keras.Model, fit_kwargs: dict, images: int) -> float:
    start = time.perf_counter()
    model.fit(verbose=0, **fit_kwargs)
    return images / (time.perf_counter() - start)


def throughput(data, config: TrainConfig, steps: int, rounds: int) -> dict:
    """Best images/s over `rounds` alternating rounds of `steps` steps each, pipeline vs in-memory."""
    n = steps * config.batch_size
    x, y = data.x_train[:n], data.y_train[:n]
    # Every timed batch augmented (a run's first epoch is not; here it would be the first round).
    config = replace(config, clean_fraction=0.0)
    x_mem = x.astype(np.float32)[..., None] / 255.0
    y_mem = keras.utils.to_categorical(y, 10)
    # Compiled exactly as in a default full run (schedule length, hence XLA on), for both sides.
    total = (len(data.x_train) // config.batch_size) * config.epochs
    pipe_model, mem_model = build_model(config.model), build_model(config.model)
    compile_model(pipe_model, config, total)
    compile_model(mem_model, config, total)
    # Ours as its first member trains: the pipeline shows the member's view (deskewing included in the cost).
    pipeline = build_inputs(config, x, y, member_view(config, 0))
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


def time_to_accuracy(data, config: TrainConfig, epochs: int, target: float) -> dict:
    """Our default recipe over an `epochs`-long schedule, trained and clocked as --compare trains it
    (`run_recipe`: compile on the clock, evaluations off it), until the first evaluation >= target."""
    # The run is `epochs` long: its plain start (a fraction of the run's steps) follows, as the schedule does.
    result = run_recipe(OURS._replace(epochs=epochs), data, replace(config, epochs=epochs), target, math.inf,
                        held_out_accuracy(data))
    reached = result["reached"] or {}
    return {"target": target, "schedule_epochs": epochs, "reached_at_epoch": reached.get("epoch"),
            "training_seconds": reached.get("train_s"),
            "wall_seconds_including_evaluations": round(result["wall_s"], 1), "curve": result["curve"]}


# --- --compare: the project's default recipe against two reference recipes, same data, same threads ---------------
#
# The references are re-created in Keras from their published sources (docs/BENCHMARKS.md names what was checked):
# keras-io examples/vision/mnist_convnet.py ("Simple MNIST convnet") and pytorch/examples mnist/main.py. What
# differs from the originals, for every recipe alike: the images are the same seeded, reshuffled stream (the
# trainer's own pipeline; only ours augments, as its recipe says), partial last batches are dropped, and all train
# on the same images (no validation split held out of the Keras example's fit).

PYTORCH_MEAN, PYTORCH_STD = 0.1307, 0.3081  # the example's transforms.Normalize


class Recipe(NamedTuple):
    name: str
    batch_size: int
    epochs: int                                   # the recipe's own published length
    augment: bool                                 # whether its recipe augments the training images
    build: Callable[[TrainConfig, int], keras.Model]  # (config, steps per epoch) -> compiled model
    # fit() callbacks of the recipe itself (ours: the weight average); evaluations run with them too, so that
    # they measure the weights the recipe would publish.
    callbacks: Callable[[TrainConfig], list] = lambda config: []
    # Keras dtype policy as its source trains: None is what `mnist-train` picks by default on this machine
    # (trainer.device: float32 on a CPU, mixed float16 on a GPU); the two references are published in float32.
    precision: str | None = None
    # What the network is trained and evaluated on (trainer.config.VIEWS): ours, its first member's view.
    view: str = "plain"


def build_ours(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """The trainer's default recipe, imported: its ResNet and optimizer over a member's default epochs (its first member)."""
    model = build_model(config.model)
    compile_model(model, config, steps_per_epoch * config.epochs)
    return model


def build_keras_example(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """keras-io "Simple MNIST convnet": conv 32 3x3, pool, conv 64 3x3, pool, dropout 0.5, dense softmax; Adam."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def _torch_default(fan_in: int) -> dict:
    """PyTorch's default Conv2d/Linear initialisation: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias too."""
    bound = 1.0 / float(np.sqrt(fan_in))
    return {"kernel_initializer": keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def build_pytorch_example(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """pytorch/examples mnist: Normalize(0.1307, 0.3081), conv 32 3x3, conv 64 3x3, max-pool 2, dropout 0.25,
    dense 128, dropout 0.5, dense 10 (log-softmax + NLL = cross-entropy on logits); Adadelta lr 1.0 (PyTorch's
    rho 0.9, eps 1e-6), StepLR gamma 0.7 once per epoch."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Rescaling(1.0 / PYTORCH_STD, offset=-PYTORCH_MEAN / PYTORCH_STD),
        layers.Conv2D(32, 3, activation="relu", **_torch_default(1 * 9)),
        layers.Conv2D(64, 3, activation="relu", **_torch_default(32 * 9)),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu", **_torch_default(9216)),
        layers.Dropout(0.5),
        layers.Dense(10, **_torch_default(128)),
    ])
    step_lr = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=steps_per_epoch, decay_rate=0.7,
                                                          staircase=True)
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adadelta(learning_rate=step_lr, rho=0.9, epsilon=1e-6),
                  metrics=["accuracy"])
    return model


OURS = Recipe("ours", TrainConfig().batch_size, TrainConfig().epochs, TrainConfig().augment, build_ours,
              training_callbacks, view=member_view(TrainConfig(), 0))
RECIPES = (
    OURS,
    Recipe("keras-example", 128, 15, False, build_keras_example, precision="float32"),
    Recipe("pytorch-example", 64, 14, False, build_pytorch_example, precision="float32"),
)


def accuracy_on(model: keras.Model, eval_ds, labels: np.ndarray, callbacks: list = ()) -> float:
    """Share of the test images whose argmax output is the label (the same measure for every recipe)."""
    outputs = model.predict(eval_ds, verbose=0, callbacks=list(callbacks))
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


def held_out_accuracy(data) -> Callable[[keras.Model, list, str], float]:
    """`run_recipe`'s evaluation: accuracy_on data's test images (whatever stands in for them: the validation split
    under --validation-size) in the recipe's view, with the recipe's callbacks."""
    labels = np.asarray(data.y_test)
    eval_ds = {view: build_eval_inputs(data.x_test, data.y_test, view=view) for view in ("plain", OURS.view)}
    return lambda model, callbacks, view: accuracy_on(model, eval_ds[view], labels, callbacks)


class _QuarterClock(keras.callbacks.Callback):
    """At the end of each quarter epoch: read the training clock (time since fit began, minus every evaluation so
    far), evaluate, and stop at the target or once the clock passes the cap."""

    def __init__(self, evaluate: Callable[[keras.Model], float], target: float, max_seconds: float, name: str):
        super().__init__()
        self.evaluate, self.target, self.max_seconds, self.name = evaluate, target, max_seconds, name
        self.start, self.eval_s, self.curve, self.reached = time.perf_counter(), 0.0, [], None

    def on_epoch_end(self, epoch, logs=None):
        before = time.perf_counter()
        train_s = before - self.start - self.eval_s
        accuracy = self.evaluate(self.model)
        self.eval_s += time.perf_counter() - before
        quarter = round((epoch + 1) / 4, 2)
        self.curve.append({"epoch": quarter, "train_s": round(train_s, 2), "test_accuracy": round(accuracy, 4),
                           "eval_s_so_far": round(self.eval_s, 2)})
        print(f"  {self.name} epoch {quarter:.2f}: {train_s:.1f} s training, test accuracy {accuracy:.4f}", flush=True)
        if accuracy >= self.target:
            self.reached = {"epoch": quarter, "train_s": round(train_s, 2)}
            self.model.stop_training = True
        elif train_s >= self.max_seconds:
            self.model.stop_training = True


def run_recipe(recipe: Recipe, data, config: TrainConfig, target: float, max_seconds: float,
               evaluate: Callable[[keras.Model, list, str], float]) -> dict:
    """Train one recipe on the same stream every recipe gets; its time to `target`, curve and clocks."""
    keras.utils.set_random_seed(config.seed)
    recipe_config = replace(config, batch_size=recipe.batch_size, augment=recipe.augment)
    steps = len(data.x_train) // recipe.batch_size
    quarter = steps // 4
    precision = recipe.precision or keras.mixed_precision.global_policy().name
    with policy_scope(precision):
        model = recipe.build(recipe_config, quarter * 4)
        stream = build_inputs(recipe_config, data.x_train, data.y_train, recipe.view)
        callbacks = recipe.callbacks(recipe_config)
        clock = _QuarterClock(lambda trained: evaluate(trained, callbacks, recipe.view), target, max_seconds,
                              recipe.name)
        load_before = os.getloadavg()[0]
        clock.start = time.perf_counter()
        model.fit(stream, steps_per_epoch=quarter, epochs=4 * recipe.epochs, callbacks=[*callbacks, clock],
                  verbose=0, shuffle=False)
        wall_s = time.perf_counter() - clock.start
    last = clock.curve[-1]
    return {"recipe": recipe.name, "batch_size": recipe.batch_size, "epochs_planned": recipe.epochs,
            "steps_per_quarter": quarter, "parameters": model.count_params(), "xla": bool(model.jit_compile),
            "precision": precision,
            "reached": clock.reached,
            "train_s": last["train_s"], "eval_s": round(clock.eval_s, 2), "wall_s": round(wall_s, 2),
            "evaluations": len(clock.curve), "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "curve": clock.curve}


def compare_line(target: float, results: list[dict], held_out: str = "test") -> str:
    """`time to 99.0%: ours X s, keras-example Y s, pytorch-example Z s; ratio ours/best-peer R`.

    A recipe that did not get there shows `>S s` with S its last training clock (at least the cap, or its whole
    published length); the ratio is then a bound (`>R`, `<R`) or `n/a` when neither side got there."""
    def shown(result: dict) -> str:
        if result["reached"]:
            return f"{result['reached']['train_s']:.1f} s"
        return f">{result['train_s']:.1f} s"

    times = {r["recipe"]: r for r in results}
    ours = times["ours"]
    peers = [r for r in results if r["recipe"] != "ours"]
    reached_peers = [r["reached"]["train_s"] for r in peers if r["reached"]]
    if ours["reached"] and reached_peers:
        ratio = f"{ours['reached']['train_s'] / min(reached_peers):.2f}"
    elif reached_peers:  # ours is slower than at least its last clock
        ratio = f">{ours['train_s'] / min(reached_peers):.2f}"
    elif ours["reached"]:
        ratio = f"<{ours['reached']['train_s'] / min(r['train_s'] for r in peers):.2f}"
    else:
        ratio = "n/a"
    parts = ", ".join(f"{r['recipe']} {shown(r)}" for r in results)
    where = "" if held_out == "test" else f" on the {held_out} split"
    return f"time to {target * 100:.1f}%{where}: {parts}; ratio ours/best-peer {ratio}"


def compare(data, config: TrainConfig, target: float, max_seconds: float, recipes=RECIPES) -> list[dict]:
    evaluate = held_out_accuracy(data)
    results = []
    for recipe in recipes:
        print(f"{recipe.name}: batch {recipe.batch_size}, up to {recipe.epochs} epochs or {max_seconds:g} s of "
              "training", flush=True)
        results.append(run_recipe(recipe, data, config, target, max_seconds, evaluate))
    return results


class _Limited(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def limited(data, train_limit: int | None, test_limit: int | None) -> _Limited:
    x_train, y_train = limit(data.x_train, data.y_train, train_limit)
    x_test, y_test = limit(data.x_test, data.y_test, test_limit)
    return _Limited(x_train, y_train, x_test, y_test)


def set_threads(threads: int) -> None:
    """One TensorFlow thread setting for the whole process, so every recipe computes on the same threads."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def held_out_validation(data: _Limited, size: int) -> _Limited:
    """The trainer's validation split (`mnist-train --validation-size`) becomes the evaluation set, in place of
    the test set: the split that recipe choices are made on (the test set is only ever measured). Raises the
    trainer's ConfigError when nothing would be left to train on."""
    (x_train, y_train), (x_held, y_held) = split_validation(data.x_train, data.y_train, size)
    return _Limited(x_train, y_train, x_held, y_held)


def run_compare(args) -> int:
    minimum = 4 * max(r.batch_size for r in RECIPES)
    data = limited(load_npz(args.data), args.train_limit, args.test_limit)
    if args.validation_size:
        try:
            data = held_out_validation(data, args.validation_size)
        except ConfigError as exc:
            print(f"train_bench.py: error: {exc}", file=sys.stderr)
            return 2
    if len(data.x_train) < minimum:
        print(f"train_bench.py: error: --compare needs at least {minimum} training images (a quarter epoch of "
              "every recipe)", file=sys.stderr)
        return 2
    set_threads(args.threads)
    plan = detect_and_apply()
    config = TrainConfig(seed=args.seed)
    if plan.device == "GPU":  # as trainer.train does; the same for every recipe
        config = replace(config, input_threads=max(config.input_threads, 4))
    held_out = "validation" if args.validation_size else "test"
    print(f"compare on {len(data.x_train)} training images, {len(data.x_test)} {held_out} images, {args.threads} "
          f"TensorFlow threads, {plan.description}, target {args.target}", flush=True)
    results = compare(data, config, args.target, args.max_seconds)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {plan.description}",
               "threads": args.threads, "train_images": len(data.x_train), "evaluated_on": held_out,
               "evaluation_images": len(data.x_test),
               "target": args.target, "max_seconds": args.max_seconds, "seed": args.seed, "recipes": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    for r in results:
        print(f"{r['recipe']}: {r['precision']}, {'XLA' if r['xla'] else 'no XLA'}, {r['evaluations']} evaluations, "
              f"training {r['train_s']:.1f} s + evaluation {r['eval_s']:.1f} s = wall {r['wall_s']:.1f} s; "
              f"load average {r['load_average'][0]} -> {r['load_average'][1]}", flush=True)
    print(compare_line(args.target, results, held_out), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MNIST_DATA", "data/mnist.npz")))
    parser.add_argument("--steps", type=positive_int, default=60, help="steps per throughput round")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--tta-epochs", type=positive_int, default=3,
                        help="one-cycle length of the time-to-accuracy run")
    parser.add_argument("--target", type=positive_fraction, default=0.99, help="test accuracy that stops the clock")
    parser.add_argument("--skip-tta", action="store_true", help="throughput only")
    parser.add_argument("--compare", action="store_true",
                        help="time to --target of our default recipe against the Keras and PyTorch examples")
    parser.add_argument("--train-limit", type=positive_int, default=None,
                        help="--compare: train on the first N training images (smoke runs)")
    parser.add_argument("--test-limit", type=positive_int, default=None,
                        help="--compare: evaluate on the first N test images (default: all 10,000)")
    parser.add_argument("--validation-size", type=positive_int, default=None,
                        help="--compare: evaluate on the last N training images (trained on the rest) instead of "
                             "the test set: the run that recipe choices are made on")
    parser.add_argument("--max-seconds", type=positive_float, default=1800.0,
                        help="--compare: stop a recipe once its training clock passes this (default: 1800)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="--compare: TensorFlow intra- and inter-op threads (default: one per CPU)")
    parser.add_argument("--seed", type=non_negative_int, default=TrainConfig().seed)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.compare:
        return run_compare(args)
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
