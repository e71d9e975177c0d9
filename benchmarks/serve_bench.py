"""Serving benchmark: the frontend (real gunicorn) against calling the same backend directly, on loopback.

For each backend (the gRPC TF Serving stand-in in its own process, and the embedded SavedModel backend), each
batch size (1 and 32 images) and each concurrency (1 and 16 by default) it measures requests/s and p50/p99
latency of (a) direct calls through the frontend's own backend client (GrpcBackend / EmbeddedBackend) from
threads in this process and (b) POST /v1/predict through gunicorn with keep-alive HTTP connections, and prints
a markdown table with the ratios. Every loop is bounded by --duration seconds and --max-requests requests (split into
--rounds alternating direct/frontend slices);
all traffic goes to 127.0.0.1.

    .venv/bin/python benchmarks/serve_bench.py --model-base-path models/mnist --version 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url_host: str, port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(url_host, port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"serve_bench: {url_host}:{port}{path} not ready after {timeout:.0f} s")


def run_load(call: Callable[[], None], concurrency: int, duration: float, max_requests: int,
             warmup: int = 5) -> dict[str, float]:
    """Run `call` from `concurrency` threads until duration or max_requests; latency percentiles and req/s."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    lock = threading.Lock()
    budget = [max_requests]
    stop_at = time.monotonic() + duration
    errors = [0]

    def worker() -> None:
        local = []
        while time.monotonic() < stop_at:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            started = time.perf_counter()
            try:
                call()
            except Exception:  # counted, and the run is marked
                errors[0] += 1
                continue
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {"latencies": latencies, "errors": errors[0], "elapsed": elapsed}


def summarize(runs: list[dict]) -> dict[str, float]:
    latencies = [x for run in runs for x in run["latencies"]]
    values = np.asarray(latencies) * 1000
    elapsed = sum(run["elapsed"] for run in runs)
    return {"requests": len(latencies), "errors": sum(run["errors"] for run in runs), "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(values, 50)) if len(values) else float("nan"),
            "p99_ms": float(np.percentile(values, 99)) if len(values) else float("nan")}


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_frontend(env_extra: dict[str, str], workers: int, threads: int, workdir: Path, name: str) -> tuple[
        Process, int]:
    port = free_port()
    env = {**os.environ, "MNIST_BIND": f"127.0.0.1:{port}", "MNIST_WORKERS": str(workers),
           "MNIST_THREADS": str(threads), "MNIST_ACCESS_LOG": "0", "MNIST_LOG_LEVEL": "warning", **env_extra}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = Process([sys.executable, "-m", "frontend.cli"], env, workdir / f"frontend-{name}.log")
    try:
        wait_http("127.0.0.1", port, "/readyz", 180)
    except BaseException:
        process.stop()  # never leave a server behind
        raise
    return process, port


def http_caller(port: int, body: bytes) -> Callable[[], None]:
    local = threading.local()

    def call() -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-base-path", default=str(REPO / "models" / "mnist"),
                        help="directory of SavedModel versions (default: models/mnist from `make demo`)")
    parser.add_argument("--version", type=int, default=None, help="version to serve (default: the latest)")
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA", str(REPO / "data" / "mnist.npz")))
    parser.add_argument("--backends", default="grpc,embedded")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement (bound)")
    parser.add_argument("--max-requests", type=int, default=5000, help="requests per measurement (bound)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating direct/frontend slices per measurement (evens out load changes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json-out", help="also write the results here")
    args = parser.parse_args()

    base = Path(args.model_base_path)
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []
    if not versions:
        raise SystemExit(f"serve_bench: no model versions in {base}; train one (make demo) or pass --model-base-path")
    version = args.version or versions[-1]
    with np.load(args.data) as data:
        digits = data["x_test"][:64]
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    # Serve only the benchmarked version (TF Serving's default policy loads just the latest one).
    served = workdir / "models" / "mnist"
    served.mkdir(parents=True)
    (served / str(version)).symlink_to((base / str(version)).resolve(), target_is_directory=True)
    base = served
    routing = workdir / "routing.json"
    routing.write_text(json.dumps({"model": "mnist", "strategy": "single", "routes": [
        {"version": version, "label": "stable", "weight": 100}], "sticky_header": None, "shadow": None,
        "rollout": None, "generation": 1}))
    batches = [int(b) for b in args.batches.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = []
    for kind in args.backends.split(","):
        standin = None
        try:
            if kind == "grpc":
                grpc_port, rest_port = free_port(), free_port()
                standin = Process([sys.executable, "-m", "tests.support.tfserving_standin", "--port", str(grpc_port),
                                   "--rest_api_port", str(rest_port), "--model_name", "mnist",
                                   "--model_base_path", str(base.resolve())],
                                  {**os.environ, "PYTHONPATH": str(REPO)}, workdir / "standin.log")
                wait_http("127.0.0.1", rest_port, "/v1/models/mnist", 180)  # on failure `finally` stops it
                from frontend.backends.grpc_backend import GrpcBackend

                direct_backend = GrpcBackend(f"127.0.0.1:{grpc_port}", "mnist")
                frontend_env = {"MNIST_BACKEND": "grpc", "MNIST_SERVING_GRPC": f"127.0.0.1:{grpc_port}"}
            else:
                from frontend.backends.embedded import EmbeddedBackend

                direct_backend = EmbeddedBackend(str(base), threads=args.threads)
                frontend_env = {"MNIST_BACKEND": "embedded", "MNIST_MODEL_BASE_PATH": str(base)}
            frontend_env["MNIST_ROUTING_FILE"] = str(routing)
            frontend, port = start_frontend(frontend_env, args.workers, args.threads, workdir, kind)
            try:
                for batch in batches:
                    pixels = digits[:batch]
                    images = (pixels[..., None] / 255.0).astype(np.float32)
                    body = json.dumps({"instances": pixels.tolist()}).encode()
                    for concurrency in concurrencies:
                        # Alternate short slices of both, so a change in the machine's load hits both alike.
                        direct_runs, via_runs = [], []
                        slice_s, slice_n = args.duration / args.rounds, max(1, args.max_requests // args.rounds)
                        caller = http_caller(port, body)
                        for _ in range(args.rounds):
                            direct_runs.append(run_load(
                                lambda images=images, backend=direct_backend: backend.predict(images, version, 30),
                                concurrency, slice_s, slice_n))
                            via_runs.append(run_load(caller, concurrency, slice_s, slice_n))
                        direct, via = summarize(direct_runs), summarize(via_runs)
                        row = {"backend": kind, "batch": batch, "concurrency": concurrency, "direct": direct,
                               "frontend": via, "throughput_ratio": via["rps"] / direct["rps"],
                               "p50_overhead_ms": via["p50_ms"] - direct["p50_ms"]}
                        results.append(row)
                        print(f"{kind:8s} batch {batch:2d} c{concurrency:<2d} direct {direct['rps']:7.1f} req/s "
                              f"p50 {direct['p50_ms']:6.2f} p99 {direct['p99_ms']:6.2f} | frontend {via['rps']:7.1f} "
                              f"req/s p50 {via['p50_ms']:6.2f} p99 {via['p99_ms']:6.2f} | ratio "
                              f"{row['throughput_ratio']:.2f} overhead p50 {row['p50_overhead_ms']:+.2f} ms"
                              + (f" | errors {direct['errors']}/{via['errors']}" if direct["errors"] or via["errors"]
                                 else ""), flush=True)
            finally:
                frontend.stop()
                direct_backend.close()
        finally:
            if standin is not None:
                standin.stop()

    print("\n| backend | batch | concurrency | direct req/s | direct p50 / p99 ms | frontend req/s "
          "| frontend p50 / p99 ms | throughput ratio | p50 overhead ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        d, f = r["direct"], r["frontend"]
        print(f"| {r['backend']} | {r['batch']} | {r['concurrency']} | {d['rps']:.0f} | {d['p50_ms']:.2f} / "
              f"{d['p99_ms']:.2f} | {f['rps']:.0f} | {f['p50_ms']:.2f} / {f['p99_ms']:.2f} | "
              f"{r['throughput_ratio']:.2f} | {r['p50_overhead_ms']:+.2f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
