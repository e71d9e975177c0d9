"""Training configuration: one dataclass, the single source of every default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the pre-activation ResNet."""

    stem_filters: int = 16
    stage_filters: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 2
    weight_decay: float = 1e-4
    num_classes: int = 10


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the CLI fills it, the library only reads it."""

    data: Path | None = None
    model_base_path: Path = Path("models/mnist")
    model_name: str = "mnist"
    epochs: int = 10
    batch_size: int = 128
    max_learning_rate: float = 3e-3
    # Fraction of the steps spent warming the learning rate up (one-cycle).
    warmup_fraction: float = 0.25
    label_smoothing: float = 0.1
    train_limit: int | None = None
    test_limit: int | None = None
    version: int | None = None
    seed: int = 42
    min_accuracy: float = 0.0
    augment: bool = True
    # Deliberately broken candidate for rollback demos/tests: trains on permuted labels.
    shuffle_labels: bool = False
    register: str = "auto"
    # tf.data threads. One thread prepares ~36,000 augmented images/s, far more than the CPU trains;
    # more threads only compete with the training step for the same cores. Raised on a GPU.
    input_threads: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
