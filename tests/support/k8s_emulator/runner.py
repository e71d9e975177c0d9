"""Run the emulated API server on 127.0.0.1 in a thread of its own, and hand tests a kubeconfig.

Its own thread and event loop, because `kopf.operator()` treats every task created in its loop
after it started (an in-loop server's request handlers too) as its own and waits for them on exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import yaml

from .emulator import CRD_GROUP, CRD_PLURAL, ApiError, KubernetesApiEmulator, Obj

T = TypeVar("T")

KUBECONFIG_TEMPLATE = """\
apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {url}
users:
- name: tester
  user:
    token: {token}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: tester
    namespace: default
current-context: emulator
"""


def load_yaml_documents(paths: Iterable[str | Path]) -> list[Obj]:
    """Every non-empty YAML document in the files (directories: their *.yaml / *.yml, sorted)."""
    docs: list[Obj] = []
    for path in map(Path, paths):
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            docs.extend(doc for doc in yaml.safe_load_all(file.read_text()) if doc)
    return docs


class EmulatedCluster:
    """A running emulator: `.url`, `.kubeconfig`, `.load_crds()`, and thread-safe access to the store."""

    def __init__(self, workdir: Path, **emulator_options: Any) -> None:
        self.workdir = Path(workdir)
        self._options = emulator_options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._emulator: KubernetesApiEmulator | None = None
        self.port = 0

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> EmulatedCluster:
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="k8s-api-emulator", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(KUBECONFIG_TEMPLATE.format(url=self.url, token="emulator-test-token"))
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=30)
        self._loop = self._thread = None

    def __enter__(self) -> EmulatedCluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as exc:  # report start-up failures to the starting thread
            if not started.done():
                started.set_exception(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        self._stopping = asyncio.Event()
        emulator = KubernetesApiEmulator(**self._options)
        self._emulator = emulator
        # aiohttp's low-level server rather than kmock.Server: the latter also patches aiohttp's DNS
        # resolver process-wide, which would reach into kopf's own client in the test's thread.
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator), shutdown_timeout=1)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        async with emulator:
            await site.start()
            self.port = runner.addresses[0][1]
            started.set_result(None)
            try:
                await self._stopping.wait()
            finally:
                emulator.stop_watches()
                await asyncio.sleep(0)
                await runner.cleanup()

    # ------------------------------------------------------------------------------ what tests use

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def emulator(self) -> KubernetesApiEmulator:
        assert self._emulator is not None, "the emulator is not running"
        return self._emulator

    def call(self, fn: Callable[[KubernetesApiEmulator], T], timeout: float = 10) -> T:
        """Run fn(emulator) inside the emulator's loop (the store is not thread-safe) and return its result."""
        assert self._loop is not None, "the emulator is not running"

        async def in_loop() -> T:
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(in_loop(), self._loop).result(timeout)

    def kubeconfig_for_service_account(self, namespace: str, name: str) -> Path:
        """A kubeconfig that acts as this ServiceAccount: its Roles and bindings in the store decide (403 otherwise)."""
        path = self.workdir / f"kubeconfig-{namespace}-{name}"
        path.write_text(KUBECONFIG_TEMPLATE.format(url=self.url, token=f"serviceaccount:{namespace}:{name}"))
        return path

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl, helm and the kubernetes client at the emulator."""
        home = self.workdir / "home"
        return {"KUBECONFIG": str(self.kubeconfig), "HOME": str(home), "KUBECACHEDIR": str(home / "kube-cache"),
                "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                "HELM_DATA_HOME": str(home / "helm-data")}

    def load_crds(self, paths: Iterable[str | Path]) -> list[str]:
        """Create (or replace) the CRDs in these YAML files or directories; they are served on return."""
        docs = [doc for doc in load_yaml_documents(paths) if doc.get("kind") == "CustomResourceDefinition"]
        if not docs:
            raise ValueError(f"no CustomResourceDefinition found in {list(map(str, paths))}")
        for doc in docs:
            self.call(lambda emu, d=doc: emu.apply_manifest(d))
        return [doc["metadata"]["name"] for doc in docs]

    def apply(self, manifest: Obj) -> Obj:
        """Create or replace one object directly in the store (for seeding state)."""
        return self.call(lambda emu: emu.apply_manifest(manifest))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = "default") -> Obj | None:
        """The object, or None if there is none."""
        def read(emu: KubernetesApiEmulator) -> Obj | None:
            try:
                served = emu.served_for(api_version, kind)
            except ApiError:  # the kind is not served (any more): no such object either
                return None
            key = (served.group, served.plural, (namespace or "") if served.namespaced else "", name)
            obj = emu._objects.get(key)
            return None if obj is None else emu._view(served, obj)
        return self.call(read)

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[Obj]:
        return self.call(lambda emu: emu.list(emu.served_for(api_version, kind), namespace, label_selector))

    def patch_status(self, api_version: str, kind: str, name: str, status: Obj,
                     namespace: str | None = "default") -> Obj:
        """Merge-patch the status subresource (what a controller would report, e.g. a Pod's podIP)."""
        def write(emu: KubernetesApiEmulator) -> Obj:
            served = emu.served_for(api_version, kind)
            obj, _ = emu.patch(served, namespace if served.namespaced else None, name,
                               "application/merge-patch+json", {"status": status}, subresource="status")
            return obj
        return self.call(write)

    def crds_established(self) -> dict[str, bool]:
        """CRD name -> whether its Established condition is True."""
        crds = self.call(lambda emu: emu.list(emu.served(CRD_GROUP, "v1", CRD_PLURAL)))
        return {crd["metadata"]["name"]: any(c["type"] == "Established" and c["status"] == "True"
                                             for c in crd.get("status", {}).get("conditions", []))
                for crd in crds}


@contextlib.contextmanager
def emulated_cluster(workdir: Path, **options: Any) -> Iterator[EmulatedCluster]:
    """A started EmulatedCluster, stopped on exit."""
    cluster = EmulatedCluster(workdir, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
