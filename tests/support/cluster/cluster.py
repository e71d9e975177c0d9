"""`Cluster`: one test's namespace on the session's real control plane, and the tools pointed at it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from scripts.sim.control_plane import TOOLS_BIN, ControlPlane

T = TypeVar("T")
Obj = dict[str, Any]
ClusterCall = subprocess.CompletedProcess


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll until predicate() is truthy and return it; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def yaml_documents(paths: Iterable[str | Path]) -> list[Obj]:
    """Every non-empty YAML document in the files (directories: their *.yaml, sorted)."""
    docs: list[Obj] = []
    for path in map(Path, paths):
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            docs.extend(doc for doc in yaml.safe_load_all(file.read_text()) if doc)
    return docs


class Cluster:
    """The control plane seen from one test: `.namespace` is the test's own, created for it."""

    def __init__(self, control_plane: ControlPlane, namespace: str, workdir: Path,
                 api: kubernetes.client.ApiClient) -> None:
        self.control_plane, self.namespace, self.workdir = control_plane, namespace, workdir
        self._api = api
        self._dynamic: DynamicClient | None = None

    # ------------------------------------------------------------------------------------- tools

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """KUBECONFIG and private caches for kubectl and helm (nothing of the user's own is read or written)."""
        home = self.workdir / "home"
        return {"HOME": str(home), **self.control_plane.tool_env(home, kubeconfig)}

    def run(self, tool: str, *args: str, input: str | None = None, timeout: float = 120,
            kubeconfig: Path | None = None) -> ClusterCall:
        """kubectl or helm (the pinned ones in .tools/bin) in this test's namespace; not checked."""
        has_namespace = any(a in ("-n", "--namespace", "-A", "--all-namespaces") or a.startswith("--namespace=")
                            for a in args)
        argv = [str(TOOLS_BIN / tool), *([] if has_namespace else ["--namespace", self.namespace]), *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env(kubeconfig)})

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120,
                kubeconfig: Path | None = None) -> ClusterCall:
        return self.run("kubectl", *args, input=input, timeout=timeout, kubeconfig=kubeconfig)

    def helm(self, *args: str, timeout: float = 300) -> ClusterCall:
        return self.run("helm", *args, timeout=timeout)

    def check(self, result: ClusterCall) -> str:
        assert result.returncode == 0, f"{' '.join(map(str, result.args[:6]))}... failed:\n{result.stderr[-3000:]}"
        return result.stdout

    # ------------------------------------------------------------------------------------- objects

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = DynamicClient(self._api)
        return self._dynamic

    def _resource(self, api_version: str, kind: str):
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self._dynamic = None  # a CRD added since discovery was cached
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def _ns(self, resource, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if resource.namespaced else None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object as the API server has it now, or None."""
        try:
            resource = self._resource(api_version, kind)
        except ResourceNotFoundError:
            return None
        try:
            return resource.get(name=name, namespace=self._ns(resource, namespace)).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]:
        resource = self._resource(api_version, kind)
        found = resource.get(namespace=self._ns(resource, namespace), label_selector=label_selector)
        return [item.to_dict() for item in found.items]

    def apply(self, manifest: Obj, namespace: str | None = None) -> Obj:
        """Server-side apply, as `kubectl apply --server-side` would (field manager: tests)."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        return self.dynamic.server_side_apply(resource, body=manifest, namespace=self._ns(resource, namespace),
                                              field_manager="tests", force_conflicts=True).to_dict()

    def patch_status(self, api_version: str, kind: str, name: str, status: Obj,
                     namespace: str | None = None) -> Obj:
        resource = self._resource(api_version, kind)
        return resource.status.patch(name=name, namespace=self._ns(resource, namespace), body={"status": status},
                                     content_type="application/merge-patch+json").to_dict()

    def events(self, name: str, namespace: str | None = None) -> list[Obj]:
        """Events about the object `name` (core/v1, what `kubectl describe` shows), oldest first."""
        events = [e for e in self.list("v1", "Event", namespace) if e["involvedObject"].get("name") == name]
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def wait_deleted(self, api_version: str, kind: str, name: str, timeout: float = 60,
                     namespace: str | None = None) -> None:
        wait_for(lambda: self.get(api_version, kind, name, namespace) is None, timeout, f"{kind} {name} to go")

    def crds_established(self) -> dict[str, bool]:
        crds = self.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        return {c["metadata"]["name"]: any(x["type"] == "Established" and x["status"] == "True"
                                           for x in (c.get("status") or {}).get("conditions") or [])
                for c in crds}

    def service_account_kubeconfig(self, name: str, namespace: str | None = None) -> Path:
        """A kubeconfig that logs in as this ServiceAccount, with a token from the TokenRequest API."""
        namespace = namespace or self.namespace
        return self.control_plane.service_account_kubeconfig(
            namespace, name, self.workdir / f"kubeconfig-{namespace}-{name}.json")

    def pod_summary(self, namespace: str | None = None) -> str:
        """For assertion messages: each pod's phase and node."""
        return json.dumps({p["metadata"]["name"]: [p.get("status", {}).get("phase"), p["spec"].get("nodeName")]
                           for p in self.list("v1", "Pod", namespace)})
