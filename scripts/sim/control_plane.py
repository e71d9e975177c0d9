"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler built by `make tools` (tools/k8s), run by kwokctl's binary runtime, with kwok playing
the nodes and the pods' lifecycle (tools/k8s/kwok.yaml, tools/k8s/nodes.yaml).

What is real: the API server (RBAC, its default admission plugins with PodSecurity, CRD validation,
server-side apply and field validation, TokenRequest), the controllers (Jobs, Deployments,
ReplicaSets, EndpointSlices, garbage collection, namespaces, service-account tokens), the scheduler.
What kwok plays: the kubelet (pods become Running and Ready, Job pods and `helm test` pods exit 0);
no container runs.

Used by the cluster tests (tests/support/cluster) and `make sim-up` (scripts/sim). kwokctl keeps the
cluster's state under `workdir`; `delete()` removes it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
K8S_TOOLS = REPO_ROOT / "tools" / "k8s"
KWOK_CONFIG = K8S_TOOLS / "kwok.yaml"
NODES = K8S_TOOLS / "nodes.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwokctl", "kubectl")
CPU_NODE, GPU_NODE = "sim-cpu", "sim-gpu"
# kwokctl picks each component's port by scanning for one that is free at that moment and binds it only later,
# so two clusters created at once (a test session beside `make sim-up`) can pick the same ports. Creation
# is serialized machine-wide: the next scan starts once the previous cluster's components listen.
CREATE_LOCK = Path(tempfile.gettempdir()) / "mnist-platform-kwokctl-create.lock"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or reached; the message is one line for a person."""


def missing_binaries(bin_dir: Path = TOOLS_BIN) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def k8s_version() -> str:
    for line in (K8S_TOOLS / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise ControlPlaneError("tools/k8s/versions.env names no K8S_VERSION")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _create_lock(timeout: float) -> Iterator[None]:
    """Hold CREATE_LOCK (flock: released by the kernel if the holder dies) while one cluster starts."""
    with CREATE_LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"another control plane was still starting after {timeout:.0f} s "
                                            f"(lock {CREATE_LOCK})") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ControlPlane:
    """One kwokctl cluster named `name`, its state in `workdir`; `.kubeconfig` is the admin's."""

    def __init__(self, name: str, workdir: Path, bin_dir: Path = TOOLS_BIN) -> None:
        self.name, self.workdir, self.bin_dir = name, Path(workdir), bin_dir
        self.kubeconfig = self.workdir / "kubeconfig"
        self.k8s_version = k8s_version()

    # ------------------------------------------------------------------------------------ tools

    def _kwokctl_env(self) -> dict[str, str]:
        # KWOK_WORKDIR keeps every file of the cluster (pki, logs, etcd data, pids) under workdir;
        # KWOK_KUBE_VERSION tells kwokctl which flags the components of that release take.
        return {**os.environ, "KWOK_WORKDIR": str(self.workdir / "kwok"), "KWOK_KUBE_VERSION": k8s_version(),
                "PATH": f"{self.bin_dir}:{os.environ['PATH']}"}

    def tool_env(self, home: Path, kubeconfig: Path | None = None) -> dict[str, str]:
        """Variables that point kubectl and helm at this cluster (the admin's kubeconfig unless given), with their
        caches and settings under `home`, so nothing of the user's own is read or written."""
        return {"KUBECONFIG": str(kubeconfig or self.kubeconfig), "KUBECACHEDIR": str(home / "kube-cache"),
                "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                "HELM_DATA_HOME": str(home / "helm-data")}

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None,
                timeout: float = 60, check: bool = True) -> Result:
        result = subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig),
                                 *args], input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return Result(result.returncode, result.stdout, result.stderr)

    def _kwokctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "kwokctl"), "--name", self.name, *args], env=self._kwokctl_env(),
                              capture_output=True, text=True, timeout=timeout)

    # ------------------------------------------------------------------------------------ lifecycle

    def exists(self) -> bool:
        return (self.workdir / "kwok" / "clusters" / self.name).is_dir()

    def create(self, timeout: float = 240) -> float:
        """Start the control plane and the nodes; returns the seconds it took until both nodes were Ready."""
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ControlPlaneError(f"missing in {self.bin_dir}: {', '.join(missing)}: run `make tools`")
        with _create_lock(timeout):
            return self._create(timeout)

    def _create(self, timeout: float) -> float:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        b = self.bin_dir
        result = self._kwokctl(
            "--config", str(KWOK_CONFIG), "create", "cluster",
            "--etcd-binary", str(b / "etcd"), "--kube-apiserver-binary", str(b / "kube-apiserver"),
            "--kube-controller-manager-binary", str(b / "kube-controller-manager"),
            "--kube-scheduler-binary", str(b / "kube-scheduler"), "--kwok-controller-binary", str(b / "kwok"),
            "--kubeconfig", str(self.kubeconfig), "--quiet-pull", "--wait", f"{int(timeout)}s",
            timeout=timeout + 30)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise ControlPlaneError(f"kwokctl create cluster {self.name} failed: {' | '.join(tail)}")
        self.kubectl("apply", "--server-side", "-f", str(NODES))
        self.wait_ready(deadline=started + timeout)
        return time.monotonic() - started

    def wait_ready(self, deadline: float) -> None:
        """Both nodes Ready and the default ServiceAccount made (the controllers are working)."""
        while True:
            nodes = self.kubectl("get", "nodes", "-o", "json", check=False)
            sa = self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name", check=False)
            if nodes.returncode == 0 and sa.returncode == 0:
                ready = {n["metadata"]["name"] for n in json.loads(nodes.stdout)["items"]
                         if any(c["type"] == "Ready" and c["status"] == "True"
                                for c in (n.get("status") or {}).get("conditions") or [])}
                if {CPU_NODE, GPU_NODE} <= ready:
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"the nodes of {self.name} were not Ready in time: {nodes.stdout[-300:]}"
                                        f"{nodes.stderr[-300:]}")
            time.sleep(0.3)

    def delete(self) -> None:
        """Stop every process of the cluster and delete its state (idempotent)."""
        if self.exists():
            self._kwokctl("delete", "cluster", timeout=60)
        shutil.rmtree(self.workdir / "kwok", ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------ identities

    def server(self) -> str:
        return self.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path, duration: str = "24h") -> Path:
        """A kubeconfig that logs in as a ServiceAccount with a token from the TokenRequest API (as a pod would)."""
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        view = json.loads(self.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
        cluster = view["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": self.name, "cluster": cluster}],
            "users": [{"name": f"{namespace}:{name}", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": self.name, "user": f"{namespace}:{name}",
                                                     "namespace": namespace}}],
            "current-context": "sa",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def ca_data(self) -> bytes:
        view = json.loads(self.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
        return base64.b64decode(view["clusters"][0]["cluster"]["certificate-authority-data"])

    def apply(self, *files: Path | str, args: Sequence[str] = ()) -> None:
        for file in files:
            self.kubectl("apply", "-f", str(file), *args)
