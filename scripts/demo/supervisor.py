"""Start child processes in their own process groups and stop every one of them, whatever happens.

Each child gets its own session (so Ctrl-C in the terminal reaches only the demo,
which then stops the children in order: operator, traffic, servers) and, on Linux,
a parent-death signal, so even a demo killed with SIGKILL leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when the demo process dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


@dataclass
class Child:
    """One started process: its name for messages, the Popen, and where its output goes."""

    name: str
    process: subprocess.Popen
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, count: int = 20) -> str:
        """The last lines the child wrote to its log file ("" without one)."""
        if self.log_path is not None and self.log_path.exists():
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-count:])
        return ""


class Supervisor:
    """Owns every process the demo starts; `stop_all` (also run on exit from the `with` block) ends them."""

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.children: list[Child] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
    ) -> Child:
        """Start argv in a new session, its output (stdout and stderr) going to log_path."""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        log_file = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 - closed below
        try:
            process = subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads touch state between fork and exec here
            )
        finally:
            if log_file is not None:
                log_file.close()  # the child holds its own copy of the descriptor
        child = Child(name=name, process=process, log_path=log_path)
        with self._lock:
            self.children.append(child)
        return child

    def stop(self, child: Child, sig: int = signal.SIGTERM) -> int | None:
        """Signal the child's whole process group, wait up to grace_s, then SIGKILL the group."""
        if child.alive():
            _signal_group(child.pid, sig)
            try:
                child.process.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.process.wait(timeout=5)
        # Grandchildren (gunicorn workers) share the group; make sure none outlives its leader, and wait
        # until the kernel has really ended them (SIGKILL is delivered asynchronously).
        if group_members(child.pid):
            _signal_group(child.pid, signal.SIGKILL)
            wait_until(lambda: not group_members(child.pid), timeout_s=5, interval_s=0.05)
        return child.process.returncode

    def stop_all(self) -> None:
        """Stop children in reverse start order (operator before the frontend it reads)."""
        with self._lock:
            children = list(reversed(self.children))
        for child in children:
            self.stop(child)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """PIDs whose process group is pgid (Linux /proc), for checking that nothing was left behind."""
    return [pid for pid, (state, _, pgrp) in _proc_table().items() if pgrp == pgid and state != "Z"]


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, ppid, pgrp) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> set[int]:
    """Every live process below pid, children in their own sessions included (they keep their parent)."""
    table = _proc_table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (state, ppid, _) in table.items() if ppid in frontier and state != "Z"} - found
        found |= frontier
    return found


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: unwind so every `with Supervisor()` block stops its children."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGINT into Interrupted in the main thread (a second signal is ignored while cleaning)."""

    def handler(signum: int, _frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll predicate until it holds or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
