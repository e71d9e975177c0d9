"""`python -m scripts.demo [promote|rollback]` (what `make demo` and `make demo-rollback` run)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .app import DemoConfig, run
from .rollout import SCENARIOS


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__)
    parser.add_argument(
        "scenario",
        nargs="?",
        default="promote",
        choices=sorted(SCENARIOS),
        help="promote: canary of v2 over v1; rollback: canary of the broken v3 over v2",
    )
    parser.add_argument("--port", type=int, default=8080, help="frontend port on 127.0.0.1 (DEMO_PORT)")
    parser.add_argument(
        "--exit",
        dest="exit_after",
        action="store_true",
        help="exit after the summary instead of serving until Ctrl-C (DEMO_EXIT=1)",
    )
    parser.add_argument("--retrain", action="store_true", help="train the versions again even if present (RETRAIN=1)")
    parser.add_argument("--rate", type=float, default=15.0, help="digits per second the traffic generator sends")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=DemoConfig.model_dir,
        help="model store <base>/<model> (default: models/mnist)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DemoConfig.workdir,
        help="where the rollout, routing/serving configs and logs go (default: build/demo)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA") or DemoConfig.data),
        help="MNIST in keras' layout (default: $MNIST_DATA, else data/mnist.npz)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a TCP port")
    if not 0 < args.rate <= 200:
        parser.error("--rate must be in (0, 200]")
    return DemoConfig(
        scenario=SCENARIOS[args.scenario],
        port=args.port,
        exit_after=args.exit_after,
        retrain=args.retrain,
        rate_per_s=args.rate,
        model_dir=args.model_dir.resolve(),
        workdir=args.workdir.resolve(),
        data=args.data.resolve(),
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
