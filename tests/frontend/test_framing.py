"""frontend.framing against gunicorn's own parser: whenever the framer says a request is buffered (READY) or may be
handed over (HAND_OFF), gunicorn's parser fed exactly those bytes never asks for one more (which, on a socket,
would hold a thread on the client)."""

from __future__ import annotations

import pytest
from frontend.framing import READ_AHEAD, RequestFramer, Verdict
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

LIMIT = 120
CFG = Config()


class Source:
    """The bytes gunicorn may read, once; asking for more marks it starved (on a socket, that read would wait)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.given, self.starved = data, False, False

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> bytes:
        if not self.given:
            self.given = True
            return self.data
        self.starved = True
        raise StopIteration


def gunicorn_reads(data: bytes, body_limit: int) -> tuple[str, bytes]:
    """What gunicorn makes of `data` with nothing after it: ("ok", body) when it parsed the request and read its
    body (up to body_limit + 1 bytes, as frontend.body does), ("refused", b"") when it raised its own error,
    ("starved", b"") when it asked for a byte more than `data` (whatever it did next)."""
    source = Source(data)
    outcome, body = "ok", b""
    try:
        request = next(RequestParser(CFG, source, ("127.0.0.1", 1)))
        declared = next((int(v) for n, v in request.headers if n == "CONTENT-LENGTH"), None)
        if declared is None or declared <= body_limit:  # over it, the app answers 413 from the header
            while len(body) <= body_limit:
                chunk = request.body.read(min(64, body_limit + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
    except Exception:  # noqa: BLE001 - StopIteration or any of gunicorn's errors: it refused the request
        outcome = "refused"
    return ("starved", b"") if source.starved else (outcome, body)


def feed_all(data: bytes, cuts: list[int], limit: int = LIMIT) -> tuple[RequestFramer, bytes]:
    """Feed `data` in pieces at `cuts`; stop at the first final verdict. Returns the framer and what it saw."""
    framer = RequestFramer(limit, max_head=2048)
    points = sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]
    start = 0
    for point in points:
        if framer.feed(data[start:point]) is not Verdict.NEED_MORE:
            return framer, data[:point]
        start = point
    return framer, data


def request_bytes(body: bytes, chunks: list[int] | None, extra_headers: list[bytes], trailer: bool,
                  expect: bool = False) -> bytes:
    head = [b"POST /v1/predict HTTP/1.1", b"Host: x", b"Content-Type: application/json", *extra_headers]
    if expect:
        head.append(b"Expect: 100-continue")
    if chunks is None:
        head.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(head) + b"\r\n\r\n" + body
    head.append(b"Transfer-Encoding: chunked")
    out, position = [], 0
    for size in chunks:
        piece = body[position : position + size]
        position += len(piece)
        if piece:
            out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    if position < len(body):
        out.append(b"%x\r\n" % (len(body) - position) + body[position:] + b"\r\n")
    out.append(b"0\r\nX-Trailer: 1\r\n\r\n" if trailer else b"0\r\n\r\n")
    return b"\r\n".join(head) + b"\r\n\r\n" + b"".join(out)


# Bodies of any length up to 2.5 x the limit (st.binary alone rarely goes past a few dozen bytes), of any bytes.
BODIES = st.builds(lambda pattern, length: (pattern * (length // len(pattern) + 1))[:length],
                   st.binary(min_size=1, max_size=16), st.integers(0, 300) | st.integers(1100, 1300))
HEADERS = st.lists(st.sampled_from([b"Accept: */*", b"X-Request-Id: abc", b"Content-Encoding: gzip",
                                    b"User-Agent: t/1"]), max_size=3)
# Where the bytes arrive split: a few random places, or every byte (the framer then decides at the earliest byte).
CUTS = st.one_of(st.lists(st.integers(0, 2000), max_size=12), st.just(list(range(1, 2000))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES, st.one_of(st.none(), st.lists(st.integers(1, 120), max_size=8)), HEADERS,
       st.booleans(), CUTS, st.binary(max_size=40))
def test_a_valid_request_is_ready_exactly_when_its_last_byte_arrives(body, chunks, headers, trailer, cuts, after):
    request = request_bytes(body, chunks, headers, trailer)
    framer, seen = feed_all(request + after, cuts)
    if len(body) > LIMIT:  # the app refuses it (413) once it has read LIMIT + 1 bytes, or from its Content-Length
        if framer.verdict is Verdict.READY:  # a chunked body a little over: buffered whole all the same
            assert chunks is not None and len(body) <= LIMIT + READ_AHEAD and framer.end == len(request)
            seen = bytes(framer.buffer[: framer.end])
        else:
            assert framer.verdict is Verdict.HAND_OFF and not framer.body_complete
        outcome, read = gunicorn_reads(seen, LIMIT)
        assert outcome == "ok" and len(read) == (0 if chunks is None else LIMIT + 1)
        return
    assert framer.verdict is Verdict.READY and framer.end == len(request)
    assert len(seen) >= len(request)
    outcome, read = gunicorn_reads(bytes(framer.buffer[: framer.end]), LIMIT)
    assert (outcome, read) == ("ok", body)


def mangle(data: bytes, position: int, replacement: bytes) -> bytes:
    position %= max(1, len(data))
    return data[:position] + replacement + data[position + len(replacement) :]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES, st.one_of(st.none(), st.lists(st.integers(1, 60), max_size=6)), HEADERS,
       st.booleans(), st.integers(0, 10_000), st.sampled_from([b"zz", b"\n", b"\r", b"\r\n", b";", b"0", b" ", b":",
                                                            b"-1", b"\r\n\r\n", b"G", b"\x00", b"fffffff"]),
       CUTS)
@example(b"abc", [3], [], False, 0, b"\r\n", [])
def test_whatever_the_bytes_the_framer_never_hands_over_a_request_gunicorn_would_wait_on(
        body, chunks, headers, trailer, position, replacement, cuts):
    # The malformed variants of real requests: a bad chunk size, a missing CRLF, a bare LF, a stray colon...
    data = mangle(request_bytes(body, chunks, headers, trailer), position, replacement)
    framer, seen = feed_all(data, cuts)
    if framer.verdict is Verdict.READY:
        seen = bytes(framer.buffer[: framer.end])
    if framer.verdict in (Verdict.READY, Verdict.HAND_OFF):
        assert gunicorn_reads(seen, LIMIT)[0] != "starved"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), CUTS)
def test_random_bytes_never_starve_gunicorn_and_never_buffer_without_bound(data, cuts):
    framer, seen = feed_all(data, cuts)
    if framer.verdict is Verdict.NEED_MORE:
        assert len(framer.buffer) <= 2048 + 2 * LIMIT + 64 * 1024 + 8192
    elif framer.verdict is not Verdict.REFUSE:
        assert gunicorn_reads(bytes(framer.buffer[: framer.end]) if framer.verdict is Verdict.READY else seen,
                              LIMIT)[0] != "starved"


def test_a_head_without_end_is_refused_past_its_limit():
    framer = RequestFramer(LIMIT, max_head=2048)
    assert framer.feed(b"GET / HTTP/1.1\r\nX-A: " + b"a" * 1000) is Verdict.NEED_MORE
    assert framer.feed(b"a" * 1100) is Verdict.REFUSE and framer.refusal.status == 431


def test_a_body_over_the_limit_is_handed_over_from_its_header():
    framer = RequestFramer(LIMIT)
    verdict = framer.feed(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
    assert verdict is Verdict.HAND_OFF and not framer.body_complete


def test_tiny_chunks_are_refused_past_the_framing_allowance():
    framer = RequestFramer(100_000)
    verdict = framer.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    while verdict is Verdict.NEED_MORE:
        verdict = framer.feed(b"1\r\nx\r\n" * 1000)
    assert verdict is Verdict.REFUSE and framer.refusal.status == 413
    assert len(framer.buffer) < 6 * 100_000


@pytest.mark.parametrize("head, expected", [
    (b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),
    (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", False),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", False),
])
def test_expect_continue_is_noticed_for_http_1_1(head, expected):
    framer = RequestFramer(LIMIT)
    assert framer.feed(head) is Verdict.NEED_MORE and framer.head_complete
    assert framer.expects_continue is expected


def test_pipelined_requests_end_where_the_first_one_does():
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    framer = RequestFramer(LIMIT)
    assert framer.feed(first + b"GET /readyz HTTP/1.1\r\n") is Verdict.READY and framer.end == len(first)
