"""The request body, read once, whole and bounded, before Flask sees it.

Whatever the framing (Content-Length or chunked) and the encoding (identity or gzip), the app then reads
`wsgi.input` from memory: at most `MNIST_MAX_BODY_BYTES`, with a true CONTENT_LENGTH. Problems are not answered
here: the domain error (413 too large, 400 malformed or cut short, 415 unknown encoding) is left in the WSGI
environ and raised by a before_request hook, so it is mapped and counted like every other error.

Why not leave it to werkzeug: a chunked body has no length up front. werkzeug caps such a stream at the limit
without a word (the app then parsed a truncated body: a 200, or "input data is empty"), and a malformed chunk
surfaced as an exception from the server's input stream in the middle of the view (a 500 with a traceback).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import Request

from frontend.compression import inflate_gzip
from frontend.errors import FrontendError, InvalidInput, PayloadTooLarge, UnsupportedMediaType

ENVIRON_ERROR = "mnist.request_body_error"
CHUNK = 64 * 1024


def read_body(read: Callable[[int], bytes], declared: int | None, limit: int) -> bytes:
    """The whole body from `read` (a WSGI input's read): `declared` bytes, or up to its end when the length is
    not known (chunked); more than `limit` bytes is PayloadTooLarge, without reading past limit + 1."""
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is larger than the {limit} allowed")
    wanted = limit + 1 if declared is None else declared
    # A sized body is asked for whole: gunicorn then hands over its buffer in one copy (in small steps it copied
    # what was left of it at every step). A chunked one is read in steps, so as not to ask past limit + 1.
    step = wanted if declared is not None else CHUNK
    parts: list[bytes] = []
    got = 0
    while got < wanted:
        try:
            chunk = read(min(step, wanted - got))
        except Exception as exc:  # noqa: BLE001 - whatever the server raises here is about the client's bytes
            # gunicorn raises InvalidChunkSize / ChunkMissingTerminator / NoMoreData, werkzeug ClientDisconnected,
            # a socket OSError or a timeout: all mean the body cannot be had, none is a bug of ours.
            raise InvalidInput(f"request body is malformed or incomplete ({type(exc).__name__})") from None
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    if declared is None and got > limit:
        raise PayloadTooLarge(f"request body (chunked) is larger than the {limit} bytes allowed")
    if declared is not None and got < declared:
        raise InvalidInput(f"request body ended after {got} of its {declared} bytes")
    return b"".join(parts)


def declared_length(environ: dict) -> int | None:
    """CONTENT_LENGTH as an int; None when absent (a chunked body, or no body). A bad value is the client's."""
    text = (environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInput("Content-Length is not a number")
    return int(text)


def has_unsized_body(environ: dict) -> bool:
    """A body without a length: chunked (the server de-chunks it and ends the stream)."""
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() or (
        environ.get("CONTENT_LENGTH") in (None, "") and bool(environ.get("wsgi.input_terminated"))
        and environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH"))


def decode_body(environ: dict, limit: int) -> bytes:
    """Read (and gunzip) the body of one request; raises the domain error that answers it."""
    encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; use gzip")
    declared = declared_length(environ)
    if declared is None and not has_unsized_body(environ):
        return b""
    raw = read_body(environ["wsgi.input"].read, declared, limit)
    if encoding in ("gzip", "x-gzip"):
        return inflate_gzip(io.BytesIO(raw), limit, limit)
    return raw


class RequestBodyMiddleware:
    """Puts the decoded body (or the error that answers the request) into the environ before the app runs."""

    def __init__(self, app: Callable, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = b""
        try:
            body = decode_body(environ, self.max_bytes())
        except FrontendError as error:
            environ[ENVIRON_ERROR] = error
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        # The app sees a plain in-memory body: no framing or encoding is left for it (or werkzeug) to undo.
        for key in ("HTTP_TRANSFER_ENCODING", "HTTP_CONTENT_ENCODING"):
            environ.pop(key, None)
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)


def raise_body_error(request: Request | Any) -> None:
    error = request.environ.get(ENVIRON_ERROR)
    if error is not None:
        raise error
