"""A real publisher process for the publishing tests: claims a version, writes files slowly, commits.

Usage: python publisher_proc.py BASE [--version N] [--files K] [--delay S] [--hold S]
Prints "claimed N" as soon as it holds a version, "published N" at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from trainer.publish import PublishError, publishing

PAYLOAD = b"x" * 4096


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base", type=Path)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hold", type=float, default=0.0, help="sleep after claiming, before writing")
    args = parser.parse_args()
    try:
        with publishing(args.base, args.version) as claim:
            print(f"claimed {claim.version}", flush=True)
            time.sleep(args.hold)
            for i in range(args.files):
                (claim.tmp_dir / f"part-{i}").write_bytes(PAYLOAD)
                time.sleep(args.delay)
            # Written last: a version dir with this file is complete.
            (claim.tmp_dir / "COMPLETE").write_text(str(args.files))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 5
    print(f"published {claim.version}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
