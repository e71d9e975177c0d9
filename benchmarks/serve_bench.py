"""Serving benchmark: the frontend (real gunicorn) against calling the same backend directly, on loopback.

For each backend (the gRPC TF Serving stand-in in its own process, and the embedded SavedModel backend) and each
batch size (1 and 32 images) it measures two things:

- Paced latency at concurrency 1: direct calls through the frontend's own backend client (GrpcBackend /
  EmbeddedBackend) and POST /v1/predict through gunicorn alternate call by call, each after the same pause
  (--pace-ms), so both meet the backend in the same state; the frontend's Server-Timing header splits its share
  into its own code and the HTTP server plus transport.
- Closed-loop throughput and latency at each --concurrency (1 and 16): threads call as fast as they can, in
  --rounds alternating direct/frontend slices, each bounded by --duration seconds and --max-requests requests.

The HTTP load generator writes prebuilt requests on keep-alive sockets (--client raw, the default) so that it
costs about as little CPU per request as the gRPC library does per direct call. --pin-backend, --pin-frontend and
--pin-client put the stand-in, gunicorn and this process on CPUs of their own (gRPC runs only), as TF Serving
and the frontend run on different nodes in a cluster. All traffic goes to 127.0.0.1.

    .venv/bin/python benchmarks/serve_bench.py --model-base-path models/mnist --version 2
    .venv/bin/python benchmarks/serve_bench.py --backends grpc --pin-backend 1 --pin-frontend 0 --pin-client 0
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
from typing import TypeVar

import numpy as np
from mnist_operator.render import RoutingState, render_routing

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
sys.path.insert(0, str(REPO))

from scripts.demo.ports import free_port  # noqa: E402


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


def server_timing(head: str) -> dict[str, float]:
    """The frontend's Server-Timing header (ms per stage) from an answer's header block."""
    for line in head.split("\r\n"):
        if line.lower().startswith("server-timing:"):
            return {name.strip(): float(dur) for name, _, dur in
                    (part.partition(";dur=") for part in line.split(":", 1)[1].split(","))}
    return {}


def paced_pairs(direct: Callable[[], None], via: Callable[[], str], pace_s: float, pairs: int,
                warmup: int = 10) -> dict:
    """Concurrency 1 at equal pacing: a direct call and a frontend call alternate, each after `pace_s` of quiet.

    A closed loop (next call as soon as the last returned) runs the faster path at a higher rate, and the
    backend answers faster when it is called back to back (its threads and the CPU stay warm): measured here,
    the same direct gRPC call took 0.8-2 ms longer after a 2 ms pause. Pairing the calls gives both paths the
    same idle time before each call, so the difference is what the frontend adds.
    """
    for _ in range(warmup):
        direct()
        via()
    direct_ms, via_ms = [], []
    split = []  # (total, app, predict) ms of frontend calls whose answer carried Server-Timing
    for _ in range(pairs):
        direct_ms.append(paced(direct, pace_s)[0])
        total, head = paced(via, pace_s)
        via_ms.append(total)
        timing = server_timing(head)
        if "app" in timing and "predict" in timing:
            split.append((total, timing["app"], timing["predict"]))
    result = {"pairs": pairs, "pace_ms": pace_s * 1000, "direct_p50_ms": float(np.median(direct_ms)),
              "frontend_p50_ms": float(np.median(via_ms))}
    result["p50_overhead_ms"] = result["frontend_p50_ms"] - result["direct_p50_ms"]
    if split:
        # Where the frontend's time goes: its own code (app - predict) and the HTTP server + transport
        # (total - app), each the median of per-request differences.
        total_ms, app_ms, predict_ms = np.asarray(split).T
        result["app_own_p50_ms"] = float(np.median(app_ms - predict_ms))
        result["http_p50_ms"] = float(np.median(total_ms - app_ms))
        result["predict_in_frontend_p50_ms"] = float(np.median(predict_ms))
    return result


def paced(call: Callable[[], T], pace_s: float) -> tuple[float, T]:
    """Wait `pace_s`, then one timed call: (ms, what it returned)."""
    time.sleep(pace_s)
    started = time.perf_counter()
    answer = call()
    return (time.perf_counter() - started) * 1000, answer


def paced_calls(call: Callable[[], object], pace_s: float, count: int, warmup: int = 10) -> float:
    """p50 ms of `count` calls, each after `pace_s` of quiet (as in paced_pairs)."""
    for _ in range(warmup):
        call()
    return float(np.median([paced(call, pace_s)[0] for _ in range(count)]))


def summarize(runs: list[dict]) -> dict[str, float]:
    latencies = [x for run in runs for x in run["latencies"]]
    values = np.asarray(latencies) * 1000
    elapsed = sum(run["elapsed"] for run in runs)
    return {"requests": len(latencies), "errors": sum(run["errors"] for run in runs), "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(values, 50)) if len(values) else float("nan"),
            "p99_ms": float(np.percentile(values, 99)) if len(values) else float("nan")}


def cpu_set(text: str | None) -> set[int] | None:
    """'1' or '0,2' -> {1} / {0, 2}, checked against the CPUs this process may use; None or '' -> None."""
    if not text:
        return None
    try:
        cpus = {int(part) for part in text.split(",")}
    except ValueError:
        raise SystemExit(f"serve_bench: CPU list {text!r} must be integers separated by commas") from None
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise SystemExit(f"serve_bench: CPUs {sorted(cpus - allowed)} are not available (have {sorted(allowed)})")
    return cpus


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, cpus: set[int] | None = None) -> None:
        self.log = log
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # inherited by gunicorn's workers
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True, preexec_fn=pin)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_frontend(env_extra: dict[str, str], workers: int, threads: int, workdir: Path, name: str,
                   cpus: set[int] | None = None) -> tuple[Process, int]:
    port = free_port()
    env = {**os.environ, "MNIST_BIND": f"127.0.0.1:{port}", "MNIST_WORKERS": str(workers),
           "MNIST_THREADS": str(threads), "MNIST_ACCESS_LOG": "0", "MNIST_LOG_LEVEL": "warning", **env_extra}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = Process([sys.executable, "-m", "frontend.cli"], env, workdir / f"frontend-{name}.log", cpus)
    try:
        wait_http("127.0.0.1", port, "/readyz", 180)
    except BaseException:
        process.stop()  # never leave a server behind
        raise
    return process, port


def http_caller(port: int, body: bytes) -> Callable[[], str]:
    """POST /v1/predict on one keep-alive connection per thread with http.client (parses headers in Python)."""
    local = threading.local()

    def call() -> str:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")
        return "\r\n".join(f"{name}: {value}" for name, value in response.getheaders())

    return call


def raw_http_caller(port: int, body: bytes, method: str = "POST", path: str = "/v1/predict") -> Callable[[], str]:
    """The same request as http_caller, written and read on a bare keep-alive socket, as wrk or oha do.

    The request bytes are built once; the answer is read up to its Content-Length and its status checked. The
    load generator then spends about as little CPU per HTTP request as the gRPC library does per direct call, so
    on a machine where it shares the cores with the servers it does not tax one side more than the other.
    """
    content = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if method == "POST" else ""
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{content}\r\n".encode() + body
    local = threading.local()
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
        return sock

    def close() -> None:
        for sock in opened:
            sock.close()

    def exchange(sock: socket.socket) -> tuple[int, str, bytes] | None:
        """One request/answer; None when the server had closed the kept-alive connection before answering."""
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            return None
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # a server that closes with our request unread resets, not FINs
                chunk = b""
            if not chunk:
                if buffer:
                    raise RuntimeError("connection closed in the middle of an answer")
                return None
            buffer += chunk
        head = buffer[:end].decode("latin-1")
        length = next((int(line[15:]) for line in head.split("\r\n") if line.lower().startswith("content-length:")),
                      None)
        if length is None:
            raise RuntimeError(f"{head[:12]}: answer without Content-Length")
        needed = end + 4 + length
        while len(buffer) < needed:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed in the middle of an answer")
            buffer += chunk
        return int(head[9:12]), head, buffer[end + 4:needed]

    def call() -> str:
        """One request; returns the answer's header block."""
        sock = getattr(local, "sock", None) or connect()
        answer = exchange(sock)
        if answer is None:  # an idle keep-alive connection timed out on the server: reconnect once, as clients do
            sock.close()
            sock = connect()
            answer = exchange(sock)
            if answer is None:
                raise RuntimeError("the server closed a fresh connection without answering")
        local.sock = sock
        status, head, data = answer
        if status != 200:
            raise RuntimeError(f"{status}: {data[:200]!r}")
        return head

    call.close = close  # type: ignore[attr-defined]
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
    parser.add_argument("--client", choices=("raw", "http.client"), default="raw",
                        help="HTTP load generator: a bare keep-alive socket (default) or Python's http.client")
    parser.add_argument("--pace-ms", type=float, default=5.0,
                        help="pause before each call of the paced concurrency-1 latency pairs (0: skip them)")
    parser.add_argument("--pairs", type=int, default=600, help="paced direct/frontend call pairs per batch size")
    parser.add_argument("--pin-backend", help="CPUs for the gRPC stand-in, e.g. 1 (as TF Serving on its own node)")
    parser.add_argument("--pin-frontend", help="CPUs for gunicorn and its workers, e.g. 0")
    parser.add_argument("--pin-client", help="CPUs for this load generator (and the direct calls), e.g. 0")
    parser.add_argument("--json-out", help="also write the results here")
    args = parser.parse_args()
    pins = {name: cpu_set(getattr(args, f"pin_{name}")) for name in ("backend", "frontend", "client")}
    all_cpus = os.sched_getaffinity(0)

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
    routing.write_text(render_routing(RoutingState.single("mnist", version), generation=1))
    batches = [int(b) for b in args.batches.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results, paced = [], []
    for kind in args.backends.split(","):
        standin = None
        # Pinning separates processes; the embedded backend lives inside the frontend (and, for direct calls,
        # inside this process), so its runs are never pinned.
        pinned = kind == "grpc"
        os.sched_setaffinity(0, (pinned and pins["client"]) or all_cpus)
        try:
            if kind == "grpc":
                grpc_port, rest_port = free_port(), free_port()
                standin = Process([sys.executable, "-m", "tests.support.tfserving_standin", "--port", str(grpc_port),
                                   "--rest_api_port", str(rest_port), "--model_name", "mnist",
                                   "--model_base_path", str(base.resolve())],
                                  {**os.environ, "PYTHONPATH": str(REPO)}, workdir / "standin.log", pins["backend"])
                wait_http("127.0.0.1", rest_port, "/v1/models/mnist", 180)  # on failure `finally` stops it
                from frontend.backends.grpc_backend import GrpcBackend

                direct_backend = GrpcBackend(f"127.0.0.1:{grpc_port}", "mnist")
                frontend_env = {"MNIST_BACKEND": "grpc", "MNIST_SERVING_GRPC": f"127.0.0.1:{grpc_port}"}
            else:
                from frontend.backends.embedded import EmbeddedBackend

                direct_backend = EmbeddedBackend(str(base), threads=args.threads)
                frontend_env = {"MNIST_BACKEND": "embedded", "MNIST_MODEL_BASE_PATH": str(base)}
            frontend_env["MNIST_ROUTING_FILE"] = str(routing)
            frontend, port = start_frontend(frontend_env, args.workers, args.threads, workdir, kind,
                                            pins["frontend"] if pinned else None)
            try:
                for batch in batches:
                    pixels = digits[:batch]
                    images = (pixels[..., None] / 255.0).astype(np.float32)
                    body = json.dumps({"instances": pixels.tolist()}).encode()
                    if args.pace_ms > 0:
                        pair = paced_pairs(lambda images=images, backend=direct_backend: backend.predict(
                            images, version, 30), raw_http_caller(port, body), args.pace_ms / 1000, args.pairs)
                        pair.update(backend=kind, batch=batch)
                        if batch == 1:
                            # The server stack's floor: an empty GET /healthz through the same gunicorn and Flask,
                            # paced alike (no body, no JSON, no backend).
                            health = raw_http_caller(port, b"", "GET", "/healthz")
                            pair["healthz_p50_ms"] = paced_calls(health, args.pace_ms / 1000, args.pairs)
                        paced.append(pair)
                        print(f"{kind:8s} batch {batch:2d} paced {args.pace_ms:.0f} ms: direct p50 "
                              f"{pair['direct_p50_ms']:.2f} ms | frontend p50 {pair['frontend_p50_ms']:.2f} ms | "
                              f"overhead {pair['p50_overhead_ms']:+.2f} ms (own code "
                              f"{pair.get('app_own_p50_ms', float('nan')):.2f}, HTTP server and transport "
                              f"{pair.get('http_p50_ms', float('nan')):.2f}"
                              + (f"; empty GET /healthz {pair['healthz_p50_ms']:.2f})" if "healthz_p50_ms" in pair
                                 else ")"), flush=True)
                    for concurrency in concurrencies:
                        # Alternate short slices of both, so a change in the machine's load hits both alike.
                        direct_runs, via_runs = [], []
                        slice_s, slice_n = args.duration / args.rounds, max(1, args.max_requests // args.rounds)
                        caller = (raw_http_caller if args.client == "raw" else http_caller)(port, body)
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
    if paced:
        print(f"\n| backend | batch | direct p50 ms | frontend p50 ms | p50 overhead ms | frontend's own code ms "
              f"| HTTP server + transport ms | empty GET /healthz p50 ms |  (concurrency 1, calls paired, "
              f"{args.pace_ms:g} ms pause before each)")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in paced:
            print(f"| {r['backend']} | {r['batch']} | {r['direct_p50_ms']:.2f} | {r['frontend_p50_ms']:.2f} | "
                  f"{r['p50_overhead_ms']:+.2f} | {r.get('app_own_p50_ms', float('nan')):.2f} | "
                  f"{r.get('http_p50_ms', float('nan')):.2f} | "
                  + (f"{r['healthz_p50_ms']:.2f} |" if "healthz_p50_ms" in r else "- |"))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"pins": {k: sorted(v) if v else None for k, v in pins.items()},
                                                   "closed_loop": results, "paced": paced}, indent=2))


if __name__ == "__main__":
    main()
