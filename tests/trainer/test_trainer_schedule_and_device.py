"""One-cycle learning rate and the device/precision policy (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from trainer.device import AMX_BF16, PRECISIONS, choose_device, cpu_flags, policy_scope
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


def test_cpu_trains_in_float32_by_default_even_with_amx():
    plan = choose_device([])
    assert (plan.device, plan.precision) == ("CPU", "float32")
    # bfloat16 on AMX is faster but cost accuracy in the default run's seeds: opt-in only.
    assert choose_device([], {"avx512f", AMX_BF16}).precision == "float32"


def test_mixed_bfloat16_on_request_says_whether_the_cpu_has_amx():
    plan = choose_device([], {"avx512f", AMX_BF16, "amx_tile"}, "mixed_bfloat16")
    assert (plan.device, plan.precision, plan.description) == ("CPU", "mixed_bfloat16", "CPU with AMX, mixed bfloat16")
    # AVX-512's bfloat16 dot products are not AMX: it still trains, emulated, and the log says so.
    slow = choose_device([], {"avx512f", "avx512_bf16"}, "mixed_bfloat16")
    assert slow.precision == "mixed_bfloat16" and "without AMX" in slow.description
    assert choose_device(["/physical_device:GPU:0"], (), "mixed_bfloat16").device == "GPU"


def test_float32_on_request_on_a_gpu_and_an_unknown_precision_is_refused():
    plan = choose_device(["/physical_device:GPU:0"], (), "float32")
    assert (plan.device, plan.precision) == ("GPU", "float32")
    assert choose_device(["/physical_device:GPU:0"], (), "auto").precision == "mixed_float16"
    assert set(PRECISIONS) == {"auto", "float32", "mixed_bfloat16"}
    with pytest.raises(ValueError, match="precision must be one of auto, float32, mixed_bfloat16"):
        choose_device([], (), "float16")


def test_cpu_flags_are_read_from_the_first_processor_and_missing_cpuinfo_means_none(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    # ARM's /proc/cpuinfo says "Features".
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert cpu_flags(tmp_path / "absent") == set()


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


def test_policy_scope_sets_the_policy_inside_and_restores_it_even_after_an_error():
    import keras

    before = keras.mixed_precision.global_policy().name
    with policy_scope("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(RuntimeError), policy_scope("mixed_float16"):
        raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == before
