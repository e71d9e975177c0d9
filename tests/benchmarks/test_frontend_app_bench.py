"""benchmarks/frontend_app_bench.py: its timing loop, its WSGI caller, and one short end-to-end run (in a child
process, because the script switches prometheus_client to multiprocess mode before importing the app)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmarks import BENCHMARKS, load_script

SCRIPT = BENCHMARKS / "frontend_app_bench.py"


@pytest.fixture(scope="module")
def bench():
    return load_script("frontend_app_bench")


def test_measure_pauses_before_every_timed_call_and_not_before_the_warmup(bench):
    calls, pauses = [], []
    result = bench.measure(lambda: calls.append(1), count=7, pause_s=0.004, warmup=3, sleep=pauses.append)
    assert len(calls) == 10
    assert pauses == [0.004] * 7
    assert result["p50_ms"] >= 0 and result["cpu_ms"] >= 0


def test_measure_back_to_back_never_sleeps(bench):
    pauses = []
    bench.measure(lambda: None, count=5, pause_s=0, warmup=0, sleep=pauses.append)
    assert pauses == []


def test_wsgi_call_returns_the_body_size_and_refuses_a_failed_request(bench):
    seen = []

    def app(environ, start_response):
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("CONTENT_TYPE"),
                     environ["wsgi.input"].read()))
        start_response("200 OK" if environ["PATH_INFO"] == "/ok" else "404 NOT FOUND", [])
        return [b"abc", b"de"]

    call = bench.wsgi_call(app, "POST", "/ok", b'{"x": 1}', "application/json")
    assert call() == 5 and call() == 5  # the body is readable again on every call
    assert seen == [("POST", "/ok", "application/json", b'{"x": 1}')] * 2
    with pytest.raises(RuntimeError, match="404"):
        bench.wsgi_call(app, "GET", "/missing")()


def test_gc_profile_counts_full_passes_and_times_one(bench):
    import gc

    result = bench.gc_profile(gc.collect, requests=3)  # each "request" is one full pass
    assert result["requests"] == 3 and result["full_passes"] == 3 and result["longest_pass_ms"] > 0
    assert result["full_pass_now_ms"] > 0 and result["tracked_objects"] > 0
    assert bench.gc_profile(lambda: None, requests=3)["full_passes"] == 0
    assert not [cb for cb in gc.callbacks if getattr(cb, "__name__", "") == "on_gc"]  # its hook is removed


def test_a_short_run_measures_every_request_kind_through_the_real_app(tmp_path):
    rng = np.random.default_rng(0)
    digits = np.zeros((32, 28, 28), np.uint8)
    digits[:, 8:20, 12:16] = rng.integers(128, 256, size=(32, 12, 4))  # a stroke, so the PNG holds a digit
    np.savez(tmp_path / "mnist.npz", x_test=digits, y_test=np.zeros(32, np.uint8))
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "mnist.npz"), "--count", "5",
                           "--pauses-ms", "0,1", "--gc-requests", "20", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    rows = results["timings"]
    assert [(row["request"], row["pause_ms"]) for row in rows] == [
        (name, pause) for pause in (0.0, 1.0) for name in
        ("GET /healthz", "predict JSON, 1 image", "predict JSON, 32 images", "predict PNG, 1 image",
         "reference C work")]
    assert all(row["p50_ms"] > 0 and row["cpu_ms"] >= 0 for row in rows)
    assert "| predict JSON, 1 image | 1 ms |" in done.stdout
    before, after = results["gc"]
    assert (before["frozen"], after["frozen"]) == (False, True) and before["requests"] == after["requests"] == 20
    # what the app loaded is frozen: a full pass afterwards has far fewer objects to scan
    assert after["tracked_objects"] * 5 < before["tracked_objects"]


def test_embedded_without_models_is_one_line_and_a_nonzero_exit(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--backend", "embedded", "--model-base-path",
                           str(tmp_path / "none"), "--count", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no model versions in" in done.stderr
