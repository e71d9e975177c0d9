"""What the operator's end-to-end tests put around it: a frontend to judge, a kubelet's ConfigMap sync, traffic.

The operator (`mnist-operator run`, a real kopf process) talks to the emulated API server; the frontend is real
gunicorn with the embedded backend over the trainer's SavedModels. Between them stands what a cluster would do:
  - a Pod object for the frontend (status.podIP 127.0.0.1, Ready), so the operator finds it through the API and
    scrapes its /metrics on the port MNIST_OPERATOR_METRICS_PORT names;
  - ConfigMapSync, the kubelet's part: the routing ConfigMap's key is copied into the file the frontend reads;
  - Traffic: real MNIST test digits through POST /v1/predict, each answered with the true label as feedback.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import numpy as np
import pytest
import requests
import yaml
from google.protobuf import text_format
from mnist_operator.config import ENV_SETTINGS
from tensorflow_serving.config import model_server_config_pb2

from tests.support.k8s_emulator import EmulatedCluster
from tests.support.k8s_emulator.clients import find_kubectl, kubectl

T = TypeVar("T")
BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "charts" / "mnist-platform" / "crds"
EXAMPLES = REPO_ROOT / "k8s" / "examples"
GROUP, VERSION, PLURAL = "ml.mnist-platform.dev", "v1alpha1", "modelrollouts"
API_VERSION = f"{GROUP}/{VERSION}"
MODEL = "mnist"
ROUTING_CM = ENV_SETTINGS["MNIST_OPERATOR_ROUTING_CONFIGMAP"].default.format(model=MODEL)
ROUTING_KEY = ENV_SETTINGS["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"].default
SERVING_CM = ENV_SETTINGS["MNIST_OPERATOR_SERVING_CONFIGMAP"].default.format(model=MODEL)
SERVING_KEY = ENV_SETTINGS["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"].default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until predicate() is truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        result[key] = deep_merge(result.get(key, {}), value) if isinstance(value, dict) else value
    return result


def example_rollout(example: str, name: str, **spec_overrides: Any) -> dict[str, Any]:
    """One of k8s/examples/<example>.yaml, renamed, with test-speed timings merged into its spec."""
    doc = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"] = deep_merge(doc["spec"], spec_overrides)
    return doc


def routing_document(stable: int, generation: int) -> dict[str, Any]:
    """What serves before a rollout: one version, all traffic."""
    return {"model": MODEL, "strategy": "single", "routes": [{"version": stable, "label": "stable", "weight": 100}],
            "sticky_header": None, "shadow": None, "rollout": None, "generation": generation}


# Analysis settings that judge within seconds; latency bounds loose enough for a loaded CI machine.
FAST_ANALYSIS = {"interval": "1s", "minRequests": 5, "minFeedback": 5, "failureLimit": 2, "maxErrorRate": 0.02,
                 "maxLatencyP99Ms": 5000, "inconclusiveTimeout": "60s", "routingTimeout": "15s"}


def model_config(versions: list[int], labels: dict[str, int]) -> model_server_config_pb2.ModelServerConfig:
    """The TF Serving model config the operator must write, as TF Serving's own protobuf."""
    text = (f'model_config_list {{ config {{ name: "{MODEL}" base_path: "/models/{MODEL}" model_platform: "tensorflow"'
            f' model_version_policy {{ specific {{ {" ".join(f"versions: {v}" for v in versions)} }} }}'
            + "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()) + " } }")
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def parse_model_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


KUBECTL = find_kubectl()
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is neither in .tools/bin nor on PATH")


def _custom_api(cluster: EmulatedCluster) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))


def try_apply(cluster: EmulatedCluster, manifest: dict[str, Any]) -> tuple[bool, str]:
    """Create or update a ModelRollout as a user would: kubectl apply, or the kubernetes client without kubectl.

    Returns (accepted, the API server's message when refused).
    """
    if KUBECTL is not None:
        result = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(manifest))
        return result.returncode == 0, result.stderr
    api, name = _custom_api(cluster), manifest["metadata"]["name"]
    try:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, manifest)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            api.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, manifest)
    except kubernetes.client.ApiException as exc:
        return False, str(exc.body)
    finally:
        api.api_client.close()
    return True, ""


def apply(cluster: EmulatedCluster, manifest: dict[str, Any]) -> None:
    accepted, message = try_apply(cluster, manifest)
    assert accepted, message


def patch_rollout(cluster: EmulatedCluster, name: str, patch: dict[str, Any]) -> None:
    """kubectl patch --type=merge (or the kubernetes client without kubectl)."""
    if KUBECTL is not None:
        result = kubectl(cluster, "patch", "mr", name, "--type=merge", "-p", json.dumps(patch))
        assert result.returncode == 0, result.stderr
        return
    api = _custom_api(cluster)
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, patch)
    finally:
        api.api_client.close()


def delete_rollout(cluster: EmulatedCluster, name: str, timeout: float = 30) -> None:
    """kubectl delete, which waits until the finalizer let the object go (or the client and a wait)."""
    if KUBECTL is not None:
        result = kubectl(cluster, "delete", "mr", name, f"--timeout={timeout:.0f}s")
        assert result.returncode == 0, result.stderr
        return
    api = _custom_api(cluster)
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    finally:
        api.api_client.close()
    wait_for(lambda: cluster.get(API_VERSION, "ModelRollout", name) is None, timeout, f"{name} to be deleted")


class Frontend:
    """`mnist-frontend` (gunicorn, 1 worker, embedded backend) on 127.0.0.1, routing read from a file."""

    def __init__(self, model_base_path: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.routing_file = workdir / "routing.json"
        self.routing_file.write_text(json.dumps(routing_document(1, 1)))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "frontend.log"
        self._log = self.log_path.open("w")
        env = {**os.environ, "MNIST_ROUTING_CHECK_S": "0.2", "MNIST_ACCESS_LOG": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [str(BIN / "mnist-frontend"), "--backend", "embedded", "--model-name", MODEL,
             "--model-base-path", str(model_base_path), "--routing-file", str(self.routing_file),
             "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, "frontend exited:\n" + self.log_path.read_text()[-3000:]
            try:
                return requests.get(f"{self.base}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_for(ready, timeout, "the frontend to be ready", interval=0.3)

    def serves_generation(self, generation: int) -> bool:
        requests.get(f"{self.base}/readyz", timeout=5)  # the frontend re-reads its routing file on requests
        text = requests.get(f"{self.base}/metrics", timeout=5).text
        return any(line.startswith("mnist_frontend_routing_generation{") and float(line.split()[-1]) == generation
                   for line in text.splitlines())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


class ConfigMapSync:
    """The kubelet's part: copy the routing ConfigMap into the frontend's file; record every distinct value."""

    def __init__(self, cluster: EmulatedCluster, routing_file: Path, period: float = 0.05) -> None:
        self.cluster, self.routing_file, self.period = cluster, routing_file, period
        self.routing_history: list[dict[str, Any]] = []
        self.serving_history: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="configmap-sync", daemon=True)

    def _value(self, name: str, key: str) -> str | None:
        cm = self.cluster.get("v1", "ConfigMap", name)
        return None if cm is None else (cm.get("data") or {}).get(key)

    def _run(self) -> None:
        while not self._stop.is_set():
            routing = self._value(ROUTING_CM, ROUTING_KEY)
            if routing is not None and (not self.routing_history or json.loads(routing) != self.routing_history[-1]):
                self.routing_history.append(json.loads(routing))
                tmp = self.routing_file.with_suffix(".tmp")
                tmp.write_text(routing)
                tmp.replace(self.routing_file)  # atomic, as the kubelet's symlink swap is
            serving = self._value(SERVING_CM, SERVING_KEY)
            if serving is not None and (not self.serving_history or serving != self.serving_history[-1]):
                self.serving_history.append(serving)
            self._stop.wait(self.period)

    def start(self) -> ConfigMapSync:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def candidate_weights(self, candidate: int) -> list[int]:
        """The candidate's weight in each routing document seen, in order."""
        return [next((r["weight"] for r in doc["routes"] if r["version"] == candidate), 0)
                for doc in self.routing_history]


class OperatorProcess:
    """`mnist-operator run -n default` as a real process (so it can be killed -9 like a lost pod)."""

    def __init__(self, cluster: EmulatedCluster, env: dict[str, str], workdir: Path) -> None:
        self.cluster, self.env, self.workdir = cluster, env, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.runs}.log"

    def start(self, timeout: float = 60) -> None:
        self.runs += 1
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(BIN / "mnist-operator"), "run", "--namespace", "default", "--standalone", "--liveness", ""],
            env={**os.environ, **self.cluster.env(), **self.env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def watching() -> bool:
            assert self.process is not None and self.process.poll() is None, "operator exited:\n" + self.logs()
            return self.cluster.call(lambda emu: any(w.plural == PLURAL for w in emu._watchers))
        wait_for(watching, timeout, "the operator to watch ModelRollouts", interval=0.1)

    def kill(self) -> None:
        """SIGKILL: no handler, no finalizer, no goodbye (a node lost, an OOM kill)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(3)  # kopf's graceful exit can wait on daemons; the test world is discarded anyway
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def logs(self) -> str:
        return "\n".join((self.workdir / f"operator-{i}.log").read_text()[-4000:] for i in range(1, self.runs + 1)
                         if (self.workdir / f"operator-{i}.log").exists())


class Traffic:
    """Real digits at a bounded rate, each answered with feedback; sticky users for A/B tests."""

    def __init__(self, base: str, images: np.ndarray, labels: np.ndarray, users: int = 200,
                 max_requests: int = 20_000, max_s: float = 120.0) -> None:
        self.base, self.images, self.labels = base, images, labels
        self.users = [uuid.uuid4().hex for _ in range(users)]
        self.max_requests, self.max_s = max_requests, max_s
        self.stop_flag = threading.Event()
        self.sent = self.server_errors = 0
        self.versions: dict[int, int] = {}
        self.user_versions: dict[str, set[int]] = {}
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        http = requests.Session()
        started = time.monotonic()
        i = 0
        while (not self.stop_flag.is_set() and self.sent < self.max_requests
               and time.monotonic() - started < self.max_s):
            k, user = i % len(self.images), self.users[i % len(self.users)]
            i += 1
            try:
                r = http.post(f"{self.base}/v1/predict", json={"instances": [self.images[k].tolist()]},
                              headers={"X-User-Id": user}, timeout=10)
            except requests.RequestException:
                self.server_errors += 1
                continue
            self.sent += 1
            if r.status_code >= 500:
                self.server_errors += 1
                continue
            body = r.json()
            version = int(body["version"])
            self.versions[version] = self.versions.get(version, 0) + 1
            self.user_versions.setdefault(user, set()).add(version)
            prediction = body["predictions"][0]
            http.post(f"{self.base}/v1/feedback", timeout=10, json={
                "request_id": body["request_id"], "index": 0, "label": int(self.labels[k]),
                "feedback_token": prediction["feedback_token"]})

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_flag.set()
        self._thread.join(15)


class Platform:
    """One test's world: emulated API with the CRDs, the shared frontend as a Pod, the sync, the operator."""

    def __init__(self, cluster: EmulatedCluster, frontend: Frontend, model_store: Path, workdir: Path,
                 generation: int) -> None:
        self.cluster, self.frontend = cluster, frontend
        self.seed_generation = generation
        cluster.load_crds([CRDS])
        self.sync = ConfigMapSync(cluster, frontend.routing_file)
        self.operator = OperatorProcess(cluster, {
            "MNIST_OPERATOR_METRICS_PORT": str(frontend.port),
            "MNIST_OPERATOR_MODEL_BASE_PATH": str(model_store),
            "MNIST_OPERATOR_MAX_TICK_S": "0.5",
            "MNIST_OPERATOR_HTTP_TIMEOUT_S": "5",
        }, workdir)

    def seed(self, stable: int) -> None:
        """What a cluster has before any rollout: the routing in place, the frontend pod Ready."""
        self.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROUTING_CM},
                            "data": {ROUTING_KEY: json.dumps(routing_document(stable, self.seed_generation))}})
        self.cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "frontend-0", "labels": {"app.kubernetes.io/component": "frontend"}},
            "spec": {"containers": [{"name": "frontend", "image": "mnist-frontend:test"}]}})
        self.cluster.patch_status("v1", "Pod", "frontend-0", {
            "phase": "Running", "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}]})
        self.sync.start()
        wait_for(lambda: self.frontend.serves_generation(self.seed_generation), 20,
                 f"the frontend to load routing generation {self.seed_generation}", interval=0.1)

    def close(self) -> None:
        self.operator.stop()
        self.sync.stop()

    # ---------------------------------------------------------------------------------------------- reading

    def rollout(self, name: str) -> dict[str, Any]:
        obj = self.cluster.get(API_VERSION, "ModelRollout", name)
        assert obj is not None, f"ModelRollout {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.rollout(name).get("status") or {}

    def wait_phase(self, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
        try:
            return wait_for(lambda: self.status(name) if self.status(name).get("phase") in phases else None,
                            timeout, f"{name} to reach {sorted(phases)}", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {json.dumps(self.status(name))[:1500]}\n"
                                 f"operator log:\n{self.operator.logs()}") from None

    def wait_stage(self, name: str, stage: str, timeout: float) -> dict[str, Any]:
        return wait_for(lambda: self.status(name) if self.status(name).get("stage") == stage else None,
                        timeout, f"{name} to reach stage {stage}", interval=0.05)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.cluster.list("v1", "Event", "default")
                if e.get("involvedObject", {}).get("name") == name]

    def event_reasons(self, name: str) -> list[str]:
        events = sorted(self.events(name), key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [e["reason"] for e in events for _ in range(int(e.get("count") or 1))]

    def wait_event(self, name: str, reason: str, timeout: float = 15) -> dict[str, Any]:
        """The first Event with this reason (events are posted just after the status that they explain)."""
        return wait_for(lambda: next((e for e in self.events(name) if e["reason"] == reason), None), timeout,
                        f"a {reason} Event on {name}", interval=0.1)

    def routing(self) -> dict[str, Any]:
        cm = self.cluster.get("v1", "ConfigMap", ROUTING_CM)
        assert cm is not None
        return json.loads(cm["data"][ROUTING_KEY])

    def serving_config(self) -> str:
        cm = self.cluster.get("v1", "ConfigMap", SERVING_CM)
        assert cm is not None, "no TF Serving model config was written"
        return cm["data"][SERVING_KEY]
