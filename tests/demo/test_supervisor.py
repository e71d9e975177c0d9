"""Every process the demo starts ends with it: process groups, escalation to SIGKILL, parent-death signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from scripts.demo.supervisor import Supervisor, descendants, group_members, pid_alive, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_get_their_own_group_and_stop_all_ends_grandchildren_too():
    with Supervisor(grace_s=5) as sup:
        child = sup.start("tree", ["bash", "-c", "sleep 300 & sleep 300 & wait"])
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert wait_until(lambda: len(group_members(child.pid)) == 3, timeout_s=10)
        members = group_members(child.pid)
    assert not any(alive(pid) for pid in members)
    assert group_members(child.pid) == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    sup = Supervisor(grace_s=0.5)
    child = sup.start("stubborn", ["bash", "-c", "trap '' TERM; sleep 300 & wait"])
    assert wait_until(lambda: len(group_members(child.pid)) == 2, timeout_s=10)
    members = group_members(child.pid)
    started = time.monotonic()
    sup.stop_all()
    assert time.monotonic() - started < 10
    assert child.process.returncode == -signal.SIGKILL
    assert not any(alive(pid) for pid in members)


def test_output_and_errors_go_to_the_log(tmp_path):
    with Supervisor() as sup:
        child = sup.start("echo", ["bash", "-c", "echo one; echo two >&2"], log_path=tmp_path / "out.log")
        child.process.wait(timeout=10)
    assert (tmp_path / "out.log").read_text() == "one\ntwo\n"
    assert child.tail(1) == "two"


def test_children_die_with_a_demo_killed_by_sigkill(tmp_path):
    """Even without a chance to clean up, the parent-death signal takes the servers down."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import time
        from scripts.demo.supervisor import Supervisor
        child = Supervisor().start("sleeper", ["sleep", "300"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)  # `-c` imports from the cwd
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", timeout_s=30)
        child_pid = int(pid_file.read_text())
        assert alive(child_pid)
    finally:
        parent.kill()
        parent.wait(timeout=10)
    assert wait_until(lambda: not alive(child_pid), timeout_s=10)


def test_descendants_follow_children_into_their_own_sessions():
    with Supervisor(grace_s=5) as sup:
        outer = sup.start("outer", ["bash", "-c", "setsid sleep 300 & wait"])
        assert wait_until(lambda: len(descendants(outer.pid)) == 1, timeout_s=10)
        (inner,) = descendants(outer.pid)
        assert os.getsid(inner) != os.getsid(outer.pid) and pid_alive(inner)
    # setsid left the group: stop_all ends the group leader, and the parent-death signal does not apply to a
    # grandchild; this is why the demo starts every server itself, never through a shell that detaches.
    os.kill(inner, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(inner), timeout_s=10)
