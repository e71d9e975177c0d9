"""One training run: data -> model -> fit -> evaluate -> export -> atomic publish -> (register)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trainer.config import VIEWS, TrainConfig
from trainer.data import Mnist, limit, load_mnist, permuted_labels, resolve_data_path
from trainer.publish import PublishError, ensure_writable, publishing

Log = Callable[[str], None]


class ConfigError(Exception):
    """The arguments cannot make a training run."""


class AccuracyFloorError(Exception):
    """The trained model is below --min-accuracy; nothing was published."""


@dataclass(frozen=True)
class Fitted:
    """What training leaves: the model to publish, its test predictions, and how it got there."""
    model: object                       # keras.Model: the ensemble of the members, or the one member
    history: dict[str, list[float]]     # Keras' per-epoch figures, member after member
    y_test: np.ndarray
    predictions: np.ndarray             # the published model's digit for each test image
    member_accuracy: list[float]        # each member's own test accuracy, in training order
    plan: object                        # trainer.device.DevicePlan
    x_test: np.ndarray


@dataclass(frozen=True)
class RunResult:
    version: int
    path: Path
    test_accuracy: float
    metrics: dict


def git_commit() -> str | None:
    """$GIT_COMMIT (set in the image at build time), else the checkout's HEAD, else None."""
    env = os.environ.get("GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


# XLA compiles the train, test and predict steps once each, then runs them faster on a GPU. On the CPU it
# replaces oneDNN's convolutions with its own: the seed model trained 1.20x faster without it
# (docs/BENCHMARKS.md, "What each speed change bought"), so only GPU runs long enough to pay the compile back
# use it.
XLA_MIN_STEPS = 400


def use_xla(total_steps: int, device: str) -> bool:
    """Pure policy: compile with XLA on a GPU, for runs long enough to amortise the compile time."""
    return device == "GPU" and total_steps >= XLA_MIN_STEPS


def validate_config(config: TrainConfig, n_train: int) -> None:
    """n_train: the training images left after --train-limit and the --validation-size hold-out."""
    if n_train < config.batch_size:
        raise ConfigError(f"{n_train} training images are fewer than one batch of {config.batch_size}")
    if not config.member_views or any(view not in VIEWS for view in config.member_views):
        raise ConfigError(f"member views {list(config.member_views)} must each be one of {', '.join(VIEWS)}")


def split_validation(x: np.ndarray, y: np.ndarray, size: int) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                          tuple[np.ndarray, np.ndarray] | None]:
    """(train, validation): the last `size` training images held out, or no validation when size is 0."""
    if size == 0:
        return (x, y), None
    if size >= len(x):
        raise ConfigError(f"--validation-size {size} leaves no training images of {len(x)}")
    return (x[:-size], y[:-size]), (x[-size:], y[-size:])


def _configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow; with stateless augmentation this makes CPU runs repeatable.

    tf.config.experimental.enable_op_determinism() is not used: Keras then refuses XLA, which costs
    ~1.6x on the CPU. tests/trainer checks that two short same-seed runs (short runs skip XLA) give
    bit-identical weights; long XLA runs are expected to be too but that is not tested (too slow for CI).
    GPU runs are not promised to be bit-identical.
    """
    import keras

    keras.utils.set_random_seed(seed)


def compile_model(model, config: TrainConfig, total_steps: int, device: str = "CPU", xla: bool | None = None) -> None:
    """Optimizer, one-cycle schedule over total_steps, loss and metrics: shared with the benchmarks.

    xla: None compiles with XLA where `use_xla` says; the ablation forces it on or off to time it."""
    import keras

    from trainer.schedule import OneCycle

    # SGD with Nesterov momentum, not Adam: on the validation split it ended as high or higher on each of three
    # seeds (docs/TRAINER.md, "Why this recipe"), as SGD tends to for convolutional nets.
    model.compile(
        optimizer=keras.optimizers.SGD(OneCycle(total_steps, config.max_learning_rate, config.warmup_fraction),
                                       momentum=config.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=use_xla(total_steps, device) if xla is None else xla,
    )


def training_callbacks(config: TrainConfig) -> list:
    """What fit() runs beside the optimizer: the weight average that is evaluated and published (shared with
    benchmarks/train_bench.py)."""
    from trainer.averaging import WeightAverage

    return [WeightAverage(config.average_decay)] if config.average_decay else []


def _fit(model, config: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, steps: int, curve_on,
         view: str) -> dict:
    """model.fit over config.epochs of `steps` on the seeded, augmented stream as `view` shows it; Keras' per-epoch
    history."""
    from trainer.inputs import build_inputs

    return model.fit(
        build_inputs(config, x_train, y_train, view),
        callbacks=training_callbacks(config),
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=curve_on,
        # Progress bars for a person at a terminal; one line per epoch in logs.
        verbose=1 if sys.stdout.isatty() else 2,
        shuffle=False,  # build_inputs shuffles, seeded
    ).history


def member_seed(seed: int, index: int) -> int:
    """The seed member `index` trains with. The first member's is the run's own, so that `--members 1` is the single
    network of the same seed; the others derive from (seed, index), so that two runs' members never share a seed
    (as seed + index would: seed 42's second member would be seed 43's first)."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % 2**31)


def member_view(config: TrainConfig, index: int) -> str:
    """The view (config.VIEWS) member `index` sees: config.member_views, cycled."""
    return config.member_views[index % len(config.member_views)]


def fit_and_evaluate(config: TrainConfig, data: Mnist, log: Log) -> Fitted:
    """Train the members one after the other, average them, and predict the test set."""
    from trainer.device import detect_and_apply
    from trainer.inputs import build_eval_inputs
    from trainer.model import MeanProbabilityLogits, build_ensemble, build_model, float32_copy, member_name, with_view

    plan = detect_and_apply(log, config.precision)
    if plan.device == "GPU":
        # A GPU trains this small net faster than one input thread augments.
        config = replace(config, input_threads=max(config.input_threads, 4))
    x_train, y_train = limit(data.x_train, data.y_train, config.train_limit)
    (x_train, y_train), validation = split_validation(x_train, y_train, config.validation_size)
    validate_config(config, len(x_train))
    if config.shuffle_labels:
        log("WARNING: --shuffle-labels: training on permuted labels, this version is deliberately broken")
        y_train = permuted_labels(y_train, config.seed)
    x_test, y_test = limit(data.x_test, data.y_test, config.test_limit)
    test_inputs = build_eval_inputs(x_test, y_test)
    steps = len(x_train) // config.batch_size
    each = f"{config.epochs} epoch(s) of {steps} steps, batch {config.batch_size}"
    log(f"training on {len(x_train)} images for {each}, {member_view(config, 0)} view" if config.members == 1 else
        f"training {config.members} members one after the other on {len(x_train)} images, each for {each}")
    members, member_logits, member_accuracy, history = [], [], [], {}
    for index in range(config.members):
        member_config = replace(config, seed=member_seed(config.seed, index))
        view = member_view(config, index)
        # The per-epoch curve, as this member's network sees it: on the held-out validation images when asked for
        # (to choose a recipe without looking at the test set), else on the test set, only ever reported. A
        # one-epoch run needs no curve.
        curve_on = (build_eval_inputs(*validation, view=view) if validation is not None else
                    build_eval_inputs(x_test, y_test, view=view) if config.epochs > 1 else None)
        _configure_determinism(member_config.seed)
        name = member_name(index) if config.members > 1 else "mnist_preact_resnet"
        # The network is fitted on the pipeline's images, which are already in its view; the member published is
        # the view (a Deskew layer, or nothing) then the network.
        network = build_model(config.model, name=name if view == "plain" else f"{name}_network")
        compile_model(network, member_config, steps * config.epochs, plan.device)
        if config.members > 1:
            log(f"member {index + 1} of {config.members}: seed {member_config.seed}, {view} view")
        for key, values in _fit(network, member_config, x_train, y_train, steps, curve_on, view).items():
            history.setdefault(key, []).extend(values)
        if plan.precision == "mixed_bfloat16":
            # Trained in bfloat16 (--precision mixed_bfloat16); measured and published in float32, which any CPU
            # serves.
            network = float32_copy(network, config.model)
        model = with_view(network, view, name)
        members.append(model)
        member_logits.append(model.predict(test_inputs, verbose=0))
        member_accuracy.append(float(np.mean(np.argmax(member_logits[-1], axis=-1) == y_test)))
        if config.members > 1:
            log(f"member {index + 1} test accuracy {member_accuracy[-1]:.4f}")
    # The ensemble's answers from its members' own, through the layer the ensemble ends in: no second pass of the
    # members over the test set.
    logits = member_logits[0] if config.members == 1 else MeanProbabilityLogits()(member_logits)
    predictions = np.argmax(logits, axis=-1)
    return Fitted(build_ensemble(members), history, y_test, predictions, member_accuracy, plan, x_test)


def run(config: TrainConfig, log: Log = print) -> RunResult:
    """The whole run; raises ConfigError, DataError, PublishError or AccuracyFloorError with a one-line reason."""
    from trainer.metrics import build_metrics, confusion_matrix

    started = time.monotonic()
    base = Path(config.model_base_path)
    ensure_writable(base)  # before an hour of training, not after
    if config.version is not None and (base / str(config.version)).exists():
        raise PublishError(f"version {config.version} already exists in {base}")
    data = load_mnist(resolve_data_path(config.data))
    log(f"data: {data.source} (sha256 {data.sha256[:12]}...)")
    fitted = fit_and_evaluate(config, data, log)
    y_test, predictions, history = fitted.y_test, fitted.predictions, fitted.history
    accuracy = float(np.mean(predictions == y_test))
    log(f"test accuracy {accuracy:.4f} on {len(y_test)} images")
    if accuracy < config.min_accuracy:
        raise AccuracyFloorError(f"test accuracy {accuracy:.4f} is below --min-accuracy {config.min_accuracy}; "
                                 "nothing published")
    # Imported here, not at the top: argument, data and store errors must not wait for TensorFlow.
    from trainer.export import export_version
    from trainer.report import write_report

    with publishing(base, config.version) as claim:
        metrics = build_metrics(
            labels=y_test, predictions=predictions, model=config.model_name, version=claim.version,
            epochs=config.epochs, duration_s=time.monotonic() - started, device=fitted.plan.device,
            dataset_sha256=data.sha256, git_commit=git_commit(), history=history,
            extra={"train_examples": int(min(len(data.x_train), config.train_limit or len(data.x_train))
                                         - config.validation_size),
                   "validation_examples": config.validation_size,
                   "batch_size": config.batch_size, "seed": config.seed, "precision": fitted.plan.precision,
                   "members": config.members, "member_test_accuracy": fitted.member_accuracy,
                   "member_views": [member_view(config, index) for index in range(config.members)],
                   "shuffled_labels": config.shuffle_labels})
        extra_dir = export_version(fitted.model, claim.tmp_dir, config.model_name,
                                   fitted.x_test[:8, :, :, None] / 255.0, metrics)
        write_report(extra_dir, history, confusion_matrix(y_test, predictions), accuracy,
                     curve_label="validation" if config.validation_size else "test")
    final = claim.final_dir
    from trainer.register import register

    register(config.register, metrics, final, log)
    return RunResult(claim.version, final, accuracy, metrics)


__all__ = ["AccuracyFloorError", "ConfigError", "PublishError", "RunResult", "run"]
