"""A Deployment's container as a local process: the command, arguments and environment its pod would run.

Read from the Deployment the API server holds (what helm installed), so the sim runs what the chart says:
the container's command (or its image's entrypoint) maps to the program of this checkout that the image
would run, and every path under a volume mount is moved to where that volume lives on this machine:

    configMap / secret      <pods-dir>/<pod>/volumes/<volume>   (kept up to date by scripts/sim/kubelet_sync.py)
    emptyDir                <pods-dir>/<pod>/volumes/<volume>
    persistentVolumeClaim   the hostPath of the PersistentVolume bound to the claim

`fieldRef` values are resolved as the kubelet would. What must point at other local processes (ports,
addresses, the API credentials) is the caller's to override, by name.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kubelet_sync import Reader, object_data, volume_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# What each image runs, as a program of this checkout (the images install the same packages).
LOCAL_PROGRAMS: dict[str, list[str]] = {
    "mnist-frontend": [str(VENV_BIN / "mnist-frontend")],
    "mnist-operator": [str(VENV_BIN / "mnist-operator")],
    # TF Serving's binary does not run here: its protocol stand-in takes the same flags (docs/TESTING.md).
    "tensorflow_model_server": [sys.executable, "-m", "tests.support.tfserving_standin"],
}
# The ENTRYPOINT of each image, for containers that give no command.
IMAGE_ENTRYPOINTS = {"mnist-platform/frontend": "mnist-frontend", "mnist-platform/frontend-embedded": "mnist-frontend",
                     "mnist-platform/operator": "mnist-operator", "tensorflow/serving": "tensorflow_model_server"}
# The user's own settings must not leak into a process that plays a pod.
FOREIGN_ENV = re.compile(r"^(MNIST_|KUBECONFIG$|PROMETHEUS_MULTIPROC_DIR$)")


class PodError(RuntimeError):
    """The container cannot be played by a local process; the message says why, in one line."""


def _image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


@dataclass
class LocalContainer:
    """One container of a pod, placed on this machine."""

    pod: str
    namespace: str
    container: Mapping[str, Any]
    mounts: dict[str, Path]  # mountPath in the container -> directory here

    def local_path(self, value: str) -> str:
        """value with its leading mount path (the longest that matches) replaced by the local directory."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + value[len(mount.rstrip("/")):]
        return value

    def _local_arg(self, arg: str) -> str:
        match = re.match(r"^(--?[\w.-]+=)(/.*)$", arg)
        if match:
            return match.group(1) + self.local_path(match.group(2))
        return self.local_path(arg) if arg.startswith("/") else arg

    def program(self) -> list[str]:
        command = list(self.container.get("command") or [])
        entry = os.path.basename(command[0]) if command else IMAGE_ENTRYPOINTS.get(
            _image_repository(self.container.get("image", "")), "")
        if entry not in LOCAL_PROGRAMS:
            raise PodError(f"{self.pod}: no local program plays {command or self.container.get('image')!r}")
        return [*LOCAL_PROGRAMS[entry], *(self._local_arg(a) for a in command[1:])]

    def argv(self, args: Callable[[list[str]], list[str]] | None = None) -> list[str]:
        """The program and the container's args, paths moved; `args` may rewrite the args (ports, addresses)."""
        container_args = [self._local_arg(a) for a in self.container.get("args") or []]
        return [*self.program(), *(args(container_args) if args else container_args)]

    def environment(self, read: Reader | None = None, field_values: Mapping[str, str] | None = None
                    ) -> dict[str, str]:
        """The container's env as the kubelet resolves it, paths moved (no inherited MNIST_* of the user's)."""
        fields = {"metadata.namespace": self.namespace, "metadata.name": self.pod, **(field_values or {})}
        env = {k: v for k, v in os.environ.items() if not FOREIGN_ENV.match(k)}
        if "/tmp" in self.mounts:
            env["TMPDIR"] = str(self.mounts["/tmp"])  # the pod's /tmp is an emptyDir of its own
        for item in self.container.get("env") or []:
            name = item["name"]
            if "value" in item or "valueFrom" not in item:
                env[name] = self.local_path(str(item.get("value", "")))
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                if path not in fields:
                    raise PodError(f"{self.pod}: env {name}: fieldRef {path} is not played by the sim")
                env[name] = fields[path]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = (("Secret", source["secretKeyRef"]) if "secretKeyRef" in source
                             else ("ConfigMap", source["configMapKeyRef"]))
                obj = read(kind, ref["name"]) if read else None
                value = object_data(obj).get(ref["key"]) if obj else None
                if value is None:
                    if ref.get("optional"):
                        continue
                    raise PodError(f"{self.pod}: env {name}: {kind} {ref['name']} has no key {ref['key']!r}")
                env[name] = value.decode()
            else:
                raise PodError(f"{self.pod}: env {name}: {sorted(source)} is not played by the sim")
        return env


def container_mounts(pod_spec: Mapping[str, Any], container: Mapping[str, Any], pod: str, pods_dir: Path,
                     claim_path: Callable[[str], Path]) -> dict[str, Path]:
    """mountPath -> local directory for each volume mount of the container (emptyDirs are created)."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "configMap" in volume or "secret" in volume:
            local = volume_dir(pods_dir, pod, volume["name"])
        elif "emptyDir" in volume:
            local = volume_dir(pods_dir, pod, volume["name"])
            local.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            local = claim_path(volume["persistentVolumeClaim"]["claimName"])
        else:
            raise PodError(f"{pod}: volume {volume['name']}: only configMap, secret, emptyDir and "
                           "persistentVolumeClaim volumes are played by the sim")
        mounts[mount["mountPath"]] = local / mount["subPath"] if mount.get("subPath") else local
    return mounts


def local_container(deployment: Mapping[str, Any], pod: str, pods_dir: Path, claim_path: Callable[[str], Path],
                    container_name: str | None = None) -> LocalContainer:
    """The (named, else first) container of the Deployment's pod template, placed on this machine."""
    spec = deployment["spec"]["template"]["spec"]
    containers = spec["containers"]
    container = next((c for c in containers if c["name"] == container_name), None) if container_name else containers[0]
    if container is None:
        raise PodError(f"{pod}: Deployment {deployment['metadata']['name']} has no container {container_name}")
    return LocalContainer(pod=pod, namespace=deployment["metadata"]["namespace"], container=container,
                          mounts=container_mounts(spec, container, pod, pods_dir, claim_path))


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    """args with `--flag=...` (or `--flag ...`) set to value; appended when absent."""
    out, found, skip = [], False, False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith(f"{flag}="):
            out.append(f"{flag}={value}")
            found = True
        elif arg == flag and i + 1 < len(args):
            out.extend([flag, value])
            found, skip = True, True
        else:
            out.append(arg)
    return out if found else [*out, f"{flag}={value}"]
