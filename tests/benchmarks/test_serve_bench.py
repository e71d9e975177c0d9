"""benchmarks/serve_bench.py's own logic: the raw HTTP load generator, Server-Timing parsing, CPU lists and the
paced pairs (the figures in docs/BENCHMARKS.md rest on these)."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.benchmarks import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("serve_bench")


class TinyServer:
    """Answers each request on a connection with a fixed HTTP/1.1 response; closes the connection after
    `close_after` answers (as a server does when a keep-alive connection times out)."""

    def __init__(self, status: int = 200, close_after: int | None = None) -> None:
        self.status, self.close_after = status, close_after
        self.requests: list[bytes] = []
        self.heads: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                answered, buffer = 0, b""
                while self.close_after is None or answered < self.close_after:
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buffer += chunk
                    if b"\r\n\r\n" not in buffer:
                        break
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                       if line.lower().startswith(b"content-length")), b"0"))
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    self.requests.append(rest[:length])
                    buffer = rest[length:]
                    body = b'{"ok": true}'
                    conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\n"
                                 f"Server-Timing: predict;dur=1.5, app;dur=2.25\r\n\r\n".encode() + body)
                    answered += 1

    def __enter__(self) -> TinyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


def test_raw_caller_sends_the_body_and_returns_the_header_block(bench):
    with TinyServer() as server:
        call = bench.raw_http_caller(server.port, b'{"instances": [1]}')
        head = call()
        call()
        call.close()
        assert server.requests == [b'{"instances": [1]}'] * 2 and server.connections == 1  # kept alive
        assert bench.server_timing(head) == {"predict": 1.5, "app": 2.25}


def test_raw_caller_reconnects_once_when_the_server_closed_an_idle_connection(bench):
    with TinyServer(close_after=1) as server:
        call = bench.raw_http_caller(server.port, b"{}")
        call()
        call()
        call.close()
        assert len(server.requests) == 2 and server.connections == 2


def test_raw_caller_raises_on_an_error_status(bench):
    with TinyServer(status=503) as server:
        call = bench.raw_http_caller(server.port, b"{}")
        with pytest.raises(RuntimeError, match="503"):
            call()
        call.close()


def test_server_timing_absent_is_empty(bench):
    assert bench.server_timing("HTTP/1.1 200 OK\r\nContent-Length: 2") == {}


def test_cpu_set_parses_and_checks_against_the_allowed_cpus(bench, monkeypatch):
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 1})
    assert bench.cpu_set("0,1") == {0, 1} and bench.cpu_set("1") == {1}
    assert bench.cpu_set(None) is None and bench.cpu_set("") is None
    with pytest.raises(SystemExit, match="not available"):
        bench.cpu_set("2")
    with pytest.raises(SystemExit, match="integers"):
        bench.cpu_set("a")


class FakeTime:
    """Stands in for the benchmark's `time`: sleeps are recorded, calls advance a clock by what they "take"."""

    def __init__(self, bench, monkeypatch) -> None:
        self.order: list[str] = []
        self.now = 0.0
        monkeypatch.setattr(bench.time, "sleep", lambda s: self.order.append("pause"))
        monkeypatch.setattr(bench.time, "perf_counter", lambda: self.now)

    def call(self, name: str, seconds: float, answer: str | None = None):
        def run():
            self.order.append(name)
            self.now += seconds
            return answer

        return run


def test_paced_pairs_alternates_calls_and_reports_the_breakdown(bench, monkeypatch):
    fake = FakeTime(bench, monkeypatch)
    via = fake.call("via", 0.006, "HTTP/1.1 200 OK\r\nServer-Timing: predict;dur=4.0, app;dur=5.0")
    result = bench.paced_pairs(fake.call("direct", 0.004), via, pace_s=0.005, pairs=3, warmup=1)
    assert fake.order == ["direct", "via"] + ["pause", "direct", "pause", "via"] * 3
    assert result["direct_p50_ms"] == pytest.approx(4.0) and result["frontend_p50_ms"] == pytest.approx(6.0)
    assert result["p50_overhead_ms"] == pytest.approx(2.0)
    assert result["app_own_p50_ms"] == pytest.approx(1.0) and result["http_p50_ms"] == pytest.approx(1.0)


def test_paced_calls_pause_before_each_call(bench, monkeypatch):
    fake = FakeTime(bench, monkeypatch)
    assert bench.paced_calls(fake.call("call", 0.001), 0.005, 3, warmup=2) == pytest.approx(1.0)
    assert fake.order == ["call", "call"] + ["pause", "call"] * 3


def test_raw_caller_can_send_a_get_without_a_body(bench):
    with TinyServer() as server:
        call = bench.raw_http_caller(server.port, b"", "GET", "/healthz")
        call()
        call.close()
        assert server.heads[0].startswith(b"GET /healthz HTTP/1.1\r\n") and b"Content-Length" not in server.heads[0]
        assert server.requests == [b""]
