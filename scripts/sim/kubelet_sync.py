"""The sim's kubelet for ConfigMap and Secret volumes: what pods would see mounted, as local directories.

kwok runs no containers, so no kubelet projects volumes either. This module does that one job for the local
processes that stand in for the pods (`make sim-up`, docs/SIM.md): it reads the pod template of a Deployment
through the API, and keeps a directory per configMap / secret volume equal to what a kubelet would mount,
with the kubelet's atomic swap (its AtomicWriter):

    <dir>/..2026_01_31_12_00_00.123456/routing.json    the files of one version of the object
    <dir>/..data -> ..2026_01_31_12_00_00.123456        swapped with one rename(2) when the object changes
    <dir>/routing.json -> ..data/routing.json           what a reader opens: old or new, never half

So a reader that polls `<dir>/routing.json` (the frontend, TF Serving's model config poll) sees the change the
way it does in a pod: a new inode at once, never a partly written file.

    python -m scripts.sim.kubelet_sync --kubeconfig K --namespace mnist --pods-dir build/sim/pods \
        --deployment mnist-mnist-platform-frontend=frontend --deployment mnist-mnist-platform-serving=serving
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("kubelet-sync")

DATA_LINK = "..data"
DEFAULT_MODE = 0o644  # the API server's default for configMap and secret volumes
Files = dict[str, tuple[bytes, int]]  # path inside the volume -> (content, mode)
Reader = Callable[[str, str], "dict[str, Any] | None"]  # (kind, name) -> the object as JSON, None when absent


def volume_dir(pods_dir: Path, pod: str, volume: str) -> Path:
    """Where the volume `volume` of the local pod `pod` lives (the sim's processes read their mounts here)."""
    return pods_dir / pod / "volumes" / volume


@dataclass(frozen=True)
class VolumeSource:
    """A configMap or secret volume of a pod spec, as the kubelet reads it."""

    kind: str  # "ConfigMap" or "Secret"
    name: str
    items: tuple[tuple[str, str, int | None], ...] | None  # (key, path, mode); None: every key, named as is
    default_mode: int
    optional: bool

    @classmethod
    def from_volume(cls, volume: Mapping[str, Any]) -> VolumeSource | None:
        """The source of a pod spec volume, or None for any other kind of volume."""
        for field, kind, name_field in (("configMap", "ConfigMap", "name"), ("secret", "Secret", "secretName")):
            spec = volume.get(field)
            if spec is not None:
                items = spec.get("items")
                return cls(kind=kind, name=spec[name_field],
                           items=None if items is None else tuple((i["key"], i["path"], i.get("mode"))
                                                                 for i in items),
                           default_mode=int(spec.get("defaultMode", DEFAULT_MODE)),
                           optional=bool(spec.get("optional", False)))
        return None


def object_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """Every key of a ConfigMap (data and binaryData) or Secret (data, base64), as bytes."""
    if obj.get("kind") == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


class MissingKey(Exception):
    """An item names a key the object does not have: the kubelet would not start the pod."""


def volume_files(source: VolumeSource, obj: Mapping[str, Any] | None) -> Files:
    """The files a kubelet would project for source from obj (an absent optional object: no files)."""
    if obj is None:
        return {}
    data = object_data(obj)
    if source.items is None:
        return {key: (value, source.default_mode) for key, value in data.items()}
    files: Files = {}
    for key, path, mode in source.items:
        if key not in data:
            if source.optional:
                continue
            raise MissingKey(f"{source.kind} {source.name} has no key {key!r}")
        files[path] = (data[key], source.default_mode if mode is None else mode)
    return files


# ------------------------------------------------------------------------------------------------ the swap


def _check_path(path: str) -> None:
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts or parts[0].startswith(".."):
        raise ValueError(f"refusing to project {path!r}: not a plain relative path")


def read_projection(target: Path) -> Files | None:
    """The files projected in target now (through ..data), or None when nothing was projected yet."""
    data = target / DATA_LINK
    if not data.is_symlink():
        return None
    files: Files = {}
    root = data.resolve()
    for path in root.rglob("*"):
        if path.is_file():
            files[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return files


def project(target: Path, files: Files) -> bool:
    """Make target show exactly files, with one atomic swap of ..data; False when it already does."""
    for path in files:
        _check_path(path)
    if read_projection(target) == files:
        return False
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    for path, (content, mode) in files.items():
        file = new_dir / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(mode)
    new_dir.chmod(0o755)
    data = target / DATA_LINK
    old_dir = data.resolve() if data.is_symlink() else None
    tmp_link = target / f"{DATA_LINK}_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(new_dir.name)
    os.replace(tmp_link, data)  # the swap: readers see the old files or the new ones
    visible = {Path(path).parts[0] for path in files}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(Path(DATA_LINK) / name)
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in visible:
            entry.unlink()  # a key the object no longer has
    if old_dir is not None and old_dir != new_dir:
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


# ------------------------------------------------------------------------------------------------ the loop


@dataclass(frozen=True)
class Projection:
    """One volume of one local pod: where it goes and what it shows."""

    pod: str
    volume: str
    source: VolumeSource
    target: Path


def pod_projections(pod_spec: Mapping[str, Any], pod: str, pods_dir: Path) -> list[Projection]:
    """The configMap and secret volumes of a pod spec (other kinds are not the kubelet-sync's job)."""
    found = []
    for volume in pod_spec.get("volumes") or []:
        source = VolumeSource.from_volume(volume)
        if source is not None:
            found.append(Projection(pod, volume["name"], source, volume_dir(pods_dir, pod, volume["name"])))
    return found


class KubeletSync:
    """Keeps every projection equal to its object; `sync_once` returns the targets it changed."""

    def __init__(self, read: Reader, projections: Iterable[Projection]) -> None:
        self.read = read
        self.projections = list(projections)
        self._waiting: set[Path] = set()

    def sync_once(self) -> list[Path]:
        changed = []
        for p in self.projections:
            obj = self.read(p.source.kind, p.source.name)
            if obj is None and not p.source.optional:
                if p.target not in self._waiting:
                    log.warning("%s/%s: %s %s not found: waiting for it (a kubelet would not start the pod)",
                                p.pod, p.volume, p.source.kind, p.source.name)
                    self._waiting.add(p.target)
                continue
            self._waiting.discard(p.target)
            try:
                files = volume_files(p.source, obj)
            except MissingKey as exc:
                log.warning("%s/%s: %s", p.pod, p.volume, exc)
                continue
            if project(p.target, files):
                log.info("%s/%s: %s %s projected (%s)", p.pod, p.volume, p.source.kind, p.source.name,
                         ", ".join(sorted(files)) or "no keys")
                changed.append(p.target)
        return changed


def api_reader(kubeconfig: Path, namespace: str) -> tuple[Reader, Callable[[str], dict[str, Any]]]:
    """Read objects through the API as raw JSON: (kind, name) -> object, and name -> Deployment."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(str(kubeconfig))
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)

    def read(kind: str, name: str) -> dict[str, Any] | None:
        call = core.read_namespaced_config_map if kind == "ConfigMap" else core.read_namespaced_secret
        try:
            obj = json.loads(call(name, namespace, _preload_content=False).data)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj["kind"] = kind
        return obj

    def deployment(name: str) -> dict[str, Any]:
        return json.loads(apps.read_namespaced_deployment(name, namespace, _preload_content=False).data)

    return read, deployment


def run(read: Reader, deployment: Callable[[str], dict[str, Any]], pods: Mapping[str, str], pods_dir: Path,
        interval_s: float, stop: threading.Event, respec_s: float = 5.0) -> None:
    """Sync until stop is set; the Deployments' volumes are read again every respec_s (a helm upgrade)."""
    sync: KubeletSync | None = None
    next_respec = 0.0
    while not stop.is_set():
        try:
            if sync is None or time.monotonic() >= next_respec:
                projections = [p for name, pod in pods.items()
                               for p in pod_projections(deployment(name)["spec"]["template"]["spec"], pod, pods_dir)]
                if sync is None:
                    sync = KubeletSync(read, projections)
                else:
                    sync.projections = projections
                next_respec = time.monotonic() + respec_s
            sync.sync_once()
        except Exception as exc:  # the API server restarting, a network blip: keep going, as a kubelet does
            log.warning("sync failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "")
        stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.sim.kubelet_sync", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pods-dir", type=Path, required=True, help="volumes go to <dir>/<pod>/volumes/<volume>")
    parser.add_argument("--deployment", action="append", required=True, metavar="NAME=POD",
                        help="a Deployment whose pod template's configMap/secret volumes to project (repeatable)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two syncs (default 0.5)")
    parser.add_argument("--once", action="store_true", help="sync once and exit")
    args = parser.parse_args(argv)
    pods = dict(d.split("=", 1) if "=" in d else (d, d) for d in args.deployment)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    read, deployment = api_reader(args.kubeconfig, args.namespace)
    stop = threading.Event()
    if args.once:
        stop.set()
        for name, pod in pods.items():
            KubeletSync(read, pod_projections(deployment(name)["spec"]["template"]["spec"], pod,
                                              args.pods_dir)).sync_once()
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("projecting the configMap/secret volumes of %s into %s every %.1fs",
             ", ".join(pods), args.pods_dir, args.interval)
    run(read, deployment, pods, args.pods_dir, args.interval, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
