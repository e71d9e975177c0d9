"""Where one HTTP/1.1 request ends in the bytes received so far; pure, no sockets.

The gunicorn worker (frontend.gunicorn_worker) reads each request on its event loop and gives it to a thread only
once `RequestFramer.feed` says that everything the request needs is buffered. It mirrors gunicorn's own parser
(gunicorn.http.message, .body) in one respect only: how many bytes the request occupies. Everything else (is the
request line valid, are the header names tokens...) is left to gunicorn, which then finds its error in the
buffered bytes. The property test in tests/frontend/test_framing.py holds the contract: whenever the verdict is
READY or HAND_OFF, gunicorn's parser fed exactly the buffered bytes never asks for one more.

Cost: each byte is scanned a bounded number of times (scans resume where the last one stopped), and what is
buffered is bounded: the head by `max_head`, a body by its limit plus the chunk framing allowed around it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

CRLF = b"\r\n"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# gunicorn's own bound on a chunk-size line (limit_request_field_size, default 8190) and on trailers. Past it
# gunicorn refuses the line without reading more, so handing it over at that point is safe.
MAX_CHUNK_LINE = 8192
MAX_TRAILERS = 8192
# gunicorn's Body.read asks its chunked reader for at least this much at a time, whatever the app asked for: a
# chunked body handed over as too large must have this much more than the limit buffered.
READ_AHEAD = 1024


class Verdict(enum.Enum):
    NEED_MORE = "need more bytes"
    READY = "the whole request is buffered"
    HAND_OFF = "incomplete, but gunicorn or the app refuses it from what is buffered"
    REFUSE = "the worker answers it itself"


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


class RequestFramer:
    """Feed the bytes of a connection as they come; `feed` says when the request they start is complete.

    READY: `end` is where the request ends (bytes after it are the next, pipelined request). HAND_OFF: the
    request is incomplete but gunicorn or the app refuses it without reading further (a malformed head or chunk,
    a body over the limit: `body_complete` is False). REFUSE: `refusal` says what to answer.
    """

    def __init__(self, max_body: int, max_head: int = 64 * 1024) -> None:
        self.max_body = max_body
        self.max_head = max_head
        # Chunk framing (size lines, CRLFs) a sender may add around the body: generous for real senders, a bound
        # for one that sends the body a byte per chunk.
        self.max_framing = max_body // 2 + 64 * 1024
        self.buffer = bytearray()
        self.verdict = Verdict.NEED_MORE
        self.end = 0
        self.refusal: Refusal | None = None
        self.head_end: int | None = None
        self.body_complete = True
        self.expects_continue = False
        self._scanned = 0  # where the search for the end of the head resumes
        self._length: int | None = None
        self._chunked = False
        self._pos = 0  # chunked: where parsing resumes
        self._state = "size"  # chunked: size, data, crlf, trailers
        self._remaining = 0  # chunked: bytes left in the current chunk
        self._decoded = 0  # chunked: body bytes buffered

    @property
    def head_complete(self) -> bool:
        return self.head_end is not None

    def feed(self, data: bytes) -> Verdict:
        if self.verdict is not Verdict.NEED_MORE:
            raise RuntimeError("feed after a final verdict")
        self.buffer += data
        if self.head_end is None:
            self._find_head()
        if self.head_end is not None and self.verdict is Verdict.NEED_MORE:
            self._find_body_end()
        return self.verdict

    # --- the head --------------------------------------------------------------------------------------------------
    def _find_head(self) -> None:
        start = max(0, self._scanned - 3)
        end = self.buffer.find(b"\r\n\r\n", start)
        bare_lf = self._bare_lf(start, end if end >= 0 else len(self.buffer))
        if bare_lf:  # gunicorn refuses a bare LF as soon as it sees it
            self._hand_off(body_complete=False)
            return
        if end < 0:
            self._scanned = len(self.buffer)
            if len(self.buffer) > self.max_head:
                self._refuse(431, "request_header_fields_too_large",
                             f"request line and headers take more than {self.max_head} bytes")
            return
        self.head_end = end + 4
        self._read_framing(bytes(self.buffer[: end]))

    def _bare_lf(self, start: int, stop: int) -> bool:
        index = self.buffer.find(b"\n", start, stop)
        while index >= 0:
            if index == 0 or self.buffer[index - 1] != 0x0D:
                return True
            index = self.buffer.find(b"\n", index + 1, stop)
        return False

    def _read_framing(self, head: bytes) -> None:
        """Content-Length / Transfer-Encoding / Expect, or a hand-off where gunicorn will refuse the head."""
        if head.startswith(CRLF):  # one empty line before the request line is allowed
            head = head[2:]
        request_line, *lines = head.split(CRLF)
        version = request_line.rsplit(b" ", 1)[-1]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or not TOKEN_BYTES.issuperset(name):
                self._hand_off(body_complete=False)  # gunicorn refuses the header
                return
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.extend(part.strip(b" \t").lower() for part in value.split(b","))
            elif name == b"expect" and value.lower() == b"100-continue" and version == b"HTTP/1.1":
                self.expects_continue = True
        if codings:
            if (codings[-1] != b"chunked" or codings.count(b"chunked") != 1 or lengths
                    or version != b"HTTP/1.1"):
                self._hand_off(body_complete=False)  # gunicorn answers 400/501 from the head
                return
            self._chunked = True
            self._pos = self.head_end
        elif lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():
                self._hand_off(body_complete=False)
                return
            self._length = int(lengths[0])
            if self._length > self.max_body:  # the app answers 413 from the header, without reading the body
                self._hand_off(body_complete=False)
        else:
            self._length = 0

    # --- the body --------------------------------------------------------------------------------------------------
    def _find_body_end(self) -> None:
        if self._length is not None:
            if len(self.buffer) >= self.head_end + self._length:
                self._ready(self.head_end + self._length)
            return
        self._walk_chunks()

    def _walk_chunks(self) -> None:
        buffer = self.buffer
        while self.verdict is Verdict.NEED_MORE:
            if self._pos - self.head_end - self._decoded > self.max_framing:
                self._refuse(413, "payload_too_large", "chunked body with more framing than data")
                return
            if self._state == "size":
                line_end = buffer.find(CRLF, self._pos)
                if line_end < 0:
                    if len(buffer) - self._pos > MAX_CHUNK_LINE:
                        self._hand_off(body_complete=False)  # gunicorn: chunk-size line too long
                    return
                size_text = bytes(buffer[self._pos : line_end]).split(b";", 1)[0].rstrip(b" \t")
                if not size_text or not HEX_DIGITS.issuperset(size_text):
                    self._hand_off(body_complete=False)  # gunicorn: invalid chunk size
                    return
                self._pos = line_end + 2
                self._remaining = int(size_text, 16)
                self._state = "data" if self._remaining else "trailers"
            elif self._state == "data":
                take = min(len(buffer) - self._pos, self._remaining)
                self._pos += take
                self._remaining -= take
                self._decoded += take
                if self._decoded > self.max_body + READ_AHEAD:  # the app sees it is too large from this alone
                    self._hand_off(body_complete=False)
                    return
                if self._remaining:
                    return
                self._state = "crlf"
            elif self._state == "crlf":
                if len(buffer) - self._pos < 2:
                    return
                if buffer[self._pos : self._pos + 2] != CRLF:
                    self._hand_off(body_complete=False)  # gunicorn: chunk not followed by CRLF
                    return
                self._pos += 2
                self._state = "size"
            else:  # trailers: CRLF alone, or header lines up to CRLFCRLF
                if len(buffer) - self._pos < 2:
                    return
                if buffer[self._pos : self._pos + 2] == CRLF:
                    self._ready(self._pos + 2)
                    return
                end = buffer.find(b"\r\n\r\n", self._pos)
                if self._bare_lf(self._pos, end if end >= 0 else len(buffer)):
                    self._hand_off(body_complete=False)
                elif end >= 0:
                    self._ready(end + 4)
                elif len(buffer) - self._pos > MAX_TRAILERS:
                    self._refuse(431, "request_header_fields_too_large", "chunked trailers too large")
                return

    # --- verdicts --------------------------------------------------------------------------------------------------
    def _ready(self, end: int) -> None:
        self.verdict, self.end = Verdict.READY, end

    def _hand_off(self, body_complete: bool) -> None:
        self.verdict, self.end, self.body_complete = Verdict.HAND_OFF, len(self.buffer), body_complete

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.verdict, self.refusal = Verdict.REFUSE, Refusal(status, code, message)
