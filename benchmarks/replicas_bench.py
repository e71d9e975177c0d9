"""How the frontend's TF Serving backend spreads predictions over replicas behind one name (docs/BENCHMARKS.md).

Starts `--replicas` + 1 TF Serving stand-ins, each a process on its own loopback address (127.0.0.2, ...) with the
same ports, and a DNS server on 127.0.0.1 that answers one name with the first `--replicas` of them, as a headless
Service's DNS does with its ready pods. The frontend's backend (gRPC or REST, the code the frontend runs, with the
shipped re-resolution period unless --resolve-every says otherwise) is pointed at that name, then:

1. `--requests` predictions from `--threads` threads: each replica's share of them;
2. the spare replica is added to DNS and the load goes on: seconds until it answers its first prediction;
3. one replica is SIGKILLed mid-load (it leaves DNS a second later): every request must still be answered.

The last line is `replicas N: share min A% max B%; failed F; added replica first request after S s`.

    .venv/bin/python benchmarks/replicas_bench.py --replicas 3 --requests 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from frontend.config import SETTINGS_BY_KEY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3, help="replicas in DNS at the start (one more is added)")
    parser.add_argument("--requests", type=int, default=3000, help="predictions in the spread phase")
    parser.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--threads", type=int, default=8, help="concurrent callers")
    parser.add_argument("--resolve-every", type=float, default=SETTINGS_BY_KEY["SERVING_RESOLVE_S"].default,
                        help="MNIST_SERVING_RESOLVE_S for the backend (default: the shipped default)")
    parser.add_argument("--model-base-path", type=Path, default=REPO / "models" / "mnist",
                        help="a model store with integer version directories (make demo trains one)")
    parser.add_argument("--json-out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.requests < 1 or args.threads < 1 or not args.resolve_every > 0:
        parser.error("--replicas, --requests and --threads must be >= 1 and --resolve-every > 0")
    versions = sorted(int(d.name) for d in args.model_base_path.glob("*") if d.name.isdigit())
    if not versions:
        parser.error(f"{args.model_base_path} holds no version directory; train one first (make demo)")

    from frontend.backends.grpc_backend import GrpcBackend
    from frontend.backends.rest import RestBackend

    from tests.support.serving_replicas import Fleet, measure

    def make_backend(fleet, events):
        resolve = fleet.dns.resolver()
        if args.transport == "grpc":
            return GrpcBackend(fleet.grpc_target, "mnist", resolve=resolve, resolve_every_s=args.resolve_every,
                               events=events)
        return RestBackend(fleet.rest_url, "mnist", resolve=resolve, resolve_every_s=args.resolve_every,
                           events=events)

    with (tempfile.TemporaryDirectory(prefix="replicas-bench-") as workdir,
          Fleet(args.model_base_path, versions[-1:], args.replicas + 1, args.replicas, Path(workdir)) as fleet):
        result = measure(fleet, make_backend, args.requests, threads=args.threads)
    print(f"transport {args.transport}, resolve every {args.resolve_every:g} s, {args.threads} threads: "
          f"{result.sent} predictions in {result.seconds:.1f} s; retries {dict(result.retries) or 0}")
    for host, share in sorted(result.shares.items()):
        print(f"  {host}: {100 * share:.1f}% of the first {result.requests}")
    for failure, count in result.failures.most_common(5):
        print(f"  failed {count}x: {failure}")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "transport": args.transport, "replicas": result.replicas, "requests": result.requests,
            "shares": result.shares, "failed": result.failed, "failures": dict(result.failures),
            "added_first_request_s": result.added_first_request_s, "retries": dict(result.retries),
            "sent": result.sent, "seconds": result.seconds}, indent=2))
    print(result.line())
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
