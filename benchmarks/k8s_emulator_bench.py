"""Kubernetes API emulator benchmark: request latency early and late in a long test, and watch-event latency.

Plain kmock 0.8 keeps every request and scans them on each new one (point 14 of K8S_API_EMULATOR.md), so its
latency grows with the test's length; the project's emulator caps that history. Both are measured the same way:
sequential GETs of one ConfigMap over real HTTP on 127.0.0.1, the median of the first and of the last 100.

    .venv/bin/python benchmarks/k8s_emulator_bench.py [--requests 3000] [--kmock-requests 800] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.k8s_emulator import emulated_cluster  # noqa: E402

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench", "namespace": "default"},
      "data": {"k": "v"}}


def get_latencies(url: str, count: int) -> list[float]:
    """Milliseconds of each of `count` sequential GETs of the ConfigMap."""
    out = []
    with requests.Session() as http:
        for _ in range(count):
            started = time.perf_counter()
            response = http.get(f"{url}/api/v1/namespaces/default/configmaps/bench", timeout=30)
            out.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return out


def early_late(latencies: list[float]) -> dict[str, float]:
    return {"first100_median_ms": round(statistics.median(latencies[:100]), 2),
            "last100_median_ms": round(statistics.median(latencies[-100:]), 2)}


def plain_kmock(count: int) -> dict[str, float]:
    """The same GETs against kmock 0.8's own KubernetesEmulator (object seeded directly into its store)."""
    import kmock

    ready, stop, result = threading.Event(), threading.Event(), {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources.load_bundled()
            emulator.objects[kmock.resource("", "v1", "configmaps"), "default", "bench"] = CM
            result["url"] = str(server.url).rstrip("/")
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        return early_late(get_latencies(result["url"], count))
    finally:
        stop.set()
        thread.join(10)


def project_emulator(count: int, watch_events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, emulated_cluster(Path(tmp)) as cluster:
        cluster.apply(CM)
        numbers = early_late(get_latencies(cluster.url, count))
        # Watch latency: a PATCH returns, then how long until its MODIFIED event arrives on an open watch.
        arrived: list[float] = []
        stream = requests.get(f"{cluster.url}/api/v1/namespaces/default/configmaps", stream=True, timeout=60,
                              params={"watch": "true", "resourceVersion": str(cluster.emulator.resource_version)})
        lines = stream.iter_lines()
        with requests.Session() as http:
            for i in range(watch_events):
                started = time.perf_counter()
                http.patch(f"{cluster.url}/api/v1/namespaces/default/configmaps/bench", timeout=30,
                           headers={"Content-Type": "application/merge-patch+json"},
                           data=json.dumps({"data": {"k": str(i)}}))
                event = json.loads(next(lines))
                arrived.append((time.perf_counter() - started) * 1000)
                assert event["type"] == "MODIFIED"
        stream.close()
        numbers["patch_to_watch_event_median_ms"] = round(statistics.median(arrived), 2)
        numbers["patch_to_watch_event_p99_ms"] = round(sorted(arrived)[int(len(arrived) * 0.99) - 1], 2)
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="sequential GETs to the emulator (default 3000)")
    parser.add_argument("--kmock-requests", type=int, default=800,
                        help="sequential GETs to plain kmock (default 800: it slows down quadratically in total)")
    parser.add_argument("--watch-events", type=int, default=300, help="PATCH -> watch event samples (default 300)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = {"emulator": {"requests": args.requests, **project_emulator(args.requests, args.watch_events)},
               "plain_kmock_0_8": {"requests": args.kmock_requests, **plain_kmock(args.kmock_requests)}}
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
