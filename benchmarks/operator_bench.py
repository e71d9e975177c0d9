"""Operator benchmark: reaction time from a ModelRollout change to the ConfigMaps updated, memory with N rollouts,
and the cost of one pure decision.

The operator runs as the real `mnist-operator run -n bench-... --standalone` process against a real control plane
(scripts/sim/control_plane.py: etcd, kube-apiserver, controllers, scheduler built by `make tools`, run by kwokctl;
everything on 127.0.0.1), with the chart's CRDs. Changes are made with the real kubernetes client; the routing
ConfigMap is watched, and each change is timed from just before the client call to the watch event that shows the
expected routing. The candidate's AVAILABLE gate is the model store (a throw-away directory with saved_model.pb
placeholders: TF Serving is not involved in what is timed).

    .venv/bin/python benchmarks/operator_bench.py [--repeats 5] [--rollouts 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
import requests  # noqa: E402
from mnist_operator import analysis as an  # noqa: E402
from mnist_operator.decide import CandidateInfo, Observation, decide  # noqa: E402
from mnist_operator.render import RoutingState, render_routing, routing_document  # noqa: E402

from scripts.demo.ports import free_port  # noqa: E402
from scripts.sim.control_plane import ControlPlane  # noqa: E402

GROUP, VERSION, PLURAL = "ml.mnist-platform.dev", "v1alpha1", "modelrollouts"
CRDS = ROOT / "charts" / "mnist-platform" / "crds"
STABLE_ONLY = [{"version": 1, "label": "stable", "weight": 100}]


def fake_store(root: Path, versions: range, models: tuple[str, ...] = ("mnist",)) -> Path:
    for model, v in ((m, v) for m in models for v in versions):
        d = root / model / str(v) / "assets.extra"
        d.mkdir(parents=True, exist_ok=True)
        (d.parent / "saved_model.pb").write_bytes(b"")
        (d / "metrics.json").write_text(json.dumps({"test_accuracy": 0.98}))
    return root


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(poll)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[ControlPlane]:
    """A fresh control plane with the chart's CRDs Established; deleted afterwards."""
    plane = ControlPlane(f"mnist-bench-{os.getpid()}", workdir)
    try:
        took = plane.create()
        print(f"control plane up in {took:.1f}s", file=sys.stderr)
        plane.kubectl("apply", "--server-side", "-f", str(CRDS))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield plane
    finally:
        plane.delete()


@contextlib.contextmanager
def operator(plane: ControlPlane, namespace: str, store: Path, log: Path, **extra: str) -> Iterator[subprocess.Popen]:
    """`mnist-operator run -n <namespace>`, returned once kopf's liveness endpoint answers."""
    port = free_port()
    env = {**os.environ, **extra, "MNIST_OPERATOR_KUBECONFIG": str(plane.kubeconfig),
           "MNIST_OPERATOR_MODEL_BASE_PATH": str(store), "MNIST_OPERATOR_METRICS_URLS": "http://127.0.0.1:9/metrics",
           "MNIST_OPERATOR_HTTP_TIMEOUT_S": "0.2"}
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mnist-operator"), "run", "-n", namespace,
                                 "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited: {log.read_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
        except requests.RequestException:
            return False
    try:
        wait_for(alive, timeout=60)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class RoutingWatch:
    """Watches one ConfigMap; every routing document written arrives with the perf_counter() of its arrival."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, name: str = "mnist-routing") -> None:
        self.core, self.namespace, self.name = kubernetes.client.CoreV1Api(api), namespace, name
        self.events: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.current: dict = {}
        self.closed = False
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self.core.list_namespaced_config_map, self.namespace,
                                            field_selector=f"metadata.name={self.name}"):
                text = (event["object"].data or {}).get("routing.json")
                self.events.put((time.perf_counter(), json.loads(text) if text else {}))
        except Exception:  # noqa: BLE001 - the stream ends when the control plane goes; a waiter times out
            if not self.closed:
                raise

    def __enter__(self) -> RoutingWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True
        self._watch.stop()

    def until(self, started: float, predicate: Callable[[dict], bool], timeout: float = 30.0) -> float:
        """Seconds from `started` to the first routing document (from now on) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        while not predicate(self.current):
            arrived, self.current = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            if predicate(self.current):
                return arrived - started
        return 0.0  # already so when asked


def warm_up(api, namespace: str, model: str = "mnist") -> None:
    """One rollout through create -> routing -> delete, so operator start-up is not in what is measured."""
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rollout("warm-up", 2, model))
    wait_for(lambda: (api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "warm-up").get("status")
                      or {}).get("stage") == "Canary")
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "warm-up")

    def gone() -> bool:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "warm-up")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False
    wait_for(gone)


def rollout(name: str, candidate: int, model: str = "mnist") -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name},
            "spec": {"model": model, "candidateVersion": candidate, "stableVersion": 1,
                     "canary": {"steps": [10, 100], "stepDuration": "1h"},
                     "analysis": {"interval": "30s", "inconclusiveTimeout": "1h"}}}


def summary(values: list[float]) -> dict:
    return {"median_ms": round(statistics.median(values) * 1000, 1), "max_ms": round(max(values) * 1000, 1),
            "n": len(values)}


def bench_reaction(plane: ControlPlane, repeats: int, tmp: Path) -> dict:
    namespace = "bench-reaction"
    plane.kubectl("create", "namespace", namespace)
    results: dict[str, list[float]] = {"create_to_routing_10pct_s": [], "candidate_change_to_routing_stable_s": [],
                                       "delete_to_routing_stable_s": []}
    store = fake_store(tmp / "store", range(1, 4))
    with kubernetes.config.new_client_from_config(str(plane.kubeconfig)) as client:
        core, api = kubernetes.client.CoreV1Api(client), kubernetes.client.CustomObjectsApi(client)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "mnist-routing"}, "data": {
            "routing.json": render_routing(RoutingState.single("mnist", 1), generation=1)}})
        with operator(plane, namespace, store, tmp / "operator-reaction.log"), \
                RoutingWatch(client, namespace) as watch:
            warm_up(api, namespace)
            for i in range(repeats):
                name = f"bench-{i}"
                started = time.perf_counter()
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rollout(name, 2))
                results["create_to_routing_10pct_s"].append(watch.until(started, lambda doc, n=name: doc.get(
                    "rollout") == f"{namespace}/{n}" and any(r["version"] == 2 and r["weight"] == 10
                                                              for r in doc.get("routes", []))))
                started = time.perf_counter()
                api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   {"spec": {"candidateVersion": 3}})
                results["candidate_change_to_routing_stable_s"].append(
                    watch.until(started, lambda doc: doc.get("routes") == STABLE_ONLY))
                watch.until(time.perf_counter(), lambda doc: any(r["version"] == 3 for r in doc.get("routes", [])))
                started = time.perf_counter()
                api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                results["delete_to_routing_stable_s"].append(
                    watch.until(started, lambda doc: doc.get("routes") == STABLE_ONLY))
                wait_for(lambda n=name: not any(o["metadata"]["name"] == n for o in api.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL)["items"]))
    return {k: summary(v) for k, v in results.items()}


def bench_memory(plane: ControlPlane, n: int, tmp: Path) -> dict:
    namespace = "bench-memory"
    plane.kubectl("create", "namespace", namespace)
    models = tuple(f"model{i}" for i in range(n)) + ("warm",)
    store = fake_store(tmp / "store-memory", range(1, 3), models)
    with kubernetes.config.new_client_from_config(str(plane.kubeconfig)) as client:
        api = kubernetes.client.CustomObjectsApi(client)
        # One routing/serving ConfigMap pair per model, so that every rollout is active at once.
        with operator(plane, namespace, store, tmp / "operator-memory.log",
                      MNIST_OPERATOR_ROUTING_CONFIGMAP="{model}-routing",
                      MNIST_OPERATOR_SERVING_CONFIGMAP="{model}-serving") as proc:
            warm_up(api, namespace, "warm")
            idle = rss_mb(proc.pid)
            for i in range(n):  # n models, so every rollout is active (none waits behind another)
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rollout(f"m{i}", 2, f"model{i}"))
            wait_for(lambda: sum(1 for o in api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
                                 if (o.get("status") or {}).get("stage") == "Canary") == n, timeout=300, poll=0.5)
            time.sleep(5)  # a few ticks of every daemon before the reading
            loaded = rss_mb(proc.pid)
    return {"rollouts": n, "rss_idle_mb": round(idle, 1), "rss_with_rollouts_mb": round(loaded, 1),
            "per_rollout_kb": round((loaded - idle) * 1024 / n, 1)}


def bench_decide(iterations: int = 2000) -> dict:
    pods = {f"pod-{i}": an.PodCounters(requests={"1|ok": 1000.0 * i, "2|ok": 100.0 * i},
                                       latency={"1": [float(i)] * 14, "2": [float(i)] * 14},
                                       feedback={"2|correct": 90.0 * i, "2|wrong": 1.0 * i}, routing_generation=3)
            for i in range(1, 4)}
    spec = rollout("x", 2)["spec"]
    routing_doc = routing_document(RoutingState.single("mnist", 1), generation=1)
    obs = Observation(rollout="bench/x", candidate=CandidateInfo(True, 0.98, True), current_routing=routing_doc,
                      metrics=an.Snapshot(taken_at=0, pods=pods), versions={1: CandidateInfo(True, 0.97, True)})
    status = None
    for t in range(3):
        status = decide(spec, status, obs, 1_800_000_000.0 + t).status
    start = time.perf_counter()
    for i in range(iterations):
        decide(spec, status, obs, 1_800_000_100.0 + i * 31)
    return {"decide_us": round((time.perf_counter() - start) / iterations * 1e6, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    started = time.monotonic()
    out = {"decide": bench_decide()}
    with tempfile.TemporaryDirectory() as tmp, control_plane(Path(tmp) / "k8s") as plane:
        out["k8s_version"] = plane.k8s_version
        out["reaction"] = bench_reaction(plane, args.repeats, Path(tmp))
        out["memory"] = bench_memory(plane, args.rollouts, Path(tmp))
    out |= {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
            "wall_s": round(time.monotonic() - started, 1)}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
