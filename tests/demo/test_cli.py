"""What a newcomer gets wrong is caught first, with one clear line: a busy port; the make knobs reach the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.demo.__main__ import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_busy_port_is_refused_before_anything_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "scripts.demo", "promote", "--exit", "--port", str(port)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "DEMO_PORT" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "[1/5]" not in result.stdout, "nothing (training, servers) may start when the port is taken"
    assert time.monotonic() - started < 60


def test_cli_flags_map_to_the_run_configuration():
    cfg = parse_args(
        ["rollback", "--port", "9123", "--exit", "--retrain", "--rate", "7", "--model-dir", "m/x", "--workdir", "w"]
    )
    assert (cfg.scenario.name, cfg.scenario.stable, cfg.scenario.candidate) == ("rollback", 2, 3)
    assert cfg.scenario.expected_phase == "RolledBack"
    assert (cfg.port, cfg.exit_after, cfg.retrain, cfg.rate_per_s) == (9123, True, True, 7.0)
    assert cfg.base_url == "http://127.0.0.1:9123"
    assert cfg.model_dir == Path("m/x").resolve() and cfg.workdir == Path("w").resolve()
    default = parse_args([])
    assert (default.scenario.name, default.port, default.exit_after, default.retrain) == ("promote", 8080, False, False)
    assert default.model_dir == REPO_ROOT / "models" / "mnist" and default.workdir == REPO_ROOT / "build" / "demo"


def test_data_follows_mnist_data_like_the_makefile(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "m.npz"))
    assert parse_args([]).data == tmp_path / "m.npz"
    monkeypatch.delenv("MNIST_DATA")
    assert parse_args([]).data == REPO_ROOT / "data" / "mnist.npz"


def test_make_knobs_become_cli_flags():
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo-rollback", "DEMO_EXIT=1", "RETRAIN=1", "DEMO_PORT=9123"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert "-m scripts.demo rollback" in command
    assert "--port 9123" in command and "--exit" in command and "--retrain" in command
    plain = (
        subprocess.run(["make", "--no-print-directory", "-n", "demo", "DEMO_EXIT=0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert "-m scripts.demo promote" in plain and "--exit" not in plain and "--port 8080" in plain
