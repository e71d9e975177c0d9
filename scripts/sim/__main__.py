"""`python -m scripts.sim up|down|traffic` (what `make sim-up`, `make sim-down` and `make sim-traffic` run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .lifecycle import SimConfig, SimError, down, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.sim", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "traffic"))
    parser.add_argument("--dir", type=Path, default=SimConfig.state_dir,
                        help="state directory: kubeconfig, pid files, logs, the cluster's data (SIM_DIR)")
    parser.add_argument("--name", default=SimConfig.name, help="control plane name (SIM_NAME)")
    parser.add_argument("--port", type=int, default=SimConfig.port, help="frontend port on 127.0.0.1 (SIM_PORT)")
    parser.add_argument("--model-store", type=Path, default=SimConfig.model_store,
                        help="model store root holding <model>/<version>/ (default: models; v1 and v2 are "
                             "trained there when missing)")
    parser.add_argument("--values", type=Path, action="append", default=[], metavar="FILE",
                        help="a values file applied after ci/sim-values.yaml (repeatable; SIM_VALUES), e.g. "
                             "charts/mnist-platform/ci/arm64-embedded-values.yaml: no TF Serving, the frontend "
                             "serves the model store")
    parser.add_argument("--rate", type=float, default=10.0, help="traffic: digits per second (default 10)")
    parser.add_argument("--seconds", type=float, default=300.0, help="traffic: how long (default 300)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a TCP port")
    if not 0 < args.rate <= 100 or not 0 < args.seconds <= 3600:
        parser.error("--rate must be in (0, 100] and --seconds in (0, 3600]")
    for values in args.values:
        if not values.is_file():
            parser.error(f"--values {values}: no such file")
    cfg = SimConfig(name=args.name, state_dir=args.dir.resolve(), port=args.port,
                    model_store=args.model_store.resolve(), values=tuple(v.resolve() for v in args.values))
    try:
        if args.command == "up":
            return up(cfg)
        if args.command == "down":
            return down(cfg)
        from .traffic import run_traffic

        return run_traffic(cfg, args.rate, args.seconds)
    except SimError as exc:
        print(f"sim-{args.command}: error: {exc}", file=sys.stderr)
        if args.command == "up" and (cfg.state_dir / "kwok").exists():
            print(f"sim-up: what started is left running for a look (logs: {cfg.state_dir / 'logs'}); "
                  "`make sim-down` stops it", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sim-{args.command}: interrupted; `make sim-down` stops what was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
