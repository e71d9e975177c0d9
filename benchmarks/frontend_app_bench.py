"""The frontend's own cost per request, in-process: no network, no model.

The Flask app is called through its WSGI callable, as gunicorn calls it, with a backend that answers at once, so
what is measured is the frontend's own work: request parsing and preprocessing, routing, the response, metrics
(prometheus multiprocess mode, as under gunicorn) and the hooks. Per request kind it reports the wall-clock p50
and the CPU per request, for calls back to back and for calls after a pause (`--pauses-ms`), beside a fixed
piece of C work as the machine's reference.

The pause shows how much the machine itself slows code that has been idle for a few milliseconds (caches and
branch predictors that other work has cooled). serve_bench.py's paced pairs run in that state, so its split of
the frontend's time reads against these figures. Not part of `make test`; results in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mnist_operator.render import RoutingState, render_routing

REPO = Path(__file__).resolve().parents[1]


class InstantBackend:
    """Answers every batch at once (digit 0, probability 0.1 each): the frontend's work is all that is left."""

    kind = "instant"

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float):
        from frontend.backends.base import BackendResult

        count = len(images)
        return BackendResult(version if version is not None else 1, np.full((count, 10), 0.1, np.float32),
                             np.zeros(count, np.int64))

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        return set()

    def close(self) -> None:
        pass


def wsgi_call(app: Callable, method: str, path: str, body: bytes = b"",
              content_type: str | None = None) -> Callable[[], int]:
    """One request through the WSGI callable; returns the response's byte count, raises unless it is a 200."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(method=method, path=path, data=body, content_type=content_type)
    try:
        environ = builder.get_environ()
    finally:
        builder.close()

    def call() -> int:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []
        chunks = app(env, lambda line, headers, exc_info=None: status.append(line))
        try:
            size = sum(len(chunk) for chunk in chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        if not status or not status[0].startswith("200"):
            raise RuntimeError(f"{method} {path}: {status[:1]}")
        return size

    return call


def measure(call: Callable[[], object], count: int, pause_s: float, warmup: int = 50,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """p50 wall ms and mean CPU ms (this thread) of `count` calls, each after `pause_s` (0: back to back)."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(count):
        if pause_s > 0:
            sleep(pause_s)
        started, started_cpu = time.perf_counter(), time.thread_time()
        call()
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return {"p50_ms": statistics.median(wall) * 1000, "cpu_ms": statistics.fmean(cpu) * 1000}


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def reference_work() -> Callable[[], object]:
    """A fixed piece of C work with no Python in its loop (SHA-256 of 200 KB, a 200x200 matrix product): how
    much a pause slows it shows what the machine does to idle code, apart from the frontend."""
    data = np.random.default_rng(0).bytes(200_000)
    matrix = np.random.default_rng(1).random((200, 200))
    return lambda: (hashlib.sha256(data).digest(), float((matrix @ matrix).sum()))


def requests_for(app: Callable, digits: np.ndarray) -> dict[str, Callable[[], object]]:
    """The request kinds measured: the server floor (GET /healthz), JSON instances (1 and 32), one PNG, and the
    machine's reference work."""
    def instances(batch: int) -> bytes:
        return json.dumps({"instances": digits[:batch].tolist()}).encode()

    return {
        "GET /healthz": wsgi_call(app, "GET", "/healthz"),
        "predict JSON, 1 image": wsgi_call(app, "POST", "/v1/predict", instances(1), "application/json"),
        "predict JSON, 32 images": wsgi_call(app, "POST", "/v1/predict", instances(32), "application/json"),
        "predict PNG, 1 image": wsgi_call(app, "POST", "/v1/predict", png_bytes(digits[0]), "image/png"),
        "reference C work": reference_work(),
    }


def gc_profile(call: Callable[[], object], requests: int) -> dict[str, float]:
    """`requests` calls, counting the garbage collector's full (generation 2) passes they set off and how long
    those held the process; then the cost of one full pass now, timed directly, and what it has to scan."""
    passes: list[float] = []
    began = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                passes.append((time.perf_counter() - began[0]) * 1000)

    gc.callbacks.append(on_gc)
    try:
        for _ in range(requests):
            call()
    finally:
        gc.callbacks.remove(on_gc)
    started = time.perf_counter()
    gc.collect()
    return {"requests": requests, "full_passes": len(passes), "longest_pass_ms": max(passes, default=0.0),
            "full_pass_now_ms": (time.perf_counter() - started) * 1000, "tracked_objects": len(gc.get_objects())}


def build_app(workdir: Path, backend: object, version: int):
    """The app as gunicorn builds it (multiprocess metrics), over a routing file that pins `version`."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir)  # before prometheus_client is first imported
    routing = workdir / "routing.json"
    routing.write_text(render_routing(RoutingState.single("mnist", version), generation=1))
    from frontend.app import create_app

    return create_app({"ROUTING_FILE": str(routing)}, backend=backend)


def make_backend(kind: str, model_base_path: str) -> tuple[object, int]:
    """The backend and the version to route to: instant (version 1), or embedded over the newest version."""
    if kind == "instant":
        return InstantBackend(), 1
    base = Path(model_base_path)
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []
    if not versions:
        raise SystemExit(f"frontend_app_bench: no model versions in {base}; train one (make demo) or pass "
                         "--model-base-path")
    from frontend.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(str(base)), versions[-1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA", str(REPO / "data" / "mnist.npz")))
    parser.add_argument("--backend", choices=("instant", "embedded"), default="instant",
                        help="instant: the frontend's work alone; embedded: TensorFlow and a model in the process")
    parser.add_argument("--model-base-path", default=str(REPO / "models" / "mnist"),
                        help="SavedModel versions for --backend embedded (default: models/mnist from make demo)")
    parser.add_argument("--count", type=int, default=2000, help="timed requests per kind and pause (0: none)")
    parser.add_argument("--pauses-ms", default="0,5", help="pause before each request, ms (0: back to back)")
    parser.add_argument("--gc-requests", type=int, default=0,
                        help="then this many single-image predictions before and after gc.freeze(), as each "
                             "gunicorn worker does once it has loaded the app (0: skip)")
    parser.add_argument("--json-out", help="also write the results here")
    args = parser.parse_args(argv)
    with np.load(args.data) as data:
        digits = data["x_test"][:32]
    workdir = Path(tempfile.mkdtemp(prefix="frontend-app-bench-"))
    rows, collector = [], []
    backend, version = make_backend(args.backend, args.model_base_path)
    try:
        app = build_app(workdir, backend, version)
        calls = requests_for(app, digits)
        for pause_ms in (float(p) for p in args.pauses_ms.split(",")) if args.count > 0 else ():
            for name, call in calls.items():
                row = {"request": name, "pause_ms": pause_ms, **measure(call, args.count, pause_ms / 1000)}
                rows.append(row)
                print(f"{name:24s} pause {pause_ms:4g} ms: p50 {row['p50_ms']:.3f} ms, CPU {row['cpu_ms']:.3f} ms "
                      "per request", flush=True)
        if args.gc_requests > 0:
            for frozen in (False, True):
                if frozen:
                    gc.freeze()
                collector.append({"frozen": frozen, **gc_profile(calls["predict JSON, 1 image"], args.gc_requests)})
    finally:
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if rows:
        print(f"\n| request | pause before each | wall p50 ms | CPU ms per request |  ({args.backend} backend)")
        print("| --- | --- | --- | --- |")
        for row in rows:
            print(f"| {row['request']} | {row['pause_ms']:g} ms | {row['p50_ms']:.3f} | {row['cpu_ms']:.3f} |")
    if collector:
        print(f"\n| gc.freeze() | requests | full passes they set off | longest ms | one full pass now, ms "
              f"| objects it scans |  ({args.backend} backend)")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in collector:
            print(f"| {'after' if row['frozen'] else 'before'} | {row['requests']} | {row['full_passes']} | "
                  f"{row['longest_pass_ms']:.1f} | {row['full_pass_now_ms']:.1f} | {row['tracked_objects']} |")
    results = {"backend": args.backend, "timings": rows, "gc": collector}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
