"""`make demo` with `tensorflow_model_server` on PATH: TF Serving serves, the frontend speaks gRPC to it.

The real binary is not installable here, so the TF Serving stand-in (tests/support/tfserving_standin: the real
gRPC and REST protocols, config-file polling, load-first-label-second) is put on PATH under the binary's name
and flags. The whole demo runs to its end (`--exit`), on the broken-candidate scenario, which decides fastest.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from scripts.demo.ports import free_port, port_is_free
from scripts.demo.supervisor import descendants, pid_alive, wait_until

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_rolls_back_through_tf_serving_when_its_binary_is_on_path(published_models, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tensorflow_model_server"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.support.tfserving_standin "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    port, workdir = free_port(), tmp_path / "demo"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.demo",
            "rollback",
            "--exit",
            "--port",
            str(port),
            "--rate",
            "20",
            "--model-dir",
            str(published_models.base_path),
            "--workdir",
            str(workdir),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: set[int] = set()
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        # Note every process the demo starts while it runs, to check afterwards that none outlives it.
        while not wait_until(lambda: demo.poll() is not None, timeout_s=0.5, interval_s=0.1):
            started |= descendants(demo.pid)
            assert len(started) < 50
        code = demo.wait(timeout=300)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        reader.join(10)
        demo.stdout.close()
    text = "".join(output)
    assert code == 0, text[-4000:]
    assert "tensorflow_model_server found" in text and "frontend backend: grpc" in text
    assert "Outcome: RolledBack (as expected)" in text and "LowAccuracy" in text
    assert " 0 5xx, 0 lost" in text
    config = text_format.Parse((workdir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [2] and dict(model.version_labels) == {"stable": 2}
    served = (workdir / "logs" / "tfserving.log").read_text()
    assert "Successfully loaded servable version {name: mnist version: 3}" in served
    # No assertion on "Unloading ... version 3": TF Serving unloads on its next config poll, which may come after
    # the demo (DEMO_EXIT) has already stopped it; the config above is what the operator controls.
    assert len(started) >= 4, f"TF Serving, gunicorn master and worker, operator expected: {started}"
    assert wait_until(lambda: not any(pid_alive(pid) for pid in started), timeout_s=10)
    assert port_is_free(port)
