"""One-cycle learning rate: linear warm-up to the peak, then cosine annealing to nearly zero."""

from __future__ import annotations

import math

import keras
from keras import ops

# Start and end of the cycle as fractions of the peak (Smith & Topin's super-convergence recipe).
START_DIVISOR = 25.0
END_DIVISOR = 1e4


def one_cycle_lr(step: float, total_steps: int, max_lr: float, warmup_fraction: float) -> float:
    """Learning rate at `step` (pure Python; the reference the Keras schedule is tested against)."""
    warmup = max(1, int(total_steps * warmup_fraction))
    start, end = max_lr / START_DIVISOR, max_lr / END_DIVISOR
    if step < warmup:
        return start + (max_lr - start) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return end + (max_lr - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="trainer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The same curve as one_cycle_lr, as a graph-friendly Keras schedule."""

    def __init__(self, total_steps: int, max_lr: float, warmup_fraction: float = 0.25):
        self.total_steps = int(total_steps)
        self.max_lr = float(max_lr)
        self.warmup_fraction = float(warmup_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(1, int(self.total_steps * self.warmup_fraction)))
        start, end = self.max_lr / START_DIVISOR, self.max_lr / END_DIVISOR
        rising = start + (self.max_lr - start) * step / warmup
        progress = ops.minimum(1.0, (step - warmup) / float(max(1, self.total_steps - warmup)))
        falling = end + (self.max_lr - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict:
        return {"total_steps": self.total_steps, "max_lr": self.max_lr, "warmup_fraction": self.warmup_fraction}
