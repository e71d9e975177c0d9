"""The sim's local processes: started detached (they outlive `make sim-up`), found again and stopped by pid file.

A pid file holds the pid and the process's start time (field 22 of /proc/<pid>/stat), so a pid the kernel
has since given to another program is never taken for ours, nor signalled. Each process leads a session
and process group of its own, so stopping it stops what it started too (gunicorn's workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.demo.supervisor import group_members, wait_until


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass(frozen=True)
class Proc:
    """One named process of the sim, as its pid file records it."""

    name: str
    pid: int
    started: str

    def alive(self) -> bool:
        return _start_time(self.pid) == self.started


class Procs:
    """The pid files under one directory (build/sim/pids) and the logs beside them (build/sim/logs)."""

    def __init__(self, state_dir: Path) -> None:
        self.pid_dir, self.log_dir = state_dir / "pids", state_dir / "logs"
        self._popen: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _recorded(self, name: str) -> Proc | None:
        try:
            pid, started = (self.pid_dir / f"{name}.pid").read_text().split()
        except (OSError, ValueError):
            return None
        return Proc(name, int(pid), started)

    def get(self, name: str) -> Proc | None:
        """The recorded process, if its pid file exists and that very process still runs."""
        proc = self._recorded(name)
        return proc if proc is not None and proc.alive() else None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.pid")) if self.pid_dir.is_dir() else []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Proc:
        """Start argv detached (own session, stdin closed, output appended to its log) and record it."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n==> {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        started = None
        while started is None and process.poll() is None:
            started = _start_time(process.pid)
        proc = Proc(name, process.pid, started or "exited")
        (self.pid_dir / f"{name}.pid").write_text(f"{proc.pid} {proc.started}\n")
        # Not waited for here: once sim-up exits, init reaps it. Until then poll() notices an early exit.
        self._popen[name] = process
        return proc

    def exited(self, name: str) -> int | None:
        """Exit code of a process this object started, once it has ended (None while it runs)."""
        process = self._popen.get(name)
        return process.poll() if process is not None else None

    def stop(self, name: str, grace_s: float = 10.0) -> bool:
        """SIGTERM the process group, SIGKILL what is left after grace_s; True if something was running."""
        proc = self._recorded(name)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        # A group outlives its leader while a member runs (a gunicorn worker), and its id is not reused meanwhile.
        if proc is None or not (proc.alive() or group_members(proc.pid)):
            return False
        _signal_group(proc.pid, signal.SIGTERM)
        ended = wait_until(lambda: not proc.alive() and not group_members(proc.pid), timeout_s=grace_s,
                           interval_s=0.1)
        if not ended:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            wait_until(lambda: not proc.alive() and not group_members(proc.pid), timeout_s=5, interval_s=0.05)
        popen = self._popen.pop(name, None)
        if popen is not None:
            popen.poll()  # reap it, when this process started it
        return True

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
