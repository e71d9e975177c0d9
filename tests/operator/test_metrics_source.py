"""Metrics sources: the frontend's own exposition parsed, fixed URLs scraped, Prometheus queried, failures named."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

import pytest
from frontend.metrics import LATENCY_BUCKETS as FRONTEND_BUCKETS
from frontend.metrics import Metrics
from mnist_operator import analysis as an
from mnist_operator import metrics_source as ms
from prometheus_client.parser import text_string_to_metric_families


def frontend_exposition() -> str:
    """Text produced by the frontend's real metrics code, after some recorded traffic."""
    m = Metrics("mnist")
    for _ in range(9):
        m.predictions.labels("mnist", "2", "canary", "ok").inc()
        m.latency.labels("mnist", "2", "canary").observe(0.007)
    m.predictions.labels("mnist", "2", "canary", "backend_error").inc()
    m.latency.labels("mnist", "2", "canary").observe(0.3)
    m.predictions.labels("mnist", "1", "stable", "ok").inc(30)
    m.predictions.labels("mnist", "", "", "client_error").inc(4)
    m.feedback.labels("mnist", "2", "correct").inc(8)
    m.feedback.labels("mnist", "2", "wrong").inc(2)
    m.shadow_comparisons.labels("mnist", "1", "2", "agree").inc(5)
    m.shadow_comparisons.labels("mnist", "1", "2", "disagree").inc(1)
    m.shadow_latency.labels("mnist", "2").observe(0.02)
    m.routing_generation.labels("mnist").set(12)
    return m.exposition().decode()


def test_bucket_layout_is_the_frontends():
    assert tuple(float(b) for b in FRONTEND_BUCKETS) == an.LATENCY_BUCKETS[:-1]


def test_every_series_the_operator_reads_is_one_the_frontend_exposes():
    """The metric names are the frontend's (frontend.metrics owns them; docs/CONTRACTS.md): a rename there fails here."""
    exposed = {s.name for fam in text_string_to_metric_families(frontend_exposition()) for s in fam.samples}
    read = {ms.PREDICTIONS, ms.FEEDBACK, ms.SHADOW, ms.LATENCY + "_bucket", ms.SHADOW_LATENCY + "_bucket", ms.GENERATION}
    assert read <= exposed, read - exposed


def test_the_frontends_own_exposition_parses_into_per_version_counters():
    pc = ms.parse_exposition(frontend_exposition(), "mnist")
    assert pc.requests["2|ok"] == 9 and pc.requests["2|backend_error"] == 1 and pc.requests["1|ok"] == 30
    assert pc.requests["|client_error"] == 4
    assert pc.feedback == {"2|correct": 8, "2|wrong": 2}
    assert pc.shadow["1|2|agree"] == 5 and pc.shadow["1|2|disagree"] == 1
    assert pc.routing_generation == 12
    s = an.version_stats(an.window_counters(None, an.Snapshot(0, {"p": pc})), 2)
    assert s.requests == 10 and s.error_rate == pytest.approx(0.1) and s.accuracy == pytest.approx(0.8)
    assert 250 < s.p99_ms <= 500  # the slow request is the top 10%


def test_other_models_are_ignored():
    assert ms.parse_exposition(frontend_exposition(), "fashion").requests == {}


@contextmanager
def serve(handler_fn) -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            status, ctype, body = handler_fn(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_scrape_urls_reads_each_pod_and_names_the_ones_that_fail():
    text = frontend_exposition()
    with serve(lambda path: (200, "text/plain", text) if path == "/metrics" else (500, "text/plain", "boom")) as url:
        snap = ms.scrape_urls({"a": f"{url}/metrics", "b": f"{url}/broken", "c": "http://127.0.0.1:9/metrics"},
                              "mnist", timeout_s=1.0)
    assert list(snap.pods) == ["a"] and snap.reachable
    assert len(snap.errors) == 2 and snap.errors[0].startswith("b: HTTPError")


def test_prometheus_source_groups_series_by_pod_so_resets_are_per_pod():
    def answer(path: str):
        query = parse_qs(urlparse(path).query)["query"][0]
        result = []
        if query.startswith("mnist_frontend_predictions_total"):
            for pod, value in (("fe-1", 10), ("fe-2", 5)):
                result.append({"metric": {"__name__": "mnist_frontend_predictions_total", "model": "mnist",
                                          "version": "2", "outcome": "ok", "route": "canary", "pod": pod,
                                          "namespace": "ml"}, "value": [0, str(value)]})
        return 200, "application/json", json.dumps({"status": "success", "data": {"resultType": "vector",
                                                                                  "result": result}})

    with serve(answer) as url:
        snap = ms.query_prometheus(url, "mnist", timeout_s=1.0)
    assert set(snap.pods) == {"ml/fe-1", "ml/fe-2"}
    assert snap.pods["ml/fe-1"].requests == {"2|ok": 10.0}


def test_prometheus_errors_make_the_snapshot_empty_not_partial():
    with serve(lambda path: (503, "application/json", "{}")) as url:
        snap = ms.query_prometheus(url, "mnist", timeout_s=1.0)
    assert not snap.reachable and snap.errors
