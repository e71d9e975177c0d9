"""Which device trains and in which precision: a GPU in mixed float16, a CPU in float32, unless asked otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# What `--precision` accepts: "auto" is the device's default below; the others are Keras dtype policies.
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# The CPU flag of Intel's Advanced Matrix Extensions for bfloat16 (Sapphire Rapids and later): oneDNN runs
# bfloat16 convolutions on its tile units. Without it bfloat16 is emulated and slower than float32.
AMX_BF16 = "amx_bf16"


@dataclass(frozen=True)
class DevicePlan:
    device: str          # "GPU" or "CPU", as logged and written to metrics.json
    precision: str       # Keras dtype policy name
    description: str     # human-readable, for the log line


def choose_device(gpu_names: list[str], cpu_flags: Iterable[str] = (), requested: str = "auto") -> DevicePlan:
    """Pure policy. By default a visible GPU trains in mixed_float16 (tensor cores) and a CPU in float32.

    mixed_bfloat16 is opt-in: on a CPU with AMX it trains about 1.3x faster than float32, but three seeds of the
    default run scored about 0.0006 lower (docs/TRAINER.md, "GPU and mixed precision"), so it is not the default.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    device = "GPU" if gpu_names else "CPU"
    where = f"GPU ({', '.join(gpu_names)})" if gpu_names else "CPU"
    if requested == "mixed_bfloat16":
        if not gpu_names:
            where = "CPU with AMX" if AMX_BF16 in set(cpu_flags) else "CPU without AMX (bfloat16 emulated, slow)"
        return DevicePlan(device, "mixed_bfloat16", f"{where}, mixed bfloat16")
    if gpu_names and requested == "auto":
        return DevicePlan(device, "mixed_float16", f"{where}, mixed precision")
    return DevicePlan(device, "float32", f"{where}, float32")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first processor's feature flags (Linux); empty where /proc/cpuinfo is not there to read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def detect_and_apply(log=print, requested: str = "auto") -> DevicePlan:
    """Look for GPUs (and the CPU's features), set the global Keras dtype policy accordingly, and log the choice."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow memory on demand so a shared GPU node is not grabbed whole.
        tf.config.experimental.set_memory_growth(gpu, True)
    plan = choose_device([gpu.name for gpu in gpus], cpu_flags(), requested)
    keras.mixed_precision.set_global_policy(plan.precision)
    log(f"device: {plan.description}")
    return plan


@contextmanager
def policy_scope(precision: str) -> Iterator[None]:
    """Keras' global dtype policy set to `precision` inside the block and restored after it: for a model built in
    another precision than the run's (trainer.model.float32_copy, the benchmarks' reference recipes)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
