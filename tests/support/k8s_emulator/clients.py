"""Run kubectl and helm against an emulated cluster, and a real kopf operator in a thread of its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .runner import EmulatedCluster

REPO_ROOT = Path(__file__).resolve().parents[3]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def find_tool(name: str) -> str | None:
    """A pinned binary from `make tools` (.tools/bin) if there, else one on PATH, else None."""
    pinned = TOOLS_BIN / name
    return str(pinned) if pinned.exists() else shutil.which(name)


def find_helm() -> str | None:
    return find_tool("helm")


def find_kubectl() -> str | None:
    return find_tool("kubectl")


def run_tool(cluster: EmulatedCluster, argv: list[str], input: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run kubectl or helm with the cluster's kubeconfig and private cache/config dirs."""
    env = {**os.environ, **cluster.env()}
    return subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=timeout, check=False)


def kubectl(cluster: EmulatedCluster, *args: str, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    binary = find_kubectl()
    if binary is None:
        raise FileNotFoundError("kubectl is neither in .tools/bin nor on PATH")
    return run_tool(cluster, [binary, *args], input=input, timeout=timeout)


class OperatorThread:
    """`kopf.operator()` in its own thread and loop, stopped through kopf's stop flag."""

    def __init__(self, operator: Callable[..., Any], **kwargs: Any) -> None:
        self._operator, self._kwargs = operator, kwargs
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._operator(stop_flag=self.stop_flag, ready_flag=self.ready_flag, **self._kwargs))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self, timeout: float = 30) -> OperatorThread:
        if self._thread.is_alive() or self.ready_flag.is_set():
            return self
        self._thread.start()
        if not self.ready_flag.wait(timeout):
            raise TimeoutError("the operator did not become ready")
        return self

    def stop(self, timeout: float = 30) -> None:
        self.stop_flag.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop")
        if self.error is not None:
            raise self.error

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
