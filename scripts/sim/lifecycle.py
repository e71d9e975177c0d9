"""`make sim-up` / `make sim-down`: the chart on a real Kubernetes control plane, without Docker (docs/SIM.md).

sim-up, idempotently: models (make demo's v1 and v2, trained when missing) -> control plane (kwok nodes) ->
namespace `mnist` (PodSecurity restricted) -> a hostPath PersistentVolume for the chart's model store claim ->
`helm install` with charts/mnist-platform/ci/sim-values.yaml -> the local processes that play the pods, each
run from its Deployment as the API server holds it (scripts/sim/pods.py):

    kubelet   scripts/sim/kubelet_sync.py: the pods' ConfigMap/Secret volumes as local directories
    serving   the TF Serving stand-in, with the serving Deployment's flags (its model config: the operator's)
    operator  `mnist-operator run`, logged in as the chart's ServiceAccount (a TokenRequest token)
    frontend  `mnist-frontend`, gRPC to the stand-in, on 127.0.0.1:SIM_PORT, the chart's API key Secret

-> an initial rollout of version 1 while nothing serves -> what to type next. sim-down stops the processes
(pid files under the state dir), deletes the control plane and the state dir. Models stay.

Extra values files (SIM_VALUES) go after ci/sim-values.yaml: with ci/arm64-embedded-values.yaml the chart
deploys no TF Serving, so no stand-in runs and the frontend serves the model store itself (embedded backend).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
import yaml

from scripts.demo import models as demo_models
from scripts.demo.ports import free_port, port_is_free

from .control_plane import TOOLS_BIN, ControlPlane, ControlPlaneError, missing_binaries
from .kubelet_sync import volume_dir
from .pods import REPO_ROOT, LocalContainer, PodError, local_container, replace_flag
from .procs import Procs

CHART = REPO_ROOT / "charts" / "mnist-platform"
SIM_VALUES = CHART / "ci" / "sim-values.yaml"
INITIAL_ROLLOUT = Path(__file__).with_name("initial-rollout.yaml")
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
# Start order; sim-down stops them the other way round.
PROCESSES = ("kubelet", "serving", "operator", "frontend")
MR = "modelrollouts.ml.mnist-platform.dev"


class SimError(RuntimeError):
    """Something the user can act on; the message is one line (a log tail may follow)."""


@dataclass
class SimConfig:
    name: str = "mnist-sim"
    state_dir: Path = REPO_ROOT / "build" / "sim"
    port: int = 8080
    namespace: str = "mnist"
    release: str = "mnist"
    model: str = "mnist"
    # Root of the model store: <root>/<model>/<version>/ (what the chart's claim holds at /models).
    model_store: Path = REPO_ROOT / "models"
    # Values files applied after ci/sim-values.yaml (make sim-up SIM_VALUES=...), in order.
    values: tuple[Path, ...] = ()
    data: Path = field(default_factory=lambda: Path(os.environ.get("MNIST_DATA") or REPO_ROOT / "data" / "mnist.npz"))
    ready_timeout_s: float = 180.0

    @property
    def fullname(self) -> str:
        return f"{self.release}-mnist-platform"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def say(text: str = "") -> None:
    print(text, flush=True)


def rel(path: Path) -> str:
    """A path as a person types it from the repository root."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def absolute(path: Path) -> str:
    """A path for an export line: $PWD/<path> inside the repository (still true after a cd), else as is."""
    shown = rel(path)
    return shown if os.path.isabs(shown) else f"$PWD/{shown}"


# ------------------------------------------------------------------------------------------------ the cluster


class Sim:
    """One sim: its control plane, state directory, processes and the tools pointed at them."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.plane = ControlPlane(cfg.name, cfg.state_dir)
        self.procs = Procs(cfg.state_dir)
        self.pods_dir = cfg.state_dir / "pods"
        self.state_file = cfg.state_dir / "state.json"
        self.started: list[str] = []  # what this run created or started (empty: all of it was running)

    # --------------------------------------------------------------------------------------- tools

    def tool_env(self) -> dict[str, str]:
        return {**os.environ, **self.plane.tool_env(self.cfg.state_dir / "home")}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run([str(TOOLS_BIN / "kubectl"), "-n", self.cfg.namespace, *args], input=input,
                                capture_output=True, text=True, timeout=120, env=self.tool_env())
        if check and result.returncode != 0:
            raise SimError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def get_json(self, *args: str) -> dict[str, Any] | None:
        out = self.kubectl("get", *args, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(out) if out.strip() else None

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TOOLS_BIN / "helm"), *args], capture_output=True, text=True, timeout=300,
                              env=self.tool_env())

    def api_reachable(self) -> bool:
        if not self.plane.kubeconfig.exists():
            return False
        result = subprocess.run([str(TOOLS_BIN / "kubectl"), "get", "--raw", "/readyz"], capture_output=True,
                                text=True, timeout=20, env=self.tool_env())
        return result.returncode == 0

    # --------------------------------------------------------------------------------------- state

    def load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)


# ------------------------------------------------------------------------------------------------ sim-up steps


def preflight(sim: Sim) -> None:
    """Missing tools, a taken port, no data to train from: one line each, before anything starts."""
    missing = missing_binaries(TOOLS_BIN) + ([] if os.access(TOOLS_BIN / "helm", os.X_OK) else ["helm"])
    if missing:
        raise SimError(f"missing in {rel(TOOLS_BIN)}: {', '.join(missing)}: run `make tools`")
    cfg = sim.cfg
    frontend = sim.procs.get("frontend")
    running_port = sim.load_state().get("ports", {}).get("frontend")
    if frontend is not None and running_port != cfg.port:
        raise SimError(f"this sim's frontend already listens on port {running_port}: `make sim-down` first, "
                       f"or run sim-up again with SIM_PORT={running_port}")
    if frontend is None and not port_is_free(cfg.port):
        raise SimError(f"port {cfg.port} on 127.0.0.1 is already in use, so the sim's frontend cannot listen "
                       f"there; stop what holds it (`ss -ltnp 'sport = :{cfg.port}'` shows it) or pick another "
                       "port with SIM_PORT=NNNN")


def ensure_models(cfg: SimConfig) -> bool:
    """Versions 1 and 2 of the model in the store: make demo's, trained the same way (same seeds) when missing."""
    model_dir = cfg.model_store / cfg.model
    todo = demo_models.versions_to_train(model_dir, [1, 2], retrain=False)
    if not todo:
        say(f"==> models: v1 and v2 already in {rel(model_dir)}")
        return False
    if not cfg.data.exists():
        raise SimError(f"{rel(cfg.data)} is missing, and versions {todo} must be trained from it: run `make data`")
    for version in todo:
        spec = demo_models.TRAIN_SPECS[version]
        say(f"==> models: training {spec.describe()} into {rel(model_dir)} (make demo's, once)")
        started = time.monotonic()
        log = cfg.state_dir / "logs" / f"train-v{version}.log"
        result = subprocess.run(demo_models.train_command(spec, cfg.data, model_dir), capture_output=True,
                                text=True)
        if result.returncode != 0 or not demo_models.is_published(model_dir, version):
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(result.stdout + result.stderr)
            raise SimError(f"training v{version} failed (exit {result.returncode}); its output: {rel(log)}")
        say(f"    v{version} trained in {time.monotonic() - started:.0f} s, test accuracy "
            f"{demo_models.offline_accuracy(model_dir, version)}")
    return True


def ensure_control_plane(sim: Sim) -> bool:
    """The control plane running; True when it was (re)created now (every local process must start again)."""
    if sim.plane.exists() and sim.api_reachable():
        say(f"==> control plane {sim.cfg.name}: already running ({rel(sim.plane.kubeconfig)})")
        return False
    if sim.plane.exists():
        say(f"==> control plane {sim.cfg.name}: its state is here but it does not answer: creating it again")
        stop_processes(sim)
        sim.plane.delete()
    sim.state_file.unlink(missing_ok=True)
    say(f"==> control plane {sim.cfg.name}: Kubernetes {sim.plane.k8s_version} (etcd, kube-apiserver, "
        "controller-manager, scheduler), kwok nodes sim-cpu and sim-gpu")
    try:
        took = sim.plane.create()
    except ControlPlaneError as exc:
        raise SimError(str(exc)) from None
    say(f"    both nodes Ready in {took:.1f} s")
    sim.started.append("control plane")
    return True


def ensure_namespace(sim: Sim) -> None:
    ns = sim.cfg.namespace
    manifest = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": dict([RESTRICTED.split("=", 1)])}}
    sim.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    # `kubectl get mr` without -n: the namespace of the admin kubeconfig's context is the sim's.
    sim.plane.kubectl("config", "set-context", "--current", f"--namespace={ns}")


def ensure_model_volume(sim: Sim) -> None:
    """No storage provisioner: a hostPath PersistentVolume, claimed in advance for the chart's claim."""
    cfg = sim.cfg
    values = yaml.safe_load(SIM_VALUES.read_text())
    pv = {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": f"{cfg.fullname}-models", "labels": {"app.kubernetes.io/part-of": "mnist-sim"}},
          "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                   "storageClassName": values["modelStore"]["storageClass"],
                   "persistentVolumeReclaimPolicy": "Retain",
                   "hostPath": {"path": str(cfg.model_store.resolve()), "type": "Directory"},
                   "claimRef": {"namespace": cfg.namespace, "name": f"{cfg.fullname}-models"}}}
    existing = sim.get_json("pv", pv["metadata"]["name"])
    if existing and existing["spec"].get("hostPath", {}).get("path") != pv["spec"]["hostPath"]["path"]:
        raise SimError(f"PersistentVolume {pv['metadata']['name']} points at "
                       f"{existing['spec']['hostPath']['path']}, not {cfg.model_store}: `make sim-down` first")
    if not existing:
        sim.kubectl("apply", "-f", "-", input=json.dumps(pv))
    say(f"==> model store: PersistentVolume {pv['metadata']['name']} (hostPath {rel(cfg.model_store)}) for claim "
        f"{cfg.fullname}-models")


def values_files(cfg: SimConfig) -> list[Path]:
    return [SIM_VALUES, *cfg.values]


def ensure_release(sim: Sim) -> None:
    cfg = sim.cfg
    files = values_files(cfg)
    state = sim.load_state()
    status = sim.helm("status", cfg.release, "-n", cfg.namespace, "-o", "json")
    installed = status.returncode == 0 and json.loads(status.stdout)["info"]["status"] == "deployed"
    # A release installed with other values files is upgraded to these (the processes follow: their settings
    # come from the Deployments, so the ones that changed restart).
    same_values = state.get("values", [str(SIM_VALUES)]) == [str(f) for f in files]
    if installed and same_values:
        say(f"==> helm release {cfg.release}: already installed (revision {json.loads(status.stdout)['version']})")
    else:
        verb = "upgrade" if installed else "install"
        say(f"==> helm {verb} {cfg.release} {rel(CHART)} -n {cfg.namespace} " + " ".join(f"-f {rel(f)}" for f in files))
        started = time.monotonic()
        result = sim.helm("upgrade", "--install", cfg.release, str(CHART), "-n", cfg.namespace,
                          *[a for f in files for a in ("-f", str(f))], "--timeout", "120s")
        if result.returncode != 0:
            raise SimError(f"helm {verb} failed: {result.stderr.strip()}")
        say(f"    {'upgraded' if installed else 'installed'} in {time.monotonic() - started:.1f} s")
        sim.started.append("release")
        state = sim.load_state()
        state["values"] = [str(f) for f in files]
        sim.save_state(state)
    sim.kubectl("wait", "--for=condition=Available", "deployment", "--all", "--timeout=60s")
    pods = sim.get_json("pods", "-l", f"app.kubernetes.io/instance={cfg.release}") or {"items": []}
    say("    pods (kwok): " + ", ".join(
        f"{p['metadata']['labels'].get('app.kubernetes.io/component')} {p['status'].get('phase')} "
        f"{p['status'].get('podIP')} on {p['spec'].get('nodeName')}" for p in pods["items"]))


# ------------------------------------------------------------------------------------------------ processes


def claim_path(sim: Sim) -> Callable[[str], Path]:
    """A claim's local directory: the hostPath of the PersistentVolume bound to it, as a kubelet mounts it."""
    def resolve(claim: str) -> Path:
        pvc = sim.get_json("pvc", claim)
        if not pvc or pvc.get("status", {}).get("phase") != "Bound":
            raise SimError(f"PersistentVolumeClaim {claim} is not Bound: the pods that mount it cannot start")
        pv = sim.get_json("pv", pvc["spec"]["volumeName"])
        if not pv or "hostPath" not in pv["spec"]:
            raise SimError(f"PersistentVolume {pvc['spec']['volumeName']} is not a hostPath volume")
        return Path(pv["spec"]["hostPath"]["path"])
    return resolve


def deployment(sim: Sim, component: str) -> dict[str, Any]:
    found = sim.get_json("deployment", f"{sim.cfg.fullname}-{component}")
    if not found:
        raise SimError(f"Deployment {sim.cfg.fullname}-{component} is not in namespace {sim.cfg.namespace}")
    return found


def container(sim: Sim, component: str) -> LocalContainer:
    try:
        local = local_container(deployment(sim, component), component, sim.pods_dir, claim_path(sim))
        local.program()  # a container no local program plays: fail here, with the pod's name
        return local
    except PodError as exc:
        raise SimError(str(exc)) from None


@dataclass
class Planned:
    """A process to run: its command line and environment, and the part of them that decides a restart."""

    name: str
    argv: list[str]
    env: dict[str, str]
    settings: dict[str, str]  # what came from the cluster and the sim (not the user's shell)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.argv, self.settings], sort_keys=True).encode()).hexdigest()[:16]


def _env_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


def plan_kubelet(sim: Sim, serving: bool = True) -> Planned:
    pods = ",".join(f"{sim.cfg.fullname}-{c}={c}" for c in ("frontend", "serving", "operator")
                    if serving or c != "serving")
    argv = [sys.executable, "-m", "scripts.sim.kubelet_sync", "--kubeconfig", str(sim.plane.kubeconfig),
            "--namespace", sim.cfg.namespace, "--pods-dir", str(sim.pods_dir),
            *[a for pod in pods.split(",") for a in ("--deployment", pod)]]
    env = dict(os.environ)
    return Planned("kubelet", argv, env, {"server": sim.plane.server()})


def plan_serving(sim: Sim, ports: dict[str, int]) -> Planned:
    local = container(sim, "serving")

    def args(container_args: list[str]) -> list[str]:
        # The stand-in binds 127.0.0.1 only; the ports are this machine's, not the pod's.
        out = replace_flag(container_args, "--port", str(ports["grpc"]))
        return replace_flag(out, "--rest_api_port", str(ports["rest"]))
    argv = local.argv(args)
    env = local.environment()
    return Planned("serving", argv, env, _env_settings(env))


def plan_operator(sim: Sim, ports: dict[str, int], serving: bool = True) -> Planned:
    local = container(sim, "operator")

    def args(container_args: list[str]) -> list[str]:
        out = replace_flag(container_args, "--liveness", f"http://127.0.0.1:{ports['liveness']}/healthz")
        return [*out, "--namespace", sim.cfg.namespace]
    argv = local.argv(args)
    env = local.environment()
    # Only what must point at the local processes, and the API credentials of the pod's ServiceAccount.
    env.update({"MNIST_OPERATOR_KUBECONFIG": str(sim.cfg.state_dir / "operator.kubeconfig"),
                "MNIST_OPERATOR_METRICS_URLS": f"http://127.0.0.1:{ports['frontend']}/metrics"})
    if serving:
        # The one local stand-in is every replica: kwok's loopback pod IPs never reach an EndpointSlice
        # (docs/TESTING.md), so the chart's MNIST_OPERATOR_SERVING_SERVICE would list none.
        rest = f"http://127.0.0.1:{ports['rest']}"
        env["MNIST_OPERATOR_SERVING_REST"] = env["MNIST_OPERATOR_SERVING_REPLICAS"] = rest
    return Planned("operator", argv, env, {**_env_settings(env), "server": sim.plane.server()})


def plan_frontend(sim: Sim, ports: dict[str, int], serving: bool = True) -> Planned:
    local = container(sim, "frontend")
    env = local.environment()
    env["MNIST_BIND"] = f"127.0.0.1:{ports['frontend']}"
    if serving:
        env.update({"MNIST_SERVING_GRPC": f"127.0.0.1:{ports['grpc']}",
                    "MNIST_SERVING_REST": f"http://127.0.0.1:{ports['rest']}"})
    return Planned("frontend", local.argv(), env, _env_settings(env))


def service_account(sim: Sim, component: str) -> str:
    return deployment(sim, component)["spec"]["template"]["spec"].get("serviceAccountName") or "default"


def wait_or_fail(sim: Sim, name: str, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if sim.procs.get(name) is None:
            raise SimError(f"{name} exited before {what}; last lines of {rel(sim.procs.log_path(name))}:\n"
                           f"{sim.procs.tail(name)}")
        time.sleep(0.2)
    raise SimError(f"{name}: no {what} after {timeout_s:.0f} s; last lines of {rel(sim.procs.log_path(name))}:\n"
                   f"{sim.procs.tail(name)}")


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def allocate_ports(sim: Sim, state: dict[str, Any]) -> dict[str, int]:
    """The recorded ports, where the process holding them still runs or they are free; new ones otherwise."""
    ports = dict(state.get("ports", {}))
    holders = {"grpc": "serving", "rest": "serving", "liveness": "operator"}
    for key, holder in holders.items():
        if key in ports and (sim.procs.get(holder) is not None or port_is_free(ports[key])):
            continue
        ports[key] = free_port()
    ports["frontend"] = sim.cfg.port
    return ports


def ensure_process(sim: Sim, state: dict[str, Any], planned: Planned, ready: Callable[[], bool],
                   timeout_s: float, what: str, before_start: Callable[[], None] | None = None) -> bool:
    """Start the process unless the very same one runs already; True when it was (re)started."""
    fingerprints = state.setdefault("fingerprints", {})
    running = sim.procs.get(planned.name)
    if running is not None and fingerprints.get(planned.name) == planned.fingerprint():
        say(f"    {planned.name:9s} already running (pid {running.pid})")
        return False
    if running is not None:
        say(f"    {planned.name:9s} its settings changed: restarting it")
        sim.procs.stop(planned.name)
    if before_start is not None:
        before_start()
    started = time.monotonic()
    proc = sim.procs.start(planned.name, planned.argv, planned.env, cwd=REPO_ROOT)
    fingerprints[planned.name] = planned.fingerprint()
    sim.save_state(state)
    wait_or_fail(sim, planned.name, ready, timeout_s, what)
    sim.started.append(planned.name)
    say(f"    {planned.name:9s} started (pid {proc.pid}), {what} after {time.monotonic() - started:.1f} s; "
        f"log {rel(sim.procs.log_path(planned.name))}")
    return True


def routing_document(sim: Sim) -> str | None:
    cm = sim.get_json("configmap", f"{sim.cfg.fullname}-routing") or {}
    return (cm.get("data") or {}).get("routing.json")


def start_processes(sim: Sim) -> None:
    cfg = sim.cfg
    state = sim.load_state()
    ports = allocate_ports(sim, state)
    state.update(ports=ports, name=cfg.name, model_store=str(cfg.model_store))
    sim.save_state(state)
    # None with the frontend's embedded backend: the release deploys no TF Serving.
    serving_deployment = sim.get_json("deployment", f"{cfg.fullname}-serving")
    serving = serving_deployment is not None
    say("==> the pods' processes (each from its Deployment in the cluster; 127.0.0.1 only)"
        + ("" if serving else "; no TF Serving in this release: the frontend serves the model store itself"))
    if serving:
        volumes = serving_deployment["spec"]["template"]["spec"]["volumes"]
        projected = volume_dir(sim.pods_dir, "serving", next(v["name"] for v in volumes if "configMap" in v and
                                                             v["configMap"]["name"].endswith("-model-config")))
    else:
        projected = volume_dir(sim.pods_dir, "frontend", "routing")
        sim.procs.stop("serving")  # a release upgraded to embedded serving: its stand-in has no pod any more
    ensure_process(sim, state, plan_kubelet(sim, serving), lambda: (projected / "..data").is_symlink(), 60,
                   "volumes projected")
    if serving:
        ensure_process(sim, state, plan_serving(sim, ports), lambda: _listening(ports["rest"]), cfg.ready_timeout_s,
                       "REST API up")
    sa = service_account(sim, "operator")

    def operator_token() -> None:
        sim.plane.service_account_kubeconfig(cfg.namespace, sa, cfg.state_dir / "operator.kubeconfig")
    ensure_process(sim, state, plan_operator(sim, ports, serving),
                   lambda: http_ok(f"http://127.0.0.1:{ports['liveness']}/healthz"),
                   cfg.ready_timeout_s, f"liveness (as ServiceAccount {sa})", before_start=operator_token)
    if routing_document(sim) is None:
        say(f"==> nothing serves yet: initial rollout of v1 ({rel(INITIAL_ROLLOUT)})")
        sim.kubectl("apply", "-f", str(INITIAL_ROLLOUT))
    routing_dir = volume_dir(sim.pods_dir, "frontend", "routing")
    deadline = time.monotonic() + cfg.ready_timeout_s
    while not (routing_dir / "routing.json").exists():
        if time.monotonic() > deadline:
            raise SimError(f"the operator wrote no routing.json in {cfg.ready_timeout_s:.0f} s: "
                           f"`kubectl describe mr`; operator log {rel(sim.procs.log_path('operator'))}")
        time.sleep(0.3)
    ensure_process(sim, state, plan_frontend(sim, ports, serving), lambda: http_ok(f"{cfg.base_url}/readyz"),
                   cfg.ready_timeout_s, f"ready on {cfg.base_url}")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_initial_rollout(sim: Sim) -> None:
    name = yaml.safe_load(INITIAL_ROLLOUT.read_text())["metadata"]["name"]
    deadline = time.monotonic() + sim.cfg.ready_timeout_s
    while True:
        mr = sim.get_json(MR, name)
        phase = ((mr or {}).get("status") or {}).get("phase")
        if mr is None or phase == "Promoted":
            return
        if phase in ("Failed", "RolledBack"):
            raise SimError(f"the initial rollout {name} ended {phase}: {mr['status'].get('message')}")
        if time.monotonic() > deadline:
            raise SimError(f"the initial rollout {name} is still {phase} after {sim.cfg.ready_timeout_s:.0f} s: "
                           f"`kubectl describe mr {name}`")
        time.sleep(0.5)


def up(cfg: SimConfig) -> int:
    started = time.monotonic()
    sim = Sim(cfg)
    preflight(sim)
    trained = ensure_models(cfg)
    training_s = time.monotonic() - started if trained else 0.0
    if ensure_control_plane(sim):
        stop_processes(sim, quiet=True)
    ensure_namespace(sim)
    ensure_model_volume(sim)
    ensure_release(sim)
    start_processes(sim)
    wait_initial_rollout(sim)
    serving = json.loads(routing_document(sim) or "{}").get("routes", [])
    took = time.monotonic() - started
    serves = f"{cfg.model} " + ", ".join(f"v{r['version']} {r['weight']}%" for r in serving) + f" on {cfg.base_url}"
    say()
    if sim.started:
        say(f"==> sim up in {took:.0f} s" + (f" ({training_s:.0f} s of it training)" if trained else "") + f": {serves}")
    else:
        say(f"==> sim already up, one of everything running (checked in {took:.0f} s): {serves}")
    print_next_steps(sim)
    return 0


def print_next_steps(sim: Sim) -> None:
    cfg = sim.cfg
    make_args = "" if cfg.state_dir.resolve() == SimConfig.state_dir else f" SIM_DIR={rel(cfg.state_dir)}"
    secret = f"{cfg.fullname}-api-keys"
    steps = [
        (f"export KUBECONFIG={absolute(sim.plane.kubeconfig)} PATH={absolute(TOOLS_BIN)}:$PATH", ""),
        ("kubectl get pods,pvc,mv,mr", f"namespace {cfg.namespace} is the context's default"),
        ("kubectl apply -f k8s/examples/canary.yaml", "roll v2 out as a canary: 10, 25, 50, 100% of traffic"),
        (f"make sim-traffic{make_args}", "in a second terminal: real MNIST digits + true labels, 10/s for 5 min"),
        ("kubectl get mr -w", "watch it step and promote (about 2 minutes with that traffic)"),
        ("", ""),
        (f"export MNIST_API_KEY=$(kubectl get secret {secret} -o jsonpath='{{.data.api-key}}' | base64 -d)", ""),
        (f".venv/bin/mnist-client predict --index 0 --url {cfg.base_url}", f"or draw one: {cfg.base_url}/"),
        ("", ""),
        (f"make sim-down{make_args}", f"stop it all (the models stay in {rel(cfg.model_store)}/)"),
    ]
    width = max(len(c) for c, note in steps if note and len(c) <= 48)  # a longer command's note just follows it
    say(f"\nNext, from the repository root (kubectl and helm: the pinned ones in {rel(TOOLS_BIN)}):\n")
    for command, note in steps:
        say(f"  {command:{width}s}   # {note}" if note else f"  {command}".rstrip())


# ------------------------------------------------------------------------------------------------ sim-down


def stop_processes(sim: Sim, quiet: bool = False) -> list[str]:
    stopped = []
    for name in reversed(PROCESSES):
        if sim.procs.stop(name):
            stopped.append(name)
    for name in sim.procs.names():  # anything else a pid file names
        if sim.procs.stop(name):
            stopped.append(name)
    if not quiet:
        say(f"==> processes: {'stopped ' + ', '.join(stopped) if stopped else 'none running'}")
    return stopped


def recorded(cfg: SimConfig) -> SimConfig:
    """cfg with the name, port and model store that sim-up recorded in the state dir (sim-down, sim-traffic)."""
    state = Sim(cfg).load_state()
    return replace(cfg, name=state.get("name", cfg.name), port=state.get("ports", {}).get("frontend", cfg.port),
                   model_store=Path(state.get("model_store", cfg.model_store)))


def down(cfg: SimConfig) -> int:
    sim = Sim(recorded(cfg))
    cfg = sim.cfg
    stop_processes(sim)
    if sim.plane.exists():
        say(f"==> control plane {cfg.name}: deleting it")
        sim.plane.delete()
    else:
        say(f"==> control plane {cfg.name}: not running")
    if cfg.state_dir.exists():
        shutil.rmtree(cfg.state_dir)
        say(f"==> {rel(cfg.state_dir)} removed (the models stay in {rel(cfg.model_store)}/)")
    return 0
