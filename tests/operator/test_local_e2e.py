"""`mnist-operator local` against a REAL frontend (gunicorn, embedded backend, the trainer's SavedModels).

Traffic is real MNIST test digits sent through the real API, each followed by feedback with the true label; the
operator judges them from the frontend's real /metrics. For each strategy (canary, A/B test, shadow), v2 (good)
is promoted and v3 (trained on shuffled labels) is rolled back: on feedback accuracy, on the A/B test, on
agreement with stable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from google.protobuf import text_format
from mnist_operator.render import RoutingState, render_routing
from tensorflow_serving.config import model_server_config_pb2

from tests.support.frontend_process import FrontendProcess

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


class Traffic:
    """Real digits at a bounded rate, each answered with feedback, until stopped (bounded in count and time)."""

    def __init__(self, base: str, images: np.ndarray, labels: np.ndarray, max_requests: int = 6000,
                 max_s: float = 150.0) -> None:
        self.base, self.images, self.labels = base, images, labels
        self.max_requests, self.max_s = max_requests, max_s
        self.stop = threading.Event()
        self.sent = self.server_errors = 0
        self.versions: dict[int, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        http = requests.Session()
        started = time.monotonic()
        i = 0
        while not self.stop.is_set() and self.sent < self.max_requests and time.monotonic() - started < self.max_s:
            k = i % len(self.images)
            i += 1
            r = http.post(f"{self.base}/v1/predict", json={"instances": [self.images[k].tolist()]},
                          headers={"X-User-Id": uuid.uuid4().hex}, timeout=10)
            self.sent += 1
            if r.status_code >= 500:
                self.server_errors += 1
                continue
            body = r.json()
            self.versions[body["version"]] = self.versions.get(body["version"], 0) + 1
            p = body["predictions"][0]
            fb = http.post(f"{self.base}/v1/feedback", json={"request_id": body["request_id"], "index": 0,
                                                             "label": int(self.labels[k]),
                                                             "feedback_token": p["feedback_token"]}, timeout=10)
            assert fb.status_code == 200, fb.text

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(15)


@pytest.fixture(scope="module")
def frontend(published_models, tmp_path_factory, mnist_npz):
    """One gunicorn frontend (1 worker) over v1, v2 and broken v3, routing from a file the operator writes."""
    work = tmp_path_factory.mktemp("local-e2e")
    routing = work / "routing.json"
    routing.write_text(render_routing(RoutingState.single("mnist", 1), generation=1))
    server = FrontendProcess(work, {"MNIST_BACKEND": "embedded", "MNIST_MODEL_NAME": "mnist",
                                    "MNIST_MODEL_BASE_PATH": str(published_models.base_path),
                                    "MNIST_ROUTING_FILE": str(routing), "MNIST_WORKERS": "1", "MNIST_THREADS": "4",
                                    "MNIST_ACCESS_LOG": "0", "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        server.wait_ready(timeout=90)
        with np.load(mnist_npz) as d:
            images, labels = d["x_test"][:2000], d["y_test"][:2000]
        yield {"base": server.url, "routing": routing, "work": work, "images": images, "labels": labels}
    finally:
        server.stop()


_generation = [100]


def start_from(frontend, stable: int) -> None:
    """Every scenario starts with all traffic on `stable` (a fresh, higher routing generation)."""
    _generation[0] += 100
    frontend["routing"].write_text(render_routing(RoutingState.single("mnist", stable), _generation[0]))
    time.sleep(0.5)  # the frontend re-reads the file every 0.2 s


def write_rollout(path: Path, name: str, candidate: int, stable: int, strategy: str, floor: float,
                  gate: float) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout", "metadata": {"name": name},
        "spec": {"model": "mnist", "candidateVersion": candidate, "stableVersion": stable, "strategy": strategy,
                 "canary": {"steps": [30, 100], "stepDuration": "3s"},
                 "abtest": {"split": 50, "duration": "6s", "minSamples": 20, "confidence": 0.999},
                 "shadow": {"percent": 100, "duration": "4s", "promote": "switch"},
                 "analysis": {"interval": "1500ms", "minRequests": 8, "minFeedback": 8, "failureLimit": 2,
                              "maxLatencyP99Ms": 3000, "maxErrorRate": 0.02, "minAccuracy": floor,
                              "minAgreement": 0.5, "inconclusiveTimeout": "40s", "routingTimeout": "10s"},
                 "gate": {"minOfflineAccuracy": gate, "timeout": "30s"}}}))
    return path


def run_operator(frontend, published_models, rollout: Path) -> subprocess.CompletedProcess[str]:
    serving = frontend["work"] / "models.config"
    return subprocess.run(
        [str(BIN / "mnist-operator"), "local", "--rollout", str(rollout), "--routing-file", str(frontend["routing"]),
         "--serving-config", str(serving), "--metrics-url", f"{frontend['base']}/metrics",
         "--model-base-path", str(published_models.base_path), "--tick", "0.3", "--timeout", "120"],
        capture_output=True, text=True, timeout=150)


def served_versions(path: Path) -> list[int]:
    cfg = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    return list(cfg.model_config_list.config[0].model_version_policy.specific.versions)


@pytest.mark.parametrize("strategy, marker", [("canary", "CanaryStep"), ("abtest", "ABTestStarted"),
                                              ("shadow", "ShadowStarted")])
def test_local_mode_promotes_a_good_candidate_on_live_frontend_metrics(frontend, published_models, strategy, marker):
    acc = published_models.accuracy
    # Live accuracy on a small sample, through the frontend's own input path: well below offline, well above chance.
    floor = round(min(acc[1], acc[2]) - 0.15, 2)
    start_from(frontend, 1)
    rollout = write_rollout(frontend["work"] / f"v2-{strategy}.yaml", "mnist-v2", 2, 1, strategy, floor, floor)
    with Traffic(frontend["base"], frontend["images"], frontend["labels"]) as traffic:
        result = run_operator(frontend, published_models, rollout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Promoted" in result.stdout and marker in result.stdout
    assert "AnalysisPassed" in result.stdout or "A/B test won" in result.stdout
    doc = json.loads(frontend["routing"].read_text())
    assert doc["strategy"] == "single" and doc["routes"] == [{"version": 2, "label": "stable", "weight": 100}]
    assert served_versions(frontend["work"] / "models.config") == [2]
    assert traffic.server_errors == 0 and traffic.versions.get(1, 0) > 0
    if strategy != "shadow":
        assert traffic.versions.get(2, 0) > 0


@pytest.mark.parametrize("strategy, reason", [("canary", "LowAccuracy"), ("abtest", "LostABTest"),
                                              ("shadow", "LowAgreement")])
def test_local_mode_rolls_back_a_broken_candidate(frontend, published_models, strategy, reason):
    floor = round(published_models.accuracy[2] - 0.15, 2)
    start_from(frontend, 2)
    # The offline gate would refuse v3 before any traffic; it is opened to show the live analysis catch it.
    rollout = write_rollout(frontend["work"] / f"v3-{strategy}.yaml", "mnist-v3", 3, 2, strategy, floor, 0.0)
    with Traffic(frontend["base"], frontend["images"], frontend["labels"]) as traffic:
        result = run_operator(frontend, published_models, rollout)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert f"RolledBack reason: {reason}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    if strategy != "abtest":
        assert result.stdout.count("AnalysisFailed") == 2  # failureLimit
    doc = json.loads(frontend["routing"].read_text())
    assert doc["routes"] == [{"version": 2, "label": "stable", "weight": 100}] and doc["shadow"] is None
    assert doc["generation"] > _generation[0]
    assert served_versions(frontend["work"] / "models.config") == [2]
    assert traffic.server_errors == 0
    if strategy != "shadow":
        assert traffic.versions.get(3, 0) > 0
