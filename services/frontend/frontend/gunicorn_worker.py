"""gunicorn's gthread worker, with every request read whole on the worker's event loop before a thread takes it.

Why: gthread hands a connection to one of its few threads (MNIST_THREADS) as soon as its first byte arrives, and
the thread then blocks on the socket for as long as the client takes to send the rest, with no deadline. 32
connections sending their headers or body a byte at a time held every thread of a two-worker pod: /healthz went
unanswered for as long as they cared to keep going (the ingress buffers bodies, but in-cluster callers reach the
Service directly). Here the event loop reads a request (frontend.framing says where it ends) and a thread gets it
only when it is all in memory, so slow senders cost a buffer, not a thread:

- a request's head must arrive within MNIST_HEADER_TIMEOUT_S, its body within MNIST_BODY_TIMEOUT_S after that
  (408 otherwise; a connection that sent nothing is closed without a word);
- what the worker holds for requests being received is bounded: each connection's first FREE_BYTES, and beyond
  that MNIST_RECEIVE_BUFFER_BYTES for the whole worker (503 server_busy for a request that does not fit);
- the thread reads from that buffer; should the framing ever be wrong, its reads from the socket still stop at
  the request's deadline (DeadlineSocket), so no thread can wait on a client longer than that.

gunicorn's own error pages (400, 414, 431, 501...) are JSON like the app's. TLS and HTTP/2 connections, which
this deployment does not use (TLS ends at the ingress), are served as plain gthread does.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import http as gunicorn_http
from gunicorn import util
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

from frontend.config import load_from_env
from frontend.framing import RequestFramer, Verdict

FREE_BYTES = 16 * 1024  # per connection, outside the shared budget: a probe or a small request always fits
RECV_BYTES = 64 * 1024
SWEEP_EVERY_S = 0.25  # how often deadlines are checked (the event loop wakes at least once a second)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def json_error(status: int, code: str, message: str, reason: str | None = None) -> bytes:
    """A complete HTTP/1.1 response with the app's error body `{"error": {"code", "message"}}`; closes."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = reason or HTTPStatus(status).phrase
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, answering in JSON (gunicorn's 400/414/431/501 for requests it cannot parse)."""
    code = reason.lower().replace(" ", "_").replace("-", "_")
    util.write_nonblock(sock, json_error(status_int, code, mesg or reason, reason))


class DeadlineSocket:
    """The socket as a request's parser reads it: no read waits past the request's deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's read deadline has passed")
        previous = self.sock.gettimeout()
        self.sock.settimeout(left)
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(previous)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Receiving:
    """One request being received on the event loop."""

    def __init__(self, framer: RequestFramer, started: float, head_timeout_s: float) -> None:
        self.framer = framer
        self.deadline = started + head_timeout_s
        self.counted = 0  # bytes held against the worker's budget
        self.sent_continue = False


class BufferedThreadWorker(ThreadWorker):
    """gthread that starts a thread on a request only once the whole request is buffered (see module doc)."""

    def init_process(self) -> None:
        config = load_from_env()
        self.max_body = config["MAX_BODY_BYTES"]
        self.head_timeout_s = config["HEADER_TIMEOUT_S"]
        self.body_timeout_s = config["BODY_TIMEOUT_S"]
        self.budget_free = config["RECEIVE_BUFFER_BYTES"]
        self.receiving: dict[Any, Receiving] = {}
        self.next_sweep = 0.0
        # gunicorn writes its own error pages through util.write_error: this process only serves this app.
        util.write_error = write_json_error
        super().init_process()

    # --- receiving on the event loop ---------------------------------------------------------------------------------
    def enqueue_req(self, conn: Any) -> None:
        """Every path to a thread comes here (new connection, kept-alive one readable, pipelined leftovers): the
        thread gets the connection once its request is buffered."""
        if getattr(conn, "request_ready", False) or self.cfg.is_ssl or negotiation.prior_knowledge_allowed(
                self.cfg, conn.client):
            conn.request_ready = False
            super().enqueue_req(conn)
            return
        state = Receiving(RequestFramer(self.max_body), time.monotonic(), self.head_timeout_s)
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.sock.setblocking(False)
        self.receiving[conn] = state
        if leftover and self._take(conn, state, leftover):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: Any, _sock: Any) -> None:
        state = self.receiving.get(conn)
        if state is None:
            return
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:  # the client went away
            self._drop(conn)
            return
        self._take(conn, state, data)

    def _take(self, conn: Any, state: Receiving, data: bytes) -> bool:
        """Buffer `data`; True when the connection left the receiving state (handed to a thread, or closed)."""
        held = max(0, len(state.framer.buffer) + len(data) - FREE_BYTES)
        if held - state.counted > self.budget_free:
            self._answer(conn, 503, "server_busy",
                         "the server is receiving too many large requests at once; retry shortly")
            return True
        self.budget_free -= held - state.counted
        state.counted = held
        had_head = state.framer.head_complete
        verdict = state.framer.feed(data)
        if verdict is Verdict.NEED_MORE:
            if state.framer.head_complete and not had_head:
                state.deadline = time.monotonic() + self.body_timeout_s
                if state.framer.expects_continue and not state.sent_continue:
                    state.sent_continue = self._send(conn, CONTINUE)
            return False
        if verdict is Verdict.REFUSE:
            refusal = state.framer.refusal
            self._answer(conn, refusal.status, refusal.code, refusal.message)
            return True
        self._hand_to_thread(conn, state)
        return True

    def _hand_to_thread(self, conn: Any, state: Receiving) -> None:
        self._forget(conn, state)
        if conn.parser is None:
            conn.parser = gunicorn_http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.sock = DeadlineSocket(conn.sock, state.deadline)
        conn.parser.unreader.unread(state.framer.buffer)  # copied once, into the parser's own buffer
        conn.body_complete = state.framer.body_complete
        conn.sent_continue = state.sent_continue
        conn.data_ready = True
        conn.request_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_EVERY_S
        for conn, state in [(c, s) for c, s in self.receiving.items() if s.deadline <= now]:
            if state.framer.buffer:
                what = "body" if state.framer.head_complete else "request line and headers"
                timeout = self.body_timeout_s if state.framer.head_complete else self.head_timeout_s
                self._answer(conn, 408, "request_timeout", f"the {what} did not arrive within {timeout:g} s")
            else:
                self._drop(conn)

    # --- in the thread -----------------------------------------------------------------------------------------------
    def handle_request(self, req: Any, conn: Any) -> bool:
        if getattr(conn, "sent_continue", False):
            req._expected_100_continue = False  # the event loop already said 100 Continue, before the body came
            conn.sent_continue = False
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        if not getattr(conn, "body_complete", True):
            # The rest of the body was never read (a 413, a malformed chunk): where the next request starts is
            # unknown, and draining it would hold this thread on the client.
            return False
        return super()._keepalive_after(conn, keepalive)

    # --- helpers -----------------------------------------------------------------------------------------------------
    def _forget(self, conn: Any, state: Receiving) -> None:
        self.receiving.pop(conn, None)
        self.budget_free += state.counted
        state.counted = 0
        with contextlib.suppress(KeyError, ValueError, OSError):  # never registered: complete in the leftovers
            self.poller.unregister(conn.sock)

    def _send(self, conn: Any, data: bytes) -> bool:
        try:
            return conn.sock.send(data) == len(data)
        except OSError:
            return False

    def _answer(self, conn: Any, status: int, code: str, message: str) -> None:
        self.log.warning("Refused request from %s: %s %s", conn.client, status, message)
        if self._send(conn, json_error(status, code, message)):
            # FIN after the answer; lingering to drain the client's rest would block the event loop.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
        self._drop(conn)

    def _drop(self, conn: Any) -> None:
        state = self.receiving.get(conn)
        if state is not None:
            self._forget(conn, state)
        self.nr_conns -= 1
        conn.close()
