"""Which device trains and in which precision: CPU float32 by default, GPU with mixed precision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePlan:
    device: str          # "GPU" or "CPU", as logged and written to metrics.json
    precision: str       # Keras dtype policy name
    description: str     # human-readable, for the log line


def choose_device(gpu_names: list[str]) -> DevicePlan:
    """Pure policy: a visible GPU trains in mixed_float16 (tensor cores); otherwise float32 on the CPU.

    Mixed precision on a CPU is slower and less accurate, so it is only ever chosen with a GPU.
    """
    if gpu_names:
        return DevicePlan("GPU", "mixed_float16", f"GPU ({', '.join(gpu_names)}), mixed precision")
    return DevicePlan("CPU", "float32", "CPU, float32")


def detect_and_apply(log=print) -> DevicePlan:
    """Look for GPUs, set the global Keras dtype policy accordingly, and log the choice."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow memory on demand so a shared GPU node is not grabbed whole.
        tf.config.experimental.set_memory_growth(gpu, True)
    plan = choose_device([gpu.name for gpu in gpus])
    keras.mixed_precision.set_global_policy(plan.precision)
    log(f"device: {plan.description}")
    return plan
