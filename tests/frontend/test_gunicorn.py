"""Real gunicorn (through `mnist-frontend`) on 127.0.0.1: routing changes under load lose nothing, SIGTERM
drains in-flight requests, access logs are JSON lines, metrics add up across workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.frontend.helpers import metric_value, routing, write_json_atomically

pytestmark = pytest.mark.slow


def test_routing_change_under_concurrent_load_loses_nothing(frontend_factory, healthy_standin, tmp_path, mnist_test):
    routing_file = tmp_path / "routing.json"
    write_json_atomically(routing_file, routing([(1, "stable", 100)], strategy="single", generation=1))
    frontend = frontend_factory(MNIST_BACKEND="grpc", MNIST_SERVING_GRPC=healthy_standin.grpc_target,
                                MNIST_ROUTING_FILE=str(routing_file))
    payload = {"instances": mnist_test[0][:1].tolist()}
    results: list[tuple[int, int | None, float]] = []
    stop = threading.Event()

    def client_loop() -> None:
        session = requests.Session()
        deadline = time.monotonic() + 30
        for _ in range(150):  # bounded in count and time
            if stop.is_set() or time.monotonic() > deadline:
                break
            response = session.post(f"{frontend.url}/v1/predict", json=payload, timeout=10)
            version = response.json().get("version") if response.status_code == 200 else None
            results.append((response.status_code, version, time.monotonic()))

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(client_loop) for _ in range(6)]
        time.sleep(0.5)
        write_json_atomically(routing_file, routing([(1, "stable", 50), (2, "canary", 50)], generation=2))
        time.sleep(0.7)
        write_json_atomically(routing_file, routing([(1, "stable", 0), (2, "canary", 100)], generation=3))
        switched_at = time.monotonic()
        time.sleep(1.5)
        stop.set()
        for future in futures:
            future.result()

    assert len(results) >= 30
    assert all(status == 200 for status, _, _ in results), {s for s, _, _ in results}
    late = [version for _, version, at in results if at > switched_at + 0.6]  # 3x the check interval
    assert late and set(late) == {2}
    metrics = requests.get(f"{frontend.url}/metrics", timeout=5).text
    total = sum(metric_value(metrics, "mnist_frontend_predictions_total", version=v, route=r, outcome="ok")
                for v, r in (("1", "stable"), ("2", "canary")))
    assert total == len(results)  # both workers' counts, aggregated whichever worker answers the scrape
    assert metric_value(metrics, "mnist_frontend_routing_generation", model="mnist") == 3


def test_sigterm_drains_in_flight_requests_and_access_log_is_json(frontend_factory, healthy_standin, mnist_test):
    frontend = frontend_factory(MNIST_BACKEND="grpc", MNIST_SERVING_GRPC=healthy_standin.grpc_target,
                                MNIST_BACKEND_TIMEOUT_S="10")
    payload = {"instances": mnist_test[0][:1].tolist()}
    healthy_standin.set_fault("slow", delay=1.5)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(requests.post, f"{frontend.url}/v1/predict", json=payload, timeout=20,
                               headers={"X-Request-Id": f"drain-{i}"}) for i in range(4)]
        time.sleep(0.5)  # all four are now waiting on the slow backend
        frontend.process.send_signal(signal.SIGTERM)
        responses = [future.result() for future in futures]
    assert [r.status_code for r in responses] == [200] * 4
    assert frontend.process.wait(timeout=20) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{frontend.url}/healthz", timeout=2)
    lines = [json.loads(line) for line in frontend.out.read_text().splitlines() if line.startswith("{")]
    drained = [line for line in lines if str(line.get("request_id", "")).startswith("drain-")]
    assert len(drained) == 4
    assert all(line["status"] == 200 and line["model_version"] == "2" and line["latency_ms"] > 1000
               for line in drained)


def test_bad_flag_value_is_one_line_and_nonzero_exit(tmp_path):
    result = subprocess.run([sys.executable, "-m", "frontend.cli", "--workers", "zero"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "MNIST_WORKERS" in result.stderr and len(result.stderr.splitlines()) == 1
    result = subprocess.run([sys.executable, "-m", "frontend.cli", "--model-base-path", str(tmp_path / "absent")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a directory" in result.stderr
    result = subprocess.run([sys.executable, "-m", "frontend.cli", "--check-config"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "MNIST_BACKEND": "grpc",
                                             "MNIST_FEEDBACK_CLAIMS_FILE": str(tmp_path / "absent" / "claims.sqlite")})
    assert result.returncode == 2 and "feedback claims file" in result.stderr and len(result.stderr.splitlines()) == 1


def test_each_worker_freezes_what_it_loaded_at_start(tmp_path):
    # gunicorn calls post_worker_init once the worker has built the app; what exists then (TensorFlow and the
    # models, with the embedded backend) leaves the garbage collector's full passes. In a child process: the
    # config module sets up the metrics directory and the feedback key in its environment when imported.
    probe = ("import gc, frontend.gunicorn_conf as conf; before = gc.get_freeze_count(); "
             "conf.post_worker_init(None); print(before, gc.get_freeze_count())")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    assert before == 0 and after > 1000


def test_feedback_replayed_to_every_worker_counts_once(frontend_factory, healthy_standin, tmp_path, mnist_test):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    frontend = frontend_factory(MNIST_BACKEND="grpc", MNIST_SERVING_GRPC=healthy_standin.grpc_target,
                                PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    answer = requests.post(f"{frontend.url}/v1/predict", json={"instances": mnist_test[0][:1].tolist()},
                           timeout=10).json()
    prediction = answer["predictions"][0]
    feedback = {"request_id": answer["request_id"], "label": prediction["digit"],
                "feedback_token": prediction["feedback_token"]}
    # New connections, several at once: both workers take some of them.
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: requests.post(f"{frontend.url}/v1/feedback", json=feedback, timeout=10),
                                range(24)))
    assert [r.status_code for r in replies] == [200] * 24
    assert sum(r.json()["counted"] for r in replies) == 1
    metrics = requests.get(f"{frontend.url}/metrics", timeout=5).text
    assert metric_value(metrics, "mnist_frontend_feedback_total", version=str(answer["version"]),
                        result="correct") == 1
    assert (metrics_dir / "feedback-claims.sqlite").is_file()  # where gunicorn put the pod's record
