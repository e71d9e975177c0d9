"""benchmarks/attack_frontend.py: its report logic, and one run of every attack on tiny inputs against real
gunicorn (a child process: the script starts gunicorn, which imports the script as its app module)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.benchmarks import BENCHMARKS, load_script

SCRIPT = BENCHMARKS / "attack_frontend.py"


@pytest.fixture(scope="module")
def attack():
    return load_script("attack_frontend")


def test_outcome_reads_the_error_code_of_json_bodies_and_flags_the_rest(attack):
    assert attack.outcome(413, b'{"error": {"code": "payload_too_large", "message": "m"}}', 0.01234) == {
        "status": 413, "code": "payload_too_large", "json": True, "seconds": 0.012}
    assert attack.outcome(200, b'{"predictions": []}', 0)["code"] is None
    assert attack.outcome(414, b"<html>URI Too Long</html>", 0)["json"] is False
    assert attack.outcome(None, "ReadTimeout", 2.0) == {"status": None, "code": None, "json": False, "seconds": 2.0}


def test_summary_counts_5xx_apart_from_refusals_by_design_and_judges_the_probes(attack):
    results = {"images": {"bombs": [attack.outcome(503, b'{"error": {"code": "server_busy", "message": ""}}', 1),
                                    attack.outcome(413, b'{"error": {"code": "payload_too_large"}}', 0.1)],
                          "crash": [attack.outcome(500, b'{"error": {"code": "internal_error"}}', 0.2)]}}
    summary = attack.summarize(results, [(0.0, 200, 0.01), (0.2, 200, 0.02)], {7: 100 * 2**20}, 1.0)
    assert (summary["5xx"], summary["unexpected_5xx"]) == (2, 1)
    assert summary["healthz_answered_throughout"] is True and summary["peak_worker_rss_mib"] == {"7": 100.0}
    assert summary["rows"][0]["answers"] == {"503 server_busy": 1, "413 payload_too_large": 1}
    slow = attack.summarize(results, [(0.0, 200, 0.01), (0.2, 200, 1.5)], {}, 1.0)
    failed = attack.summarize(results, [(0.0, None, 1.0)], {}, 1.0)
    assert not slow["healthz_answered_throughout"] and not failed["healthz_answered_throughout"]
    assert not attack.summarize(results, [], {}, 1.0)["healthz_answered_throughout"]  # no probe: no claim


@pytest.mark.slow
def test_every_attack_on_tiny_inputs_gets_clear_4xx_no_5xx_and_healthz_answers_throughout(tmp_path):
    out = tmp_path / "attack.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--bombs", "2", "--bomb-side", "1000", "--multipart-images", "4",
         "--max-body", "200000", "--decode-memory", str(8 * 2**20), "--request-pixels", "2000000",
         "--slow-clients", "6", "--slow-interval-s", "0.2", "--slow-seconds", "5", "--header-timeout-s", "1",
         "--body-timeout-s", "1", "--request-timeout-s", "30", "--json-out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["unexpected_5xx"] == 0 and report["healthz_answered_throughout"] is True
    assert report["probes"] >= 5 and report["peak_worker_rss_mib"] and all(r["all_json"] for r in report["rows"])
    answers = {row["kind"]: row["answers"] for row in report["rows"]}
    assert answers["2 x transparent 1000x1000 PNG (3 KB) at once"] == {"413 payload_too_large": 2}  # 10 MiB to decode
    assert answers["6 connections sending headers or body a byte every 0.2 s"] == {"408 request_timeout": 6}
    assert answers["chunk size 'zz'"] == {"400 invalid_input": 1}
    assert answers["chunked body over the limit"] == {"413 payload_too_large": 1}
    assert answers["request line of 5000 bytes"] == {"414 uri_too_long": 1}
    assert answers["line-wrapped base64"] == {"200": 1}
    feedback = report["results"]["feedback"]["feedback on two predictions with one X-Request-Id"]
    assert [f["counted"] for f in feedback] == [True, True]
    slow = report["results"]["slow"]["6 connections sending headers or body a byte every 0.2 s"]
    assert max(s["closed_by_server_after_s"] for s in slow) < 4.0  # cut at the 1 s deadline, not after 5 s
    for row in report["rows"]:
        if row["attack"] == "memory":  # served, refused as busy, or cut at the deadline: nothing else
            assert set(row["answers"]) <= {"200", "503 server_busy", "408 request_timeout", "no answer"}, row
    assert "| attack | what | answers | JSON | longest s |" in done.stdout
