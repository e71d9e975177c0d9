"""`mnist-frontend` (gunicorn with the frontend's own config) as a subprocess on a free loopback port.

The one way the tests start a real frontend process: the frontend's own tests, the local-mode operator tests and
the operator's end-to-end harness. Configuration is the frontend's environment (MNIST_*, docs/FRONTEND.md);
stdout (the JSON access log) and stderr go to two files in the work directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from scripts.demo.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class FrontendProcess:
    """Started at once; `wait_ready()` until /readyz answers 200, `stop()` with SIGTERM (SIGKILL after 30 s).

    With `app` (a "module:factory()" importable from the repository root), gunicorn with the frontend's config
    serves that app instead of the frontend's own."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, app: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = workdir / "stdout.log"
        self.err = workdir / "stderr.log"
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}  # a test may set it
        full_env = {**inherited, "MNIST_BIND": f"127.0.0.1:{self.port}", "MNIST_WORKERS": "2", "MNIST_THREADS": "4",
                    "MNIST_ROUTING_CHECK_S": "0.2", **(env or {})}
        command = [sys.executable, "-m", "frontend.cli"]
        if app:
            command = [sys.executable, "-m", "gunicorn", "-c", "python:frontend.gunicorn_conf", app]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(command, env=full_env, stdout=out, stderr=err, start_new_session=True,
                                            cwd=REPO_ROOT)

    def log_tail(self) -> str:
        return self.err.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "frontend exited:\n" + self.log_tail()
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or workers still importing
                pass
            time.sleep(0.2)
        raise AssertionError("frontend not ready:\n" + self.log_tail())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
