"""The chart's two scripts run for real: TF Serving's readiness probe (bash, /dev/tcp) against the TF Serving
stand-in's REST API, and the `helm test` / `make smoke` script against the real frontend, both on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartlib import CHART, component, pod_spec, pods, render, serving_standin

SMOKE = CHART / "files" / "smoke_predict.py"
DIGIT = CHART / "files" / "smoke-digit.json"


def readiness_command(helm: str, rest_port: int) -> list[str]:
    """The serving readiness probe exactly as rendered, pointed at rest_port."""
    rendered = render(helm, "default", "--set", f"serving.restPort={rest_port}")
    (serving,) = [o for o in pods(rendered) if component(o) == "serving"]
    (container,) = pod_spec(serving)["containers"]
    return container["readinessProbe"]["exec"]["command"]


def probe(command: list[str]) -> int:
    return subprocess.run(command, capture_output=True, timeout=20).returncode


@pytest.fixture
def standin(tmp_path: Path, published_models: Any) -> Iterator[tuple[Any, Path]]:
    """The TF Serving stand-in reading a model config file, with /models/mnist mapped to the published models."""
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n}\n")
    with serving_standin(config, published_models.base_path) as serving:
        yield serving, config


def test_readiness_probe_follows_the_model_status_api(helm: str, standin: tuple[Any, Path]) -> None:
    serving, config = standin
    command = readiness_command(helm, serving.rest_port)
    # Empty model list (the chart's initial config): ready but empty.
    assert probe(command) == 0
    # The operator loads version 1: ready once it is AVAILABLE.
    config.write_text('model_config_list { config { name: "mnist" base_path: "/models/mnist" '
                      'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } } }\n')
    assert serving.wait_for_state(1, "AVAILABLE", timeout=60)
    assert probe(command) == 0
    # Nothing listening: not ready.
    serving.stop()
    assert probe(command) != 0


def test_readiness_probe_is_not_fooled_by_other_answers(helm: str, tmp_path: Path) -> None:
    """A server answering 503 (or 200 without an AVAILABLE version) keeps the pod out of the Service."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = iter([(503, b'{"error": "unavailable"}'),
                    (200, b'{"model_version_status": [{"version": "1", "state": "LOADING"}]}')])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, body = next(answers)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = readiness_command(helm, server.server_address[1])
        assert probe(command) != 0
        assert probe(command) != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def frontend_url(tmp_path: Path, published_models: Any) -> Iterator[tuple[str, str]]:
    """The real frontend app (embedded backend, routed to good version 2 of the published models) on 127.0.0.1."""
    from frontend.app import create_app
    from frontend.auth import hash_key
    from mnist_operator.render import RoutingState, render_routing
    from werkzeug.serving import make_server

    key = "smoke-test-key-0123456789abcdef0123456789"
    keys = tmp_path / "api-keys"
    keys.write_text(f"{hash_key(key)} smoke\n")
    routing = tmp_path / "routing.json"
    # The latest published version (3) is the deliberately broken one: route to version 2, as the operator would.
    routing.write_text(render_routing(RoutingState.single("mnist", 2), generation=1))
    app = create_app({"BACKEND": "embedded", "MODEL_BASE_PATH": str(published_models.base_path),
                      "API_KEYS_FILE": str(keys), "ROUTING_FILE": str(routing), "ACCESS_LOG": False})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", key
    finally:
        server.shutdown()
        thread.join(5)


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SMOKE), "--body", str(DIGIT), *args],
                          capture_output=True, text=True, timeout=120)


def test_smoke_digit_is_a_real_mnist_seven(mnist_npz: Path) -> None:
    import numpy as np

    with np.load(mnist_npz) as data:
        assert int(data["y_test"][0]) == 7
        assert json.loads(DIGIT.read_text())["instances"] == [data["x_test"][0].tolist()]


def test_smoke_script_predicts_through_the_real_frontend(frontend_url: tuple[str, str], tmp_path: Path) -> None:
    url, key = frontend_url
    key_file = tmp_path / "api-key"
    key_file.write_text(key + "\n")
    ok = smoke("--url", url, "--api-key-file", str(key_file), "--expect", "7", "--wait-s", "10")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok: ") and "predicted 7" in ok.stdout
    wrong = smoke("--url", url, "--api-key", key, "--expect", "3", "--wait-s", "10")
    assert wrong.returncode == 1 and "expected 3" in wrong.stdout
    refused = smoke("--url", url, "--api-key", "not-the-key", "--expect", "7", "--wait-s", "10")
    assert refused.returncode == 1 and "HTTP 403" in refused.stdout


def test_smoke_script_sends_bounded_traffic_with_feedback(frontend_url: tuple[str, str]) -> None:
    import requests

    url, key = frontend_url
    result = smoke("--url", url, "--api-key", key, "--expect", "7", "--requests", "6", "--rate", "50",
                   "--feedback", "--wait-s", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: 6 predictions")
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    feedback = [line for line in metrics.splitlines()
                if line.startswith("mnist_frontend_feedback_total{") and 'result="correct"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in feedback) == 6
