"""Run the stand-in as a process, with tensorflow_model_server's flags.

    python -m tests.support.tfserving_standin --port=8500 --rest_api_port=8501 \
        --model_name=mnist --model_base_path=/path/to/models/mnist
    python -m tests.support.tfserving_standin --port=8500 --rest_api_port=8501 \
        --model_config_file=models.config --model_config_file_poll_wait_seconds=1

It binds 127.0.0.1 only. Flags of the real server that change nothing here (batching, threads, ...)
are accepted and ignored, so the same command line works; unknown flags are an error, as there.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from pathlib import Path

from .errors import ServingError
from .rest import PROMETHEUS_PATH
from .server import StandIn

# Real tensorflow_model_server flags the stand-in accepts without acting on them.
IGNORED_FLAGS = (
    "grpc_socket_path", "rest_api_num_threads", "rest_api_timeout_in_ms", "rest_api_enable_cors_support",
    "enable_batching", "batching_parameters_file", "enable_per_model_batching_parameters", "num_load_threads",
    "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros", "flush_filesystem_caches",
    "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
    "tensorflow_session_config_file", "use_alts_credentials", "ssl_config_file", "platform_config_file",
    "per_process_gpu_memory_fraction", "saved_model_tags", "grpc_channel_arguments", "grpc_max_threads",
    "enable_model_warmup", "num_request_iterations_for_warmup", "prefer_tflite_model", "enable_profiler",
    "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu", "enable_grpc_healthcheck_service",
    "remove_unused_fields_from_bundle_metagraph", "num_tflite_pools", "num_tflite_interpreters_per_pool",
    "enable_signature_method_name_check", "xla_cpu_compilation_enabled", "xla_gpu_compilation_enabled",
    "enable_serialization_as_tensor_content", "force_allow_any_version_labels_for_unavailable_models",
)


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.support.tfserving_standin", allow_abbrev=False,
                                     description="TF Serving stand-in (tensorflow_model_server flags).")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 = no REST API (as the real one)")
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--model_config_file", default="")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0)
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1)
    parser.add_argument("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?", const=True,
                        default=False)
    parser.add_argument("--monitoring_config_file", default="",
                        help="MonitoringConfig text proto; prometheus_config { enable: true } turns metrics on")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for flag in IGNORED_FLAGS:
        parser.add_argument(f"--{flag}", nargs="?", const="true", help=argparse.SUPPRESS)
    return parser


def prometheus_path(monitoring_config_file: str) -> str | None:
    """The metrics path a MonitoringConfig text proto enables, or None (the real server's default: off)."""
    if not monitoring_config_file:
        return None
    text = Path(monitoring_config_file).read_text(encoding="utf-8")
    if not re.search(r"\benable\s*:\s*true\b", text):
        return None
    match = re.search(r'\bpath\s*:\s*"([^"]*)"', text)
    return match.group(1) if match and match.group(1) else PROMETHEUS_PATH


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    if args.version:
        print("TensorFlow ModelServer stand-in (tests/support/tfserving_standin)")
        return 0
    if not args.model_config_file and not args.model_base_path:
        print("error: give --model_base_path (with --model_name) or --model_config_file", file=sys.stderr)
        return 2
    common = {"grpc_port": args.port, "rest_port": args.rest_api_port or None,
              "prometheus_path": prometheus_path(args.monitoring_config_file),
              "file_system_poll_seconds": args.file_system_poll_wait_seconds, "load_timeout_s": None,
              "allow_version_labels_for_unavailable_models": args.allow_version_labels_for_unavailable_models}
    if args.model_config_file:
        standin = StandIn(model_config_file=args.model_config_file,
                          poll_seconds=args.model_config_file_poll_wait_seconds, **common)
    else:
        standin = StandIn(model_base_path=args.model_base_path, model_name=args.model_name, **common)
    # Handlers first: a SIGTERM that comes while loading, or right after the ports open, still stops cleanly.
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        standin.manager.cancel_waits()  # stop waiting for models that may never come

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            standin.start()
        except (ServingError, OSError) as exc:
            detail = f"{exc.code.name}: {exc.message}" if isinstance(exc, ServingError) else str(exc)
            print(f"Failed to start server. Error: {detail}", file=sys.stderr)
            return 1
        sys.stdout.flush()
        stop.wait()
        return 0
    finally:
        standin.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
