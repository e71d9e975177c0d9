"""Real gunicorn (the frontend's config and worker) against hostile or broken clients, on 127.0.0.1: slow senders
neither starve probes nor stay connected, chunked bodies are framed and limited, every error body is JSON.

The app has a backend that answers at once (tests/frontend/gunicorn_apps.py): what is tested is the HTTP side."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.frontend.helpers import metric_value

pytestmark = pytest.mark.slow

APP = "tests.frontend.gunicorn_apps:instant_app()"
ONE_IMAGE = json.dumps({"instances": [[[0] * 28] * 28]}).encode()


def predict_request(body: bytes = ONE_IMAGE, *, chunked: bool = False, extra: bytes = b"") -> bytes:
    head = b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + extra
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict | None, bytes]:
    """Send `data` on a new connection, read until the server closes it: (status, JSON body, raw answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = read_until_closed(sock, timeout)
    return parse_answer(answer)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    answer, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        answer += chunk
    return answer


def parse_answer(answer: bytes) -> tuple[int, dict | None, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    try:
        return status, json.loads(body), answer
    except ValueError:
        return status, None, answer


@pytest.fixture
def instant(frontend_factory):
    """One worker with four threads (fewer threads than the slow clients below), short read deadlines."""
    return frontend_factory(APP, MNIST_BACKEND="grpc", MNIST_WORKERS="1", MNIST_THREADS="4",
                            MNIST_HEADER_TIMEOUT_S="2", MNIST_BODY_TIMEOUT_S="2", MNIST_MAX_BODY_BYTES="100000",
                            MNIST_RECEIVE_BUFFER_BYTES="300000")


def test_slow_senders_neither_starve_probes_nor_stay_connected(instant):
    # 16 connections (4x the threads) send their headers, or their body, a byte every 0.2 s. Before: each held a
    # thread for as long as it kept sending, /healthz timed out throughout and none was ever closed by the server.
    port = instant.port
    closed_after: list[float] = []

    def slow_sender(body_only: bool) -> None:
        data = predict_request()
        head = data.index(b"\r\n\r\n") + 4
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started, sent = time.monotonic(), 0
            if body_only:
                sock.sendall(data[:head])
                sent = head
            try:
                while sent < len(data) and time.monotonic() - started < 8:  # bounded: 8 s at most
                    sock.sendall(data[sent : sent + 1])
                    sent += 1
                    time.sleep(0.2)
                read_until_closed(sock, 3)
            except OSError:  # the server closed it: what is tested
                pass
            closed_after.append(time.monotonic() - started)

    senders = [threading.Thread(target=slow_sender, args=(i % 2 == 0,)) for i in range(16)]
    for sender in senders:
        sender.start()
    time.sleep(0.3)
    probes, predictions = [], []
    session = requests.Session()
    for _ in range(8):  # 3 s of probes and predictions while all 16 are connected
        started = time.monotonic()
        probes.append((session.get(f"{instant.url}/healthz", timeout=5).status_code, time.monotonic() - started))
        predictions.append(requests.post(f"{instant.url}/v1/predict", data=ONE_IMAGE, timeout=5,
                                         headers={"Content-Type": "application/json"}).status_code)
        time.sleep(0.35)
    for sender in senders:
        sender.join(15)
    assert all(status == 200 and seconds < 1.0 for status, seconds in probes), probes
    assert predictions == [200] * 8
    # The server cut every one of them at its 2 s deadline (+ up to the 0.25 s sweep and the sender's own pace).
    assert len(closed_after) == 16 and max(closed_after) < 4.0, sorted(closed_after)


def test_a_client_that_stops_mid_request_gets_a_json_408_then_the_connection_closes(instant):
    for partial in (b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Le",
                    predict_request()[:-10]):
        started = time.monotonic()
        status, body, _ = exchange(instant.port, partial, timeout=8)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert 1.5 < time.monotonic() - started < 4.0
    # a connection that never sends anything is closed without an answer
    status, _, raw = exchange(instant.port, b"", timeout=8)
    assert (status, raw) == (0, b"")


@pytest.mark.parametrize("data, status, code", [
    (predict_request(chunked=True).replace(b"\r\n%x\r\n" % len(ONE_IMAGE), b"\r\nzz\r\n", 1), 400, "invalid_input"),
    (predict_request(chunked=True).replace(b"\r\n0\r\n", b"XX0\r\n", 1), 400, "invalid_input"),
    (predict_request(b" " * 120_000, chunked=True), 413, "payload_too_large"),
    (predict_request(b" " * 120_000), 413, "payload_too_large"),
    (predict_request(chunked=True), 200, None),
])
def test_chunked_bodies_are_framed_and_limited_like_sized_ones(instant, data, status, code):
    # Before: a bad chunk size or a missing CRLF was a 500 with a traceback, counted as backend_error, and a
    # chunked body over the limit was cut short and processed.
    got, body, _ = exchange(instant.port, data)
    assert got == status, body
    if code:
        assert body["error"]["code"] == code
    metrics = requests.get(f"{instant.url}/metrics", timeout=5).text
    assert metric_value(metrics, "mnist_frontend_predictions_total", outcome="backend_error") == 0


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 70_000, 431),
    (b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400),
    (b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n", 501),
    (b"POST /v1//predict HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}", 404),
])
def test_every_error_body_is_json_even_gunicorns_own(instant, data, status):
    got, body, raw = exchange(instant.port, data)
    assert got == status, raw[:300]
    assert body is not None and set(body["error"]) == {"code", "message"}, raw[:300]
    assert b"Content-Type: application/json" in raw.split(b"\r\n\r\n")[0]


def test_expect_100_continue_gets_one_continue_before_the_body(instant):
    data = predict_request(extra=b"Expect: 100-continue\r\n")
    head = data.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", instant.port), timeout=10) as sock:
        sock.sendall(data[:head])
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any byte of the body was sent
        sock.sendall(data[head:] + b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(sock, 10)
    assert answer.count(b"100 Continue") == 0 and answer.count(b"HTTP/1.1 200 ") == 2


def test_pipelined_and_kept_alive_requests_are_each_answered(instant):
    two = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" + predict_request()
    with socket.create_connection(("127.0.0.1", instant.port), timeout=10) as sock:
        sock.sendall(two)
        time.sleep(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(sock, 10)
    assert answer.count(b"HTTP/1.1 200 ") == 3 and answer.count(b'"predictions"') == 1


def test_requests_being_received_share_a_bounded_buffer(instant):
    # The worker holds at most 300,000 bytes (MNIST_RECEIVE_BUFFER_BYTES here) of unfinished requests beyond the
    # first 16 KiB of each: five clients stalling with 90,000 bytes of body each do not all fit.
    data = predict_request(b" " * 99_000)
    stalled = [socket.create_connection(("127.0.0.1", instant.port), timeout=10) for _ in range(5)]
    try:
        for sock in stalled:
            sock.sendall(data[:90_000])
            time.sleep(0.1)
        answers = []
        for sock in stalled:
            sock.settimeout(0.2)
            try:
                answers.append(parse_answer(sock.recv(4096))[0])
            except (TimeoutError, ConnectionResetError):
                answers.append(None)
        assert answers.count(503) >= 1 and answers.count(None) >= 3, answers
        assert requests.get(f"{instant.url}/healthz", timeout=2).status_code == 200  # small requests still fit
    finally:
        for sock in stalled:
            sock.close()
