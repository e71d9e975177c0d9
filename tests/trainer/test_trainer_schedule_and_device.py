"""One-cycle learning rate and the device/precision policy (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from trainer.device import choose_device
from trainer.schedule import END_DIVISOR, START_DIVISOR, OneCycle, one_cycle_lr
from trainer.train import XLA_MIN_STEPS, use_xla


def test_one_cycle_rises_to_the_peak_then_anneals_to_nearly_zero():
    total, peak = 1000, 3e-3
    lrs = [one_cycle_lr(s, total, peak, 0.25) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / START_DIVISOR)
    assert max(lrs) == pytest.approx(peak)
    assert int(np.argmax(lrs)) == 250
    assert lrs[-1] == pytest.approx(peak / END_DIVISOR)
    assert all(a <= b for a, b in zip(lrs[:250], lrs[1:251], strict=True))
    assert all(a >= b for a, b in zip(lrs[250:-1], lrs[251:], strict=True))


def test_keras_schedule_follows_the_reference_curve():
    schedule = OneCycle(total_steps=400, max_lr=0.01, warmup_fraction=0.3)
    for step in (0, 1, 50, 119, 120, 121, 250, 399, 400, 500):
        assert float(schedule(step)) == pytest.approx(one_cycle_lr(step, 400, 0.01, 0.3), rel=1e-5)
    assert OneCycle(**schedule.get_config()).get_config() == schedule.get_config()


def test_cpu_trains_in_float32():
    plan = choose_device([])
    assert (plan.device, plan.precision) == ("CPU", "float32")


def test_gpu_trains_in_mixed_precision_and_says_which_gpu():
    plan = choose_device(["/physical_device:GPU:0"])
    assert (plan.device, plan.precision) == ("GPU", "mixed_float16")
    assert "GPU:0" in plan.description and "mixed precision" in plan.description


def test_xla_only_on_a_gpu_and_for_runs_long_enough_to_pay_the_compile_back():
    assert not use_xla(62, "GPU")
    assert use_xla(XLA_MIN_STEPS, "GPU")
    assert use_xla(4680, "GPU")
    # On the CPU oneDNN's convolutions beat XLA's for this net (docs/BENCHMARKS.md).
    assert not use_xla(4680, "CPU")
