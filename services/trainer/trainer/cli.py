"""`mnist-train`: train the MNIST ResNet and publish it as the next SavedModel version.

Exit codes: 0 published; 2 bad arguments; 3 unreadable or invalid data; 4 below --min-accuracy;
5 model store not writable or version taken; 1 anything unexpected. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainer.argtypes import (
    EXIT_USAGE,
    OneLineParser,
    choice_list,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from trainer.config import VIEWS, TrainConfig
from trainer.device import PRECISIONS

EXIT_OK, EXIT_UNEXPECTED, EXIT_DATA, EXIT_ACCURACY, EXIT_STORE = 0, 1, 3, 4, 5
DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnist-train",
        description="Train the MNIST ResNet and publish it atomically as <model-base-path>/<version>/.",
        epilog="exit codes: 0 published, 2 bad arguments, 3 bad data, 4 below --min-accuracy, "
               "5 model store not writable or version taken, 1 unexpected error",
    )
    parser.add_argument("--data", type=Path, default=None, metavar="PATH",
                        help="mnist.npz in keras' layout (default: $MNIST_DATA, else keras' download)")
    parser.add_argument("--model-base-path", type=Path, default=DEFAULTS.model_base_path, metavar="DIR",
                        help="model store directory of this model, e.g. /models/mnist (default: %(default)s)")
    parser.add_argument("--model-name", default=DEFAULTS.model_name, metavar="NAME",
                        help="model name in metrics, warmup requests and ModelVersion (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, metavar="N",
                        help="passes over the training images, for each member (default: %(default)s)")
    parser.add_argument("--members", type=positive_int, default=DEFAULTS.members, metavar="N",
                        help="networks trained one after the other from different seeds; the published model "
                             "averages their probabilities (default: %(default)s; 1: one network)")
    parser.add_argument("--member-views", type=choice_list(VIEWS), default=DEFAULTS.member_views, metavar="LIST",
                        help="what each member sees of a digit, cycled over the members: comma-separated, each "
                             "plain (the image as sent) or deskewed (sheared upright and centred, by the model "
                             f"itself) (default: {','.join(DEFAULTS.member_views)})")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size, metavar="N",
                        help="images per training step (default: %(default)s)")
    parser.add_argument("--learning-rate", type=positive_float, default=DEFAULTS.max_learning_rate, metavar="LR",
                        help="peak of the one-cycle schedule of SGD with Nesterov momentum (default: %(default)s)")
    parser.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                        help="train on the first N training images only (smoke runs)")
    parser.add_argument("--validation-size", type=non_negative_int, default=DEFAULTS.validation_size, metavar="N",
                        help="hold out the last N training images and measure the per-epoch curve on them, to "
                             "choose epochs or a learning rate without looking at the test set (default: "
                             "%(default)s: the curve is measured on the test set, only ever reported)")
    parser.add_argument("--test-limit", type=positive_int, default=None, metavar="N",
                        help="evaluate on the first N test images only (default: all 10,000)")
    parser.add_argument("--version", type=positive_int, default=None, metavar="N",
                        help="version to publish (default: the next free integer); fails if taken")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULTS.seed, metavar="N",
                        help="seed of every random choice; same seed on CPU, same model (default: %(default)s)")
    parser.add_argument("--min-accuracy", type=fraction, default=DEFAULTS.min_accuracy, metavar="FRACTION",
                        help="refuse to publish below this test accuracy (default: %(default)s)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation (random shifts, rotations and scaling, after the first 2.5%% of the steps)")
    parser.add_argument("--shuffle-labels", action="store_true",
                        help="train on shuffled labels: a deliberately broken candidate for rollback demos/tests")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                        metavar="{" + ",".join(PRECISIONS) + "}",
                        help="auto = mixed float16 on a GPU, float32 on a CPU (default: %(default)s); "
                             "mixed_bfloat16 trains about 1.3x faster on a CPU with AMX, a little less accurately; "
                             "its model is published in float32")
    parser.add_argument("--register", choices=("auto", "always", "never"), default=DEFAULTS.register,
                        metavar="{auto,always,never}",
                        help="create a ModelVersion resource after publishing: auto = when running in a cluster "
                             "(default: %(default)s); failures only warn")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=args.data, model_base_path=args.model_base_path, model_name=args.model_name, epochs=args.epochs,
        members=args.members, member_views=args.member_views, batch_size=args.batch_size, max_learning_rate=args.learning_rate,
        train_limit=args.train_limit, validation_size=args.validation_size, test_limit=args.test_limit,
        version=args.version, seed=args.seed, min_accuracy=args.min_accuracy, augment=not args.no_augment,
        shuffle_labels=args.shuffle_labels, register=args.register, precision=args.precision,
    )


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.train_limit is not None and args.train_limit < args.batch_size:
        parser.error(f"--train-limit {args.train_limit} is smaller than one batch (--batch-size {args.batch_size})")
    if args.train_limit is not None and args.validation_size >= args.train_limit:
        parser.error(f"--validation-size {args.validation_size} leaves none of --train-limit {args.train_limit}")
    config = config_from_args(args)
    # TensorFlow's C++ start-up chatter hides what a person needs; an explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from trainer.data import DataError
    from trainer.publish import PublishError
    from trainer.train import AccuracyFloorError, ConfigError, run

    def fail(code: int, message: str) -> int:
        print(f"mnist-train: error: {message}", file=sys.stderr, flush=True)
        return code

    try:
        result = run(config, log=_log)
    except ConfigError as exc:
        return fail(EXIT_USAGE, str(exc))
    except DataError as exc:
        return fail(EXIT_DATA, str(exc))
    except AccuracyFloorError as exc:
        return fail(EXIT_ACCURACY, str(exc))
    except PublishError as exc:
        return fail(EXIT_STORE, str(exc))
    except KeyboardInterrupt:
        return fail(130, "interrupted; nothing published")
    # Last line, for people and scripts alike.
    print(f"published version {result.version} at {result.path} test_accuracy {result.test_accuracy:.4f}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
