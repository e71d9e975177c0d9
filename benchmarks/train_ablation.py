"""What each of the trainer's speed changes bought: training images/s of the model as it was and with each change
added in turn, in one process, on the same images and threads (docs/TRAINER.md's table comes from this).

Variants, cumulative:
  seed         3 stages of 2 blocks at 28/14/7 px, Keras BatchNormalization, batch 128, XLA (the old default)
  no-xla       the same without XLA (oneDNN's convolutions instead of XLA's)
  stem-pool    + a 2x2 max-pool after the stem: the stages run at 14/7/4 px
  one-block    + one block per stage instead of two
  fused-bn     + TensorFlow's fused batch-norm kernel instead of Keras' separate ops
  batch-256    + 256 images per step instead of 128
  average      + the moving average of the weights kept after every step (the current default)
  bfloat16     + Keras' mixed_bfloat16 policy (`mnist-train --precision mixed_bfloat16`, opt-in: trainer.device)

Each variant is compiled and warmed up, then all are timed in alternating rounds (so that load from other
processes hits every variant alike); the table shows each one's best round and its ratio to `seed`.

    .venv/bin/python benchmarks/train_ablation.py --data data/mnist.npz
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import trainer.model as trainer_model  # noqa: E402
from trainer.argtypes import OneLineParser, positive_int  # noqa: E402
from trainer.averaging import WeightAverage  # noqa: E402
from trainer.config import ModelConfig, TrainConfig  # noqa: E402
from trainer.data import load_npz  # noqa: E402
from trainer.device import policy_scope  # noqa: E402
from trainer.train import compile_model  # noqa: E402


class Variant(NamedTuple):
    name: str
    model: ModelConfig
    fused_bn: bool
    batch_size: int
    xla: bool
    average: bool = False
    precision: str = "float32"


SEED_MODEL = ModelConfig(stage_filters=(16, 32, 64), blocks_per_stage=2, stem_pool=False)
POOLED = replace(SEED_MODEL, stem_pool=True, blocks_per_stage=1)
VARIANTS = (
    Variant("seed", SEED_MODEL, False, 128, True),
    Variant("no-xla", SEED_MODEL, False, 128, False),
    Variant("stem-pool", replace(SEED_MODEL, stem_pool=True), False, 128, False),
    Variant("one-block", POOLED, False, 128, False),
    Variant("fused-bn", POOLED, True, 128, False),
    Variant("batch-256", POOLED, True, 256, False),
    Variant("average", POOLED, True, 256, False, True),
    Variant("bfloat16", POOLED, True, 256, False, True, "mixed_bfloat16"),
)
DEFAULT = "average"  # the variant `mnist-train` trains by default; the one after it is opt-in


def keras_bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=trainer_model.BN_MOMENTUM, name=name)


def build(variant: Variant, steps: int) -> keras.Model:
    """The trainer's model for `variant`, compiled by the trainer's own compile_model."""
    fused = trainer_model._bn
    trainer_model._bn = fused if variant.fused_bn else keras_bn
    try:
        with policy_scope(variant.precision):
            model = trainer_model.build_model(variant.model)
    finally:
        trainer_model._bn = fused
    compile_model(model, TrainConfig(), steps * 100, xla=variant.xla)
    return model


def images_per_s(model: keras.Model, x: np.ndarray, y: np.ndarray, variant: Variant) -> float:
    # A fresh average each round, as a training run starts one: its set-up is part of the cost.
    callbacks = [WeightAverage(TrainConfig().average_decay)] if variant.average else []
    start = time.perf_counter()
    model.fit(x, y, batch_size=variant.batch_size, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return len(x) / (time.perf_counter() - start)


def average_update_ms(model: keras.Model, updates: int = 500) -> float:
    """Milliseconds the weight average adds to every training step: its per-step update alone, timed (the
    variants' rounds are too noisy on a shared machine to show a cost this small)."""
    average = WeightAverage(TrainConfig().average_decay)
    average.set_model(model)
    average.on_train_begin()
    average.on_train_batch_end(0)  # trace
    start = time.perf_counter()
    for step in range(updates):
        average.on_train_batch_end(step)
    return (time.perf_counter() - start) / updates * 1000


def run(x_all: np.ndarray, y_all: np.ndarray, images: int, rounds: int,
        variants=VARIANTS) -> tuple[list[dict], dict[str, keras.Model]]:
    """Each variant's best images/s (and its ratio to the first), and each variant's compiled model by name."""
    x = x_all[:images].astype(np.float32)[..., None] / 255.0
    y = keras.utils.to_categorical(y_all[:images], 10)
    models = []
    for variant in variants:
        keras.utils.set_random_seed(0)
        model = build(variant, len(x) // variant.batch_size)
        warm = 4 * variant.batch_size
        images_per_s(model, x[:warm], y[:warm], variant)  # trace, compile, first oneDNN primitives
        models.append(model)
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        for variant, model in zip(variants, models, strict=True):
            rates[variant.name].append(images_per_s(model, x, y, variant))
    base = max(rates[variants[0].name])
    rows = [{"variant": v.name, "parameters": m.count_params(), "images_per_s": round(max(rates[v.name]), 1),
             "ratio_to_seed": round(max(rates[v.name]) / base, 2), "rounds": [round(r, 1) for r in rates[v.name]]}
            for v, m in zip(variants, models, strict=True)]
    return rows, {v.name: m for v, m in zip(variants, models, strict=True)}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MNIST_DATA", "data/mnist.npz")))
    parser.add_argument("--images", type=positive_int, default=7680, help="images per timed round (default 7680)")
    parser.add_argument("--rounds", type=positive_int, default=3)
    args = parser.parse_args(argv)
    if args.images < 4 * max(v.batch_size for v in VARIANTS):
        parser.error(f"--images must be at least {4 * max(v.batch_size for v in VARIANTS)}")
    data = load_npz(args.data)
    print(f"{'variant':<10} {'parameters':>10} {'images/s':>9} {'x seed':>7}  rounds")
    rows, models = run(data.x_train, data.y_train, args.images, args.rounds)
    for row in rows:
        print(f"{row['variant']:<10} {row['parameters']:>10} {row['images_per_s']:>9.0f} {row['ratio_to_seed']:>7.2f}  "
              f"{row['rounds']}", flush=True)
    default = next(row for row in rows if row["variant"] == DEFAULT)
    step_ms = 1000 * TrainConfig().batch_size / default["images_per_s"]
    update_ms = average_update_ms(models[DEFAULT])
    print(f"weight average: {update_ms:.2f} ms an update, {100 * update_ms / step_ms:.1f}% of the default's "
          f"{step_ms:.1f} ms step", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
