"""`mnist-operator`: `run` (the kopf operator in a cluster) and `local` (one rollout against files, no cluster)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_operator.config import ENV_SETTINGS, env


def _env_help() -> str:
    return "environment (run):\n" + "\n".join(f"  {s.name}  {s.help} (default: {s.default!r})"
                                             for s in ENV_SETTINGS.values())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mnist-operator", description="ModelRollout operator of mnist-platform.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the kopf operator against the cluster in the kubeconfig / service account",
                         epilog=_env_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="namespace to watch (repeatable); default $MNIST_OPERATOR_NAMESPACE, else cluster-wide")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--standalone", action="store_true", help="no kopf peering (a single replica)")
    run.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                     help="liveness endpoint URL kopf serves (default: %(default)s; '' for none)")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument("--create-configmaps", action="store_true",
                     help="at start, create the model config and routing ConfigMaps of the environment that are "
                          "missing, with their initial (empty) content; never change an existing one")
    run.add_argument("--initial-rollout", action="store_true",
                     help="when a version is registered while nothing routes to its model and no ModelRollout of "
                          "it exists, roll it in (ModelRollout <model>-initial)")

    loc = sub.add_parser("local", help="drive ONE rollout against files and a running frontend (no cluster)",
                         description="Exit 0 on Promoted; 1 with one line on RolledBack/Failed; 2 on bad input; "
                                     "3 on --timeout.")
    loc.add_argument("--rollout", required=True, type=Path, help="ModelRollout YAML (e.g. k8s/examples/canary.yaml)")
    loc.add_argument("--routing-file", required=True, type=Path, help="routing.json the frontend reads")
    loc.add_argument("--serving-config", required=True, type=Path, help="TF Serving model config file to write")
    loc.add_argument("--metrics-url", required=True, action="append", default=[],
                     help="frontend /metrics URL (repeatable, one per frontend process group)")
    loc.add_argument("--model-base-path", type=Path, default=os.environ.get("MNIST_MODEL_BASE_PATH") or None,
                     help="model dir <base>/<model> for the gate (saved_model.pb, metrics.json) and the config's "
                          "base_path (default: $MNIST_MODEL_BASE_PATH; without either, the gate asks the "
                          "frontend's /readyz and knows no offline accuracy)")
    loc.add_argument("--serving-rest", action="append", default=[],
                     help="TF Serving REST base URL: the AVAILABLE gate asks its model status API (repeatable, one "
                          "per replica: a version counts as AVAILABLE when every one reports it)")
    loc.add_argument("--tick", type=float, help="seconds between decisions (default: interval/2, at most 1)")
    loc.add_argument("--timeout", type=float, help="give up (exit 3) after this many seconds")
    loc.add_argument("--status-file", type=Path,
                     help="persist the rollout status here; a rerun with the same file continues where it stopped")
    loc.add_argument("--events-file", type=Path,
                     help="append every event here as a JSON line {time, type, reason, message} (for programs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "local":
        from mnist_operator.local import LocalError, LocalOptions, run_local

        opts = LocalOptions(rollout=args.rollout, routing_file=args.routing_file, serving_config=args.serving_config,
                            metrics_urls=args.metrics_url, model_base_path=args.model_base_path,
                            serving_rest=args.serving_rest or None, tick_s=args.tick, timeout_s=args.timeout,
                            status_file=args.status_file, events_file=args.events_file)
        try:
            return run_local(opts)
        except LocalError as exc:
            print(f"mnist-operator local: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("mnist-operator local: interrupted; the files keep the last decision", file=sys.stderr)
            return 130
    import kopf

    import mnist_operator.handlers  # noqa: F401 - registers the handlers

    if args.create_configmaps or args.initial_rollout:
        from mnist_operator import bootstrap  # registers its handlers; they do what `enabled` turns on

        bootstrap.enabled = bootstrap.Enabled(create_configmaps=args.create_configmaps,
                                              initial_rollout=args.initial_rollout)

    kopf.configure(verbose=args.verbose)
    namespaces = args.namespace or ([env("MNIST_OPERATOR_NAMESPACE")] if env("MNIST_OPERATOR_NAMESPACE") else [])
    clusterwide = args.all_namespaces or not namespaces
    if len(namespaces) == 1 and not clusterwide:
        # One watched namespace, given on the command line: discovered ModelVersions go there too (config.py reads
        # it from the environment; without this they went to $POD_NAMESPACE or "default").
        os.environ["MNIST_OPERATOR_NAMESPACE"] = namespaces[0]
    kopf.run(standalone=args.standalone, clusterwide=clusterwide, namespaces=[] if clusterwide else namespaces,
             liveness_endpoint=args.liveness or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
