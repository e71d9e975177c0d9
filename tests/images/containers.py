"""The container engine as the image tests use it: images built by `make images`, containers run as the chart runs them.

Every container gets the chart's pod settings (charts/mnist-platform/values.yaml, containerSecurityContext and
podSecurityContext): a read-only root filesystem with a tmpfs on /tmp only (the chart's emptyDir), UID/GID 10001,
every capability dropped, no new privileges. Containers share the host's network and bind 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINE = REPO_ROOT / "scripts" / "images" / "engine.sh"
# `make test-images PLATFORM=linux/arm64` (mk/images.mk exports it): the same tests on the images built for that
# platform, tagged test-<arch>, run under qemu-user where it is not this machine's.
PLATFORM = os.environ.get("MNIST_IMAGES_PLATFORM", "")
ARCH = PLATFORM.rsplit("/", 1)[-1] if PLATFORM else ""
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
IMAGE_TAG = f"test-{ARCH}" if ARCH else "test"
# Under emulation every wait is this many times longer: TensorFlow under qemu-user runs about ten times slower.
SLOWDOWN = 15 if ARCH and ARCH != HOST_ARCH else 1
IMAGE_NAMES = ("trainer", "frontend", "frontend-embedded", "operator")
# The chart's user: podSecurityContext.runAsUser/runAsGroup (tests/images/test_image_config.py checks the chart says so).
CHART_USER = "10001:10001"


class EngineError(AssertionError):
    """A container engine call that failed: the command and what it printed."""


def engine_name() -> str:
    """docker or podman, as `make images` picks it; EngineError with the script's one line when there is none."""
    result = subprocess.run([str(ENGINE), "--which"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise EngineError(result.stderr.strip() or "scripts/images/engine.sh --which failed")
    return result.stdout.strip()


def engine(*args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(ENGINE), *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise EngineError(f"{ENGINE.name} {' '.join(args[:8])} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def image_ref(name: str) -> str:
    return f"docker.io/mnist-platform/{name}:{IMAGE_TAG}"


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def build_images(names: Iterable[str], commit: str, timeout: float) -> None:
    """`make images LOCAL_BASE=1` for these images, exactly as a person runs it (cached layers make it quick).
    The commit is named, not read by make, so that it is known even when someone commits meanwhile."""
    argv = ["make", "--no-print-directory", "images", "LOCAL_BASE=1", f"IMAGE_TAG={IMAGE_TAG}", "GPU=",
            f"GIT_COMMIT={commit}", f"IMAGES={' '.join(names)}", f"PLATFORM={PLATFORM}"]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise EngineError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def inspect_image(ref: str) -> dict[str, Any]:
    (info,) = json.loads(engine("image", "inspect", ref).stdout)
    return info


def chart_security_flags(name: str) -> list[str]:
    """The chart's securityContext as engine flags (podman would also mount tmpfs on /var/tmp and /run: not here).
    The tmpfs stands for the chart's emptyDir on /tmp (its sizeLimit is 64Mi to 1Gi, by component)."""
    flags = ["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m", "--user", CHART_USER,
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "host",
             "--no-healthcheck"]  # Kubernetes ignores HEALTHCHECK too (and podman would want systemd timers)
    if name == "podman":
        flags.append("--read-only-tmpfs=false")
    return flags


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool = True

    def flag(self) -> str:
        return f"type=bind,source={self.source},target={self.target}" + (",readonly" if self.read_only else "")


@dataclass
class Container:
    """One container started detached (`start`), or run to completion (`run`), with the chart's settings."""

    image: str
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    entrypoint: str | None = None
    name: str = field(default_factory=lambda: f"mnist-test-{uuid.uuid4().hex[:10]}")

    def _argv(self, command: str) -> list[str]:
        argv = [command, "--name", self.name, *chart_security_flags(engine_name())]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        for mount in self.mounts:
            argv += ["--mount", mount.flag()]
        if self.entrypoint is not None:
            argv += ["--entrypoint", self.entrypoint]
        return [*argv, self.image, *self.args]

    def run(self, timeout: float) -> subprocess.CompletedProcess:
        """Run to completion (the container is removed afterwards); output is returned, not checked."""
        try:
            return engine(*self._argv("run"), timeout=timeout * SLOWDOWN, check=False)
        finally:
            engine("rm", "--force", self.name, check=False, timeout=60)

    def start(self) -> Container:
        engine(*self._argv("create"))
        engine("start", self.name)
        return self

    def running(self) -> bool:
        result = engine("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def stop(self) -> None:
        engine("stop", "--time", "10", self.name, check=False, timeout=60)
        engine("rm", "--force", self.name, check=False, timeout=60)

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, container: Container | None = None,
               interval: float = 0.3) -> Any:
    """Poll until predicate() is truthy; fail naming `what`, with the container's log (and at once if it died)."""
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if container is not None and not container.running():
            raise AssertionError(f"container {container.image} exited while waiting for {what}:\n{container.logs()}")
        if time.monotonic() > deadline:
            logs = f":\n{container.logs()}" if container is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{logs}")
        time.sleep(interval)


def readable_copy(source: Path, target: Path) -> Path:
    """A copy that UID 10001 can read (pytest's own directories are private to the user running it)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    for root, dirs, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(target.parent, 0o755)
    return target


def writable_dir(path: Path) -> Path:
    """A directory the chart's user owns, as fsGroup makes the model store volume in the cluster."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 10001, 10001)
    else:  # a rootless engine maps UIDs; the test cannot chown, so the directory is open to all instead
        os.chmod(path, 0o777)
    return path
