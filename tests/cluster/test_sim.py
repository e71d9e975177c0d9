"""`make sim-up` / `make sim-down` (scripts/sim) end to end: the chart on a control plane of its own, a canary
rolled out with kubectl under real traffic and promoted, then nothing left behind. Twice: with TF Serving (the
defaults), and with the values docs/KIND.md gives arm64 users (SIM_VALUES=ci/arm64-embedded-values.yaml: no TF
Serving, the frontend serves the model store itself).

The sim gets its own name, state directory and a free port, so it never meets a user's sim or the test
session's control plane, and the session's model store (published_models) instead of training again.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scripts.demo.ports import free_port
from scripts.demo.supervisor import group_members, pid_alive
from scripts.demo.traffic import TrafficGenerator, load_test_digits
from scripts.sim import lifecycle
from scripts.sim.control_plane import TOOLS_BIN
from tests.support.cluster import wait_for

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, FULLNAME = "mnist", "mnist-mnist-platform"
ARM64_VALUES = REPO_ROOT / "charts" / "mnist-platform" / "ci" / "arm64-embedded-values.yaml"
# Test-speed timings merged into k8s/examples/canary.yaml (as tests/operator_e2e does): checks every second,
# two short steps, latency bounds loose enough for a loaded CI machine.
FAST = {"canary": {"steps": [50, 100], "stepDuration": "2s"},
        "analysis": {"interval": "1s", "minRequests": 5, "minFeedback": 5, "failureLimit": 2, "maxErrorRate": 0.02,
                     "maxLatencyP99Ms": 5000, "inconclusiveTimeout": "60s", "routingTimeout": "15s"}}


def sim(command: str, state: Path, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.sim", command, "--dir", str(state), "--name", name, *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def kubectl(state: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    """kubectl as the printed next steps use it: the sim's admin kubeconfig, the namespace from its context."""
    result = subprocess.run([str(TOOLS_BIN / "kubectl"), *args], input=input, capture_output=True, text=True,
                            timeout=60, env={**os.environ, **(env or {}), "KUBECONFIG": str(state / "kubeconfig")})
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def recorded_pids(state: Path) -> dict[str, int]:
    """Every process the sim runs: its own (pid files) and the control plane's (kwokctl's pid files)."""
    files = [*(state / "pids").glob("*.pid"), *(state / "kwok").glob("clusters/*/pids/*.pid")]
    return {f.stem: int(f.read_text().split()[0]) for f in files}


def listening(pids: set[int]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the TCP sockets those processes listen on (from /proc/net/tcp and tcp6)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(cols[1].split(":")[0])
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(ipaddress.ip_address(raw))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


@pytest.mark.parametrize("values", [(), (ARM64_VALUES,)], ids=["tf-serving", "arm64-embedded"])
def test_sim_up_installs_the_chart_runs_a_canary_to_promoted_and_sim_down_leaves_nothing(
        published_models, mnist_npz: Path, tmp_path: Path, values: tuple[Path, ...]) -> None:
    state, name, port = tmp_path / "sim", f"mnist-simtest-{os.getpid()}-{len(values)}", free_port()
    store = published_models.base_path.parent
    args = ("--port", str(port), "--model-store", str(store), *[a for v in values for a in ("--values", str(v))])
    embedded = bool(values)
    components = ["frontend", "operator"] if embedded else ["frontend", "operator", "serving"]
    processes = [p for p in lifecycle.PROCESSES if p != "serving" or not embedded]
    pids: dict[str, int] = {}
    try:
        started = time.monotonic()
        up = sim("up", state, name, *args)
        assert up.returncode == 0, f"sim-up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        took = time.monotonic() - started
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
        assert "kubectl apply -f k8s/examples/canary.yaml" in up.stdout and "kubectl get mr -w" in up.stdout
        print(f"sim-up (models present): {took:.1f} s")

        # Idempotent: a second run finds one of everything running and says so.
        again = sim("up", state, name, *args)
        assert again.returncode == 0, again.stderr
        for process in processes:
            assert f"{process:9s} already running" in again.stdout, again.stdout
        assert "already installed" in again.stdout and "sim already up" in again.stdout
        pids = recorded_pids(state)
        assert set(processes) <= set(pids) and "kube-apiserver" in pids
        assert ("serving" in pids) is not embedded, "a stand-in runs only where the release deploys TF Serving"

        # What the cluster shows: the chart's pods on kwok's nodes, the claim bound, v1 serving.
        pods = json.loads(kubectl(state, "get", "pods", "-o", "json"))["items"]
        assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods) == components
        assert all(p["status"]["phase"] == "Running" for p in pods)
        assert kubectl(state, "get", "pvc", f"{FULLNAME}-models", "-o", "jsonpath={.status.phase}") == "Bound"
        assert kubectl(state, "get", "namespace", NAMESPACE, "-o",
                       "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}") == "restricted"

        # The operator is logged in as the chart's ServiceAccount with a TokenRequest token, not as the admin.
        operator_env = dict(e.split("=", 1) for e in Path(f"/proc/{pids['operator']}/environ").read_text(
            errors="replace").split("\0") if "=" in e)
        login = yaml.safe_load(Path(operator_env["MNIST_OPERATOR_KUBECONFIG"]).read_text())
        assert login["users"][0]["name"] == f"{NAMESPACE}:{FULLNAME}-operator" and "token" in login["users"][0]["user"]
        assert operator_env["MNIST_OPERATOR_SERVING_CONFIGMAP"] == ("" if embedded else f"{FULLNAME}-model-config"), \
            "the chart's env"
        if embedded:
            frontend_env = dict(e.split("=", 1) for e in Path(f"/proc/{pids['frontend']}/environ").read_text(
                errors="replace").split("\0") if "=" in e)
            assert frontend_env["MNIST_BACKEND"] == "embedded"
            assert frontend_env["MNIST_MODEL_BASE_PATH"] == str(store / "mnist"), "the claim, as a kubelet mounts it"

        # A canary of v2 with kubectl, judged on real digits with their true labels fed back.
        floor = round(min(published_models.accuracy[1], published_models.accuracy[2]) - 0.15, 2)
        rollout = yaml.safe_load((REPO_ROOT / "k8s" / "examples" / "canary.yaml").read_text())
        rollout["spec"].update(canary=FAST["canary"], analysis={**rollout["spec"]["analysis"], **FAST["analysis"],
                                                                   "minAccuracy": floor},
                               gate={"minOfflineAccuracy": floor})
        kubectl(state, "apply", "-f", "-", input=json.dumps(rollout))
        key = base64.b64decode(kubectl(state, "get", "secret", f"{FULLNAME}-api-keys", "-o",
                                       "jsonpath={.data.api-key}")).decode()
        traffic = TrafficGenerator(f"http://127.0.0.1:{port}", load_test_digits(mnist_npz, count=300, seed=3),
                                   rate_per_s=15, max_requests=1500, max_seconds=90,
                                   headers={"X-API-Key": key}).start()
        try:
            name_mr = rollout["metadata"]["name"]
            wait_for(lambda: kubectl(state, "get", "mr", name_mr, "-o", "jsonpath={.status.phase}") in (
                "Promoted", "RolledBack", "Failed"), 90, "the canary to finish", interval=1)
        finally:
            stats = traffic.stop()
        assert kubectl(state, "get", "mr", name_mr, "-o", "jsonpath={.status.phase}") == "Promoted", kubectl(
            state, "describe", "mr", name_mr)
        assert stats.by_version.get("2", 0) > 0 and stats.server_errors == 0 and stats.lost == 0, stats
        routing = json.loads(kubectl(state, "get", "configmap", f"{FULLNAME}-routing", "-o",
                                     "jsonpath={.data.routing\\.json}"))
        assert [(r["version"], r["weight"]) for r in routing["routes"]] == [(2, 100)]

        # The prediction command sim-up printed works as printed.
        client = subprocess.run([str(Path(sys.executable).parent / "mnist-client"), "predict", "--index", "0",
                                 "--url", f"http://127.0.0.1:{port}"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=60, env={**os.environ, "MNIST_API_KEY": key, "MNIST_DATA": str(mnist_npz)})
        assert client.returncode == 0 and "version 2" in client.stdout, client.stdout + client.stderr

        # Nothing listens on an address other than loopback.
        everything = {p for pid in pids.values() for p in {pid, *group_members(pid)}}
        addresses = listening(everything)
        assert addresses and all(is_loopback(a) for a in addresses), addresses
    finally:
        down = sim("down", state, name)
    assert down.returncode == 0, down.stderr
    assert not state.exists(), "sim-down removes the state directory"
    left = {n: pid for n, pid in pids.items() if pid_alive(pid) or group_members(pid)}
    assert not left, f"processes left after sim-down: {left}"
    again = sim("down", state, name)
    assert again.returncode == 0 and "none running" in again.stdout, "sim-down twice is fine"


def test_sim_up_fails_with_one_line_on_a_taken_port_or_a_missing_tool(tmp_path: Path, monkeypatch) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = sim("up", tmp_path / "sim", "mnist-simtest-port", "--port", str(taken),
                     "--model-store", str(tmp_path / "models"), timeout=60)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], "one line"
    assert f"port {taken} on 127.0.0.1 is already in use" in result.stderr and "SIM_PORT" in result.stderr
    assert not (tmp_path / "sim" / "kwok").exists(), "nothing was started"

    monkeypatch.setattr(lifecycle, "TOOLS_BIN", tmp_path / "empty-bin")
    with pytest.raises(lifecycle.SimError, match=r"missing in .*kwokctl.*: run `make tools`$"):
        lifecycle.preflight(lifecycle.Sim(lifecycle.SimConfig(name="mnist-simtest-tools", state_dir=tmp_path / "s",
                                                           port=free_port())))


def test_make_knows_the_sim_targets() -> None:
    dry = subprocess.run(["make", "-n", "sim-up", "sim-down", "SIM_PORT=18123", "SIM_DIR=build/x"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m scripts.sim up --dir build/x --name mnist-sim --port 18123" in dry.stdout
    assert "-m scripts.sim down --dir build/x" in dry.stdout
    help_text = subprocess.run(["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "make sim-up" in help_text and "make sim-down" in help_text
