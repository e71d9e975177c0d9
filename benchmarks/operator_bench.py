"""Operator benchmark: reaction time from a ModelRollout change to the ConfigMaps updated, memory with N rollouts,
and the cost of one pure decision.

The operator runs as the real `mnist-operator run` process against the project's Kubernetes API emulator
(tests/support/k8s_emulator, kmock) on 127.0.0.1; changes are made with the real kubernetes client over HTTP, and
the ConfigMaps are polled every 5 ms. The candidate's AVAILABLE gate is the model store (a throw-away directory
with saved_model.pb placeholders: TF Serving is not involved in what is timed).

    .venv/bin/python benchmarks/operator_bench.py [--repeats 5] [--rollouts 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_operator import analysis as an  # noqa: E402
from mnist_operator.decide import CandidateInfo, Observation, decide  # noqa: E402

from tests.support.k8s_emulator import emulated_cluster  # noqa: E402

GROUP, VERSION, PLURAL = "ml.mnist-platform.dev", "v1alpha1", "modelrollouts"


def fake_store(root: Path, versions: range, models: tuple[str, ...] = ("mnist",)) -> Path:
    for model, v in ((m, v) for m in models for v in versions):
        d = root / model / str(v) / "assets.extra"
        d.mkdir(parents=True, exist_ok=True)
        (d.parent / "saved_model.pb").write_bytes(b"")
        (d / "metrics.json").write_text(json.dumps({"test_accuracy": 0.98}))
    return root


def wait_for(predicate, timeout: float = 20.0, poll: float = 0.005) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(poll)
    raise TimeoutError("condition not reached")


def routing(cluster) -> dict:
    cm = cluster.get("v1", "ConfigMap", "mnist-routing") or {}
    text = (cm.get("data") or {}).get("routing.json")
    return json.loads(text) if text else {}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_operator(cluster, store: Path, log: Path, **extra: str) -> subprocess.Popen:
    env = {**os.environ, **extra, "MNIST_OPERATOR_KUBECONFIG": str(cluster.kubeconfig), "MNIST_OPERATOR_MODEL_BASE_PATH": str(store),
           "MNIST_OPERATOR_METRICS_URLS": "http://127.0.0.1:9/metrics", "MNIST_OPERATOR_HTTP_TIMEOUT_S": "0.2"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mnist-operator"), "run", "-n", "default",
                             "--standalone", "--liveness", ""], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc


def warm_up(api, cluster, model: str = "mnist") -> None:
    """One rollout through create -> routing -> delete, so operator start-up is not in what is measured."""
    api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, rollout("warm-up", 2, model))
    wait_for(lambda: (cluster.get(f"{GROUP}/{VERSION}", "ModelRollout", "warm-up") or {}).get("status", {})
             .get("stage") == "Canary", timeout=60)
    api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "warm-up")
    wait_for(lambda: cluster.get(f"{GROUP}/{VERSION}", "ModelRollout", "warm-up") is None, timeout=60)


def rollout(name: str, candidate: int, model: str = "mnist") -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name},
            "spec": {"model": model, "candidateVersion": candidate, "stableVersion": 1,
                     "canary": {"steps": [10, 100], "stepDuration": "1h"},
                     "analysis": {"interval": "30s", "inconclusiveTimeout": "1h"}}}


def bench_reaction(repeats: int) -> dict:
    import kubernetes

    results: dict[str, list[float]] = {"create_to_routing_10pct_s": [], "candidate_change_to_routing_stable_s": [],
                                       "delete_to_routing_stable_s": []}
    with tempfile.TemporaryDirectory() as tmp, emulated_cluster(Path(tmp) / "k8s") as cluster:
        cluster.load_crds([ROOT / "charts" / "mnist-platform" / "crds"])
        store = fake_store(Path(tmp) / "store", range(1, 4))
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mnist-routing",
                                                                            "namespace": "default"},
                       "data": {"routing.json": json.dumps({"model": "mnist", "strategy": "single", "generation": 1,
                                                            "routes": [{"version": 1, "label": "stable",
                                                                        "weight": 100}]})}})
        proc = start_operator(cluster, store, Path(tmp) / "operator.log")
        try:
            api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
            warm_up(api, cluster)
            for i in range(repeats):
                name = f"bench-{i}"
                api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, rollout(name, 2))
                results["create_to_routing_10pct_s"].append(wait_for(
                    lambda n=name: routing(cluster).get("rollout") == f"default/{n}" and
                    any(r["version"] == 2 and r["weight"] == 10 for r in routing(cluster).get("routes", []))))
                api.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                                   {"spec": {"candidateVersion": 3}})
                results["candidate_change_to_routing_stable_s"].append(wait_for(
                    lambda: routing(cluster).get("routes") == [{"version": 1, "label": "stable", "weight": 100}]))
                wait_for(lambda: any(r["version"] == 3 for r in routing(cluster).get("routes", [])))
                api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
                results["delete_to_routing_stable_s"].append(wait_for(
                    lambda: routing(cluster).get("routes") == [{"version": 1, "label": "stable", "weight": 100}]))
                wait_for(lambda n=name: cluster.get(f"{GROUP}/{VERSION}", "ModelRollout", n) is None)
        finally:
            proc.terminate()
            proc.wait(30)
    return {k: {"median_ms": round(statistics.median(v) * 1000, 1), "max_ms": round(max(v) * 1000, 1), "n": len(v)}
            for k, v in results.items()}


def bench_memory(n: int) -> dict:
    import kubernetes

    with tempfile.TemporaryDirectory() as tmp, emulated_cluster(Path(tmp) / "k8s") as cluster:
        cluster.load_crds([ROOT / "charts" / "mnist-platform" / "crds"])
        models = tuple(f"model{i}" for i in range(n)) + ("warm",)
        store = fake_store(Path(tmp) / "store", range(1, 3), models)
        # One routing/serving ConfigMap pair per model, so that every rollout is active at once.
        proc = start_operator(cluster, store, Path(tmp) / "operator.log",
                              MNIST_OPERATOR_ROUTING_CONFIGMAP="{model}-routing",
                              MNIST_OPERATOR_SERVING_CONFIGMAP="{model}-serving")
        try:
            api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
            warm_up(api, cluster, "warm")
            idle = rss_mb(proc.pid)
            for i in range(n):  # n models, so every rollout is active (none waits behind another)
                api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, rollout(f"m{i}", 2, f"model{i}"))
            wait_for(lambda: sum(1 for o in cluster.list(f"{GROUP}/{VERSION}", "ModelRollout", "default")
                                 if (o.get("status") or {}).get("stage") == "Canary") == n, timeout=180, poll=0.5)
            time.sleep(5)
            loaded = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return {"rollouts": n, "rss_idle_mb": round(idle, 1), "rss_with_rollouts_mb": round(loaded, 1),
            "per_rollout_kb": round((loaded - idle) * 1024 / n, 1)}


def bench_decide(iterations: int = 2000) -> dict:
    pods = {f"pod-{i}": an.PodCounters(requests={"1|ok": 1000.0 * i, "2|ok": 100.0 * i},
                                       latency={"1": [float(i)] * 14, "2": [float(i)] * 14},
                                       feedback={"2|correct": 90.0 * i, "2|wrong": 1.0 * i}, routing_generation=3)
            for i in range(1, 4)}
    spec = rollout("x", 2)["spec"]
    routing_doc = {"model": "mnist", "strategy": "single", "routes": [{"version": 1, "label": "stable", "weight": 100}],
                   "generation": 1}
    obs = Observation(rollout="default/x", candidate=CandidateInfo(True, 0.98, True), current_routing=routing_doc,
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
    out = {"decide": bench_decide(), "reaction": bench_reaction(args.repeats), "memory": bench_memory(args.rollouts),
           "cpus": os.cpu_count()}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
