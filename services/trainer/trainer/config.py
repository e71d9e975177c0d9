"""Training configuration: one dataclass, the single source of every default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# What a member sees of each digit: "plain", the image as sent, or "deskewed", sheared upright and centred
# (trainer.deskew). The published model applies the view itself, so every member is sent the same image.
VIEWS = ("plain", "deskewed")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the pre-activation ResNet."""

    stem_filters: int = 16
    stage_filters: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    # A 2x2 max-pool after the stem, so the first stage runs at 14x14.
    stem_pool: bool = True
    # Keras' L2 adds weight_decay * w^2 to the loss, so SGD's step decays each kernel by 2 * 2.5e-4 = 5e-4 per unit
    # of learning rate: the usual weight decay for SGD-trained ResNets.
    weight_decay: float = 2.5e-4
    num_classes: int = 10


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the CLI fills it, the library only reads it."""

    data: Path | None = None
    model_base_path: Path = Path("models/mnist")
    model_name: str = "mnist"
    # Passes over the training images, for each member.
    epochs: int = 13
    # Networks trained one after the other from different seeds; the published model averages their
    # probabilities (trainer.model.build_ensemble). 1 publishes the one network. Four, not three: on the validation
    # split a fourth member still removed misses, a fifth no longer did, and four of 13 epochs fit in 10 minutes on
    # 2 cores (docs/TRAINER.md, "Why this recipe").
    members: int = 4
    # The view (VIEWS) each member sees, cycled: member i sees member_views[i % len(member_views)]. Deskewed
    # digits trained better members and better ensembles on the validation split (docs/TRAINER.md).
    member_views: tuple[str, ...] = ("deskewed",)
    batch_size: int = 256
    # Peak of the one-cycle schedule of SGD with Nesterov momentum (trainer.train.compile_model).
    max_learning_rate: float = 0.2
    momentum: float = 0.9
    # Fraction of the steps spent warming the learning rate up (one-cycle): short, so that the first epoch
    # already learns at the peak rate (docs/TRAINER.md).
    warmup_fraction: float = 0.005
    label_smoothing: float = 0.1
    # Decay (at most) of the moving average of the weights that is evaluated and published
    # (trainer.averaging): about the last 1/(1 - decay) steps. 0 publishes the last step's weights.
    average_decay: float = 0.999
    train_limit: int | None = None
    # The last N training images held out for the per-epoch curve: the split a recipe is chosen on.
    validation_size: int = 0
    test_limit: int | None = None
    version: int | None = None
    seed: int = 42
    min_accuracy: float = 0.0
    augment: bool = True
    # Share of a member's steps on the plain images before augmentation starts: the digits are learnt as they are
    # first, and 99% comes sooner (docs/TRAINER.md, "Why this recipe"). A fraction, like the warm-up, so that a
    # default member's first third of an epoch (0.025 of 13 epochs) is plain while a short run is augmented nearly
    # throughout.
    clean_fraction: float = 0.025
    # Share of the training images whose strokes are thickened or thinned (trainer.inputs.random_stroke). Off:
    # on the validation split it cost accuracy, and the real-world set gained only within noise (docs/TRAINER.md).
    stroke_probability: float = 0.0
    # Deliberately broken candidate for rollback demos/tests: trains on permuted labels.
    shuffle_labels: bool = False
    register: str = "auto"
    # Keras dtype policy (trainer.device.PRECISIONS): "auto" is mixed float16 on a GPU and float32 on a CPU;
    # "mixed_bfloat16" is the opt-in for CPUs with AMX (faster, a little less accurate: docs/TRAINER.md).
    precision: str = "auto"
    # tf.data threads. One thread prepares ~36,000 augmented images/s, far more than the CPU trains;
    # more threads only compete with the training step for the same cores. Raised on a GPU.
    input_threads: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
