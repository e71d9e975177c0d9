"""Ctrl-C (SIGINT) or SIGTERM during `make demo` stops every process it started and frees its port."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scripts.demo.ports import free_port, port_is_free
from scripts.demo.supervisor import descendants, pid_alive, wait_until

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_mid_rollout_leaves_no_process_and_no_port(published_models, tmp_path, signum):
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.demo",
            "promote",
            "--port",
            str(port),
            "--model-dir",
            str(published_models.base_path),
            "--workdir",
            str(tmp_path / "demo"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []

    def read_stdout() -> None:
        for line in demo.stdout:
            seen.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        # Wait until the frontend, its gunicorn workers and the operator all run: the first operator decision.
        assert wait_until(
            lambda: any(line.startswith("  >> ") for line in seen) or demo.poll() is not None, timeout_s=240
        ), "".join(seen)
        assert demo.poll() is None, "".join(seen) + demo.stderr.read()
        started = descendants(demo.pid)
        assert len(started) >= 3, f"frontend master + worker + operator expected, got {started}"
        assert not port_is_free(port)
        demo.send_signal(signum)
        code = demo.wait(timeout=90)
    finally:
        if demo.poll() is None:  # the assertions above failed: do not leave the demo behind
            demo.kill()  # its children follow through their parent-death signal
            demo.wait(10)
    stderr = demo.stderr.read()
    reader.join(5)
    demo.stdout.close()
    demo.stderr.close()
    assert code == 128 + signum, stderr
    assert "every process the demo started has been stopped" in stderr
    assert wait_until(lambda: not any(pid_alive(pid) for pid in started), timeout_s=10), [
        pid for pid in started if pid_alive(pid)
    ]
    assert port_is_free(port)
