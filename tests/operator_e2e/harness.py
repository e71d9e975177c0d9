"""What the operator's end-to-end tests put around it: a frontend to judge, a kubelet's ConfigMap sync, traffic.

The operator (`mnist-operator run --namespace <the test's>`, a real kopf process) talks to the session's real
control plane (tests/support/cluster: kube-apiserver, controllers and scheduler, kwok playing the nodes); the
frontend is real gunicorn with the embedded backend over the trainer's SavedModels, listening on 127.0.0.1.
Between them stands what a cluster does, as far as it is not there:
  - a hostNetwork Pod for the frontend, labelled as the operator's selector wants: the scheduler places it and
    kwok makes it Running and Ready with its node's address, 127.0.0.1, where the real frontend listens, so the
    operator finds it through the API and scrapes its /metrics on the port MNIST_OPERATOR_METRICS_PORT names;
  - ConfigMapSync, the kubelet's part: it watches the routing ConfigMap through the API server and copies its key
    into the file the frontend reads, recording every value written (a watch misses no write);
  - Traffic: real MNIST test digits through POST /v1/predict, each answered with the true label as feedback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import numpy as np
import requests
import yaml
from google.protobuf import text_format
from mnist_operator import render
from mnist_operator.config import ENV_SETTINGS
from tensorflow_serving.config import model_server_config_pb2

from scripts.demo.ports import free_port
from tests.support.cluster import Cluster, wait_for
from tests.support.frontend_process import FrontendProcess

__all__ = ["wait_for"]  # re-exported for the tests: one polling helper everywhere

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "mnist-platform"
EXAMPLES = REPO_ROOT / "k8s" / "examples"
GROUP, VERSION, PLURAL = "ml.mnist-platform.dev", "v1alpha1", "modelrollouts"
API_VERSION = f"{GROUP}/{VERSION}"
MODEL = "mnist"
ROUTING_CM = ENV_SETTINGS["MNIST_OPERATOR_ROUTING_CONFIGMAP"].default.format(model=MODEL)
ROUTING_KEY = ENV_SETTINGS["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"].default
SERVING_CM = ENV_SETTINGS["MNIST_OPERATOR_SERVING_CONFIGMAP"].default.format(model=MODEL)
SERVING_KEY = ENV_SETTINGS["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"].default
FRONTEND_LABELS = dict(kv.split("=", 1) for kv in ENV_SETTINGS["MNIST_OPERATOR_FRONTEND_SELECTOR"].default.split(","))
FINAL_PHASES = {"Promoted", "RolledBack", "Failed"}


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
    return render.routing_document(render.RoutingState.single(MODEL, stable), generation)


# Analysis settings that judge within seconds; latency bounds loose enough for a loaded CI machine.
FAST_ANALYSIS = {"interval": "1s", "minRequests": 5, "minFeedback": 5, "failureLimit": 2, "maxErrorRate": 0.02,
                 "maxLatencyP99Ms": 5000, "inconclusiveTimeout": "60s", "routingTimeout": "15s"}


def model_config(versions: list[int], labels: dict[str, int]) -> model_server_config_pb2.ModelServerConfig:
    """The TF Serving model config the operator must write at a stage, as TF Serving's own protobuf (the rendering
    itself is checked against those protobufs in tests/operator/test_render.py; here, which versions and labels)."""
    return parse_model_config(render.render_model_config([render.ServingState(MODEL, f"/models/{MODEL}",
                                                                              tuple(versions), labels)]))


def parse_model_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


# ------------------------------------------------------------------------------------------ kubectl, as a user would


def try_apply(cluster: Cluster, manifest: dict[str, Any]) -> tuple[bool, str]:
    """`kubectl apply --validate=strict` in the test's namespace: (accepted, the API server's words when refused)."""
    result = cluster.kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump(manifest))
    return result.returncode == 0, result.stderr


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    accepted, message = try_apply(cluster, manifest)
    assert accepted, message


def patch_rollout(cluster: Cluster, name: str, patch: dict[str, Any]) -> None:
    cluster.check(cluster.kubectl("patch", "mr", name, "--type=merge", "-p", json.dumps(patch)))


def delete_rollout(cluster: Cluster, name: str, timeout: float = 60) -> None:
    """kubectl delete, which waits until the operator's finalizer let the object go."""
    cluster.check(cluster.kubectl("delete", "mr", name, f"--timeout={timeout:.0f}s", timeout=timeout + 30))


def describe_events(cluster: Cluster, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of each row of the Events table `kubectl describe mr <name>` prints (none: [])."""
    described = cluster.check(cluster.kubectl("describe", "mr", name))
    assert "\nEvents:" in described, described
    if re.search(r"\nEvents:\s*<none>", described):
        return []
    rows = described.split("\nEvents:", 1)[1].splitlines()
    header = next(i for i, line in enumerate(rows) if line.split()[:3] == ["Type", "Reason", "Age"])
    events = []
    for line in rows[header + 2:]:  # after the header and its ---- underline
        if not line.strip():
            break
        kind, reason, _age, _source, message = line.split(None, 4)
        events.append((kind, reason, message))
    return events


# ------------------------------------------------------------------------------------------------------ processes


class Frontend(FrontendProcess):
    """`mnist-frontend` (gunicorn, 1 worker, embedded backend) on 127.0.0.1, routing read from a file."""

    def __init__(self, model_base_path: Path, workdir: Path) -> None:
        self.routing_file = workdir / "routing.json"
        self.routing_file.write_text(json.dumps(routing_document(1, 1)))
        super().__init__(workdir, {"MNIST_BACKEND": "embedded", "MNIST_MODEL_NAME": MODEL,
                                   "MNIST_MODEL_BASE_PATH": str(model_base_path),
                                   "MNIST_ROUTING_FILE": str(self.routing_file), "MNIST_WORKERS": "1",
                                   "MNIST_THREADS": "4", "MNIST_ACCESS_LOG": "0", "TF_CPP_MIN_LOG_LEVEL": "2"})
        self.base = self.url

    def wait_ready(self, timeout: float = 120) -> None:
        """Up to 2 minutes: the worker imports TensorFlow and loads the routed version before it is ready."""
        super().wait_ready(timeout)

    def serves_generation(self, generation: int) -> bool:
        requests.get(f"{self.base}/readyz", timeout=5)  # the frontend re-reads its routing file on requests
        text = requests.get(f"{self.base}/metrics", timeout=5).text
        return any(line.startswith("mnist_frontend_routing_generation{") and float(line.split()[-1]) == generation
                   for line in text.splitlines())


class ConfigMapSync:
    """The kubelet's part: watch the routing and serving ConfigMaps through the API server, copy the routing key
    into the frontend's file, and record every distinct value written (in the order the API server stored them)."""

    def __init__(self, cluster: Cluster, routing_file: Path, routing: tuple[str, str] = (ROUTING_CM, ROUTING_KEY),
                 serving: tuple[str, str] = (SERVING_CM, SERVING_KEY)) -> None:
        self.cluster, self.routing_file = cluster, routing_file
        self.routing_cm, self.serving_cm = routing, serving
        self.routing_history: list[dict[str, Any]] = []
        self.serving_history: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="configmap-sync", daemon=True)

    def _seen(self, cm: Any) -> None:
        data, name = cm.data or {}, cm.metadata.name
        if name == self.routing_cm[0] and data.get(self.routing_cm[1]) is not None:
            doc = json.loads(data[self.routing_cm[1]])
            if not self.routing_history or doc != self.routing_history[-1]:
                self.routing_history.append(doc)
                tmp = self.routing_file.with_suffix(".tmp")
                tmp.write_text(data[self.routing_cm[1]])
                tmp.replace(self.routing_file)  # atomic, as the kubelet's symlink swap is
        if name == self.serving_cm[0] and data.get(self.serving_cm[1]) is not None:
            text = data[self.serving_cm[1]]
            if not self.serving_history or text != self.serving_history[-1]:
                self.serving_history.append(text)

    def _run(self) -> None:
        try:
            with kubernetes.config.new_client_from_config(str(self.cluster.kubeconfig)) as api:
                core = kubernetes.client.CoreV1Api(api)
                version = None
                while not self._stop.is_set():
                    if version is None:  # list, then watch from where the list ended
                        listed = core.list_namespaced_config_map(self.cluster.namespace)
                        for cm in listed.items:
                            self._seen(cm)
                        version = listed.metadata.resource_version
                    try:
                        # Short server-side timeouts so that stop() is heard; each watch resumes where the last ended.
                        for event in kubernetes.watch.Watch().stream(
                                core.list_namespaced_config_map, self.cluster.namespace, resource_version=version,
                                timeout_seconds=1, allow_watch_bookmarks=True):
                            version = event["object"].metadata.resource_version
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._seen(event["object"])
                    except kubernetes.client.ApiException as exc:
                        if exc.status != 410:
                            raise
                        version = None  # too old a resourceVersion: list again
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop() and check()
            self.error = exc

    def start(self) -> ConfigMapSync:
        self._thread.start()
        return self

    def check(self) -> None:
        assert self.error is None, f"the ConfigMap sync failed: {self.error!r}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(10)

    def candidate_weights(self, candidate: int) -> list[int]:
        """The candidate's weight in each routing document written, in order."""
        return [next((r["weight"] for r in doc["routes"] if r["version"] == candidate), 0)
                for doc in self.routing_history]


class OperatorProcess:
    """`mnist-operator run --namespace <ns>` as a real process (so it can be killed -9 like a lost pod)."""

    def __init__(self, cluster: Cluster, env: dict[str, str], workdir: Path) -> None:
        self.cluster, self.env, self.workdir = cluster, env, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.health_port = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.runs}.log"

    def start(self, timeout: float = 60) -> None:
        """Start it and return once it is up: kopf serves its liveness endpoint only after its startup handlers
        (login, configuration) succeeded; ModelRollouts that exist already are in the list its watch begins with."""
        self.runs += 1
        self.health_port = free_port()
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(BIN / "mnist-operator"), "run", "--namespace", self.cluster.namespace, "--standalone",
             "--liveness", f"http://127.0.0.1:{self.health_port}/healthz"],
            env={**os.environ, **self.cluster.env(), **self.env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def alive() -> bool:
            assert self.process is not None and self.process.poll() is None, "operator exited:\n" + self.logs()
            try:
                return requests.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_for(alive, timeout, "the operator's liveness endpoint", interval=0.2)

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
            self.process.wait(3)  # kopf's graceful exit can wait on daemons; the test's namespace is discarded anyway
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def logs(self) -> str:
        return "\n".join((self.workdir / f"operator-{i}.log").read_text()[-4000:] for i in range(1, self.runs + 1)
                         if (self.workdir / f"operator-{i}.log").exists())


class Traffic:
    """Real digits at a bounded rate, each answered with feedback; sticky users for A/B tests."""

    def __init__(self, base: str, images: np.ndarray, labels: np.ndarray, users: int = 200,
                 max_requests: int = 20_000, max_s: float = 180.0) -> None:
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


# ---------------------------------------------------------------------------------------------------------- world


def frontend_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The frontend as the cluster sees it: a hostNetwork pod (kwok gives it its node's address, 127.0.0.1)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"hostNetwork": True, "containers": [{"name": "frontend", "image": "mnist-platform/frontend:test"}]}}


def wait_pod_ready(cluster: Cluster, name: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = cluster.get("v1", "Pod", name) or {}
        status = pod.get("status") or {}
        return pod if any(c["type"] == "Ready" and c["status"] == "True"
                          for c in status.get("conditions") or []) and status.get("podIP") else None
    pod = wait_for(ready, timeout, f"pod {name} to be Ready")
    assert pod["status"]["podIP"] == "127.0.0.1", (pod["status"], cluster.pod_summary())
    return pod


def release_rollouts(cluster: Cluster) -> None:
    """Drop the operator's finalizers once it is gone, so that the test's namespace can be deleted."""
    for obj in cluster.list(API_VERSION, "ModelRollout"):
        if obj["metadata"].get("finalizers"):
            cluster.kubectl("patch", "mr", obj["metadata"]["name"], "--type=merge",
                            "-p", '{"metadata": {"finalizers": null}}')


class Platform:
    """One test's world: its namespace on the real control plane, the shared frontend as a Pod, the sync, the
    operator (not started)."""

    def __init__(self, cluster: Cluster, frontend: Frontend, model_store: Path, workdir: Path,
                 generation: int) -> None:
        self.cluster, self.frontend = cluster, frontend
        self.namespace = cluster.namespace
        self.seed_generation = generation
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
        self.cluster.apply(frontend_pod("frontend-0", FRONTEND_LABELS))
        wait_pod_ready(self.cluster, "frontend-0")
        self.sync.start()
        wait_for(lambda: self.frontend.serves_generation(self.seed_generation), 30,
                 f"the frontend to load routing generation {self.seed_generation}", interval=0.1)

    def close(self) -> None:
        self.operator.stop()
        self.sync.stop()
        release_rollouts(self.cluster)
        self.sync.check()

    # ---------------------------------------------------------------------------------------------- reading

    def rollout(self, name: str) -> dict[str, Any]:
        obj = self.cluster.get(API_VERSION, "ModelRollout", name)
        assert obj is not None, f"ModelRollout {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.rollout(name).get("status") or {}

    def wait_phase(self, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
        try:
            return wait_for(lambda: (lambda st: st if st.get("phase") in phases else None)(self.status(name)),
                            timeout, f"{name} to reach {sorted(phases)}", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {json.dumps(self.status(name))[:1500]}\n"
                                 f"operator log:\n{self.operator.logs()}") from None

    def wait_stage(self, name: str, stage: str, timeout: float) -> dict[str, Any]:
        try:
            return wait_for(lambda: (lambda st: st if st.get("stage") == stage else None)(self.status(name)),
                            timeout, f"{name} to reach stage {stage}", interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {json.dumps(self.status(name))[:1500]}\n"
                                 f"operator log:\n{self.operator.logs()}") from None

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events about the ModelRollout `name` (not the ModelVersion of the same name), oldest first."""
        return [e for e in self.cluster.events(name) if e["involvedObject"].get("kind") == "ModelRollout"]

    def event_reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in self.events(name) for _ in range(int(e.get("count") or 1))]

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------- the chart

RELEASE = "mnist"


@dataclass
class Chart:
    """The release in the test's namespace: the operator's environment and ServiceAccount, as helm made them."""

    cluster: Cluster
    values: list[str]
    env: dict[str, str]
    service_account: str

    def upgrade(self, *more: str) -> None:
        self.cluster.check(self.cluster.helm("upgrade", RELEASE, str(CHART), *self.values, *more))

    def data(self, name_var: str, key_var: str) -> str | None:
        """The key of one of the chart's ConfigMaps, named as the operator's environment names it."""
        cm = self.cluster.get("v1", "ConfigMap", self.env[name_var])
        assert cm is not None, f"the chart did not create ConfigMap {self.env[name_var]}"
        return (cm.get("data") or {}).get(self.env[key_var])

    def routing(self) -> dict | None:
        return json.loads(self.data("MNIST_OPERATOR_ROUTING_CONFIGMAP", "MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY")
                          or "null")

    def models(self) -> str | None:
        return self.data("MNIST_OPERATOR_SERVING_CONFIGMAP", "MNIST_OPERATOR_SERVING_CONFIGMAP_KEY")

    def operator(self, model_store: Path, workdir: Path, as_service_account: bool = True) -> OperatorProcess:
        # No TF Serving runs here (kwok's loopback pod IPs never reach an EndpointSlice): the model store is the gate.
        env = {**self.env, "MNIST_OPERATOR_SERVING_REST": "", "MNIST_OPERATOR_SERVING_SERVICE": "",
               "MNIST_OPERATOR_MODEL_BASE_PATH": str(model_store),
               "MNIST_OPERATOR_MAX_TICK_S": "0.5"}
        if as_service_account:
            kubeconfig = str(self.cluster.service_account_kubeconfig(self.service_account))
            env |= {"KUBECONFIG": kubeconfig, "MNIST_OPERATOR_KUBECONFIG": kubeconfig}
        return OperatorProcess(self.cluster, env, workdir)

    def sync(self, frontend: Frontend) -> ConfigMapSync:
        e = self.env
        return ConfigMapSync(self.cluster, frontend.routing_file,
                             routing=(e["MNIST_OPERATOR_ROUTING_CONFIGMAP"], e["MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"]),
                             serving=(e["MNIST_OPERATOR_SERVING_CONFIGMAP"], e["MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"]))


def chart_operator(cluster: Cluster) -> tuple[dict[str, str], str]:
    """The operator container's environment (fieldRefs resolved) and ServiceAccount, from the Deployment helm made."""
    deployments = cluster.list("apps/v1", "Deployment", label_selector="app.kubernetes.io/component=operator")
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    pod = deployments[0]["spec"]["template"]["spec"]
    env = {}
    for item in pod["containers"][0].get("env", []):
        if item.get("value") is not None:
            env[item["name"]] = item["value"]
        elif ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = cluster.namespace
    return env, pod["serviceAccountName"]


def frontend_as_chart_pod(chart: Chart) -> None:
    """The real frontend as one more pod the operator's selector (the chart's) matches, Ready at 127.0.0.1."""
    labels = dict(kv.split("=", 1) for kv in chart.env["MNIST_OPERATOR_FRONTEND_SELECTOR"].split(","))
    chart.cluster.apply(frontend_pod("frontend-test", labels))
    wait_pod_ready(chart.cluster, "frontend-test")
