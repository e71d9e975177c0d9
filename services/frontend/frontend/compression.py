"""gzip in both directions.

Requests: a WSGI middleware inflates `Content-Encoding: gzip` bodies before Flask sees them, reading the
compressed body in chunks and stopping as soon as the output passes the body limit, so a gzip bomb costs
at most `max_bytes` of memory and a fraction of a second. Problems are not answered here: they are left in
the WSGI environ and raised as domain errors by a before_request hook, so they are mapped and counted like
every other error. Responses: compressed when the client accepts gzip and the body is worth it.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from flask import Request, Response

from frontend.errors import FrontendError, InvalidInput, PayloadTooLarge, UnsupportedMediaType

ENVIRON_ERROR = "mnist.request_encoding_error"
CHUNK = 64 * 1024
MIN_RESPONSE_BYTES = 1024
COMPRESSIBLE = ("application/json", "text/", "application/javascript", "image/svg+xml")


def inflate_gzip(stream: io.RawIOBase | Any, compressed_limit: int, max_bytes: int) -> bytes:
    """Decompress a gzip stream (possibly several members) into at most `max_bytes`, reading at most
    `compressed_limit` compressed bytes; raises PayloadTooLarge or InvalidInput."""
    out = bytearray()
    inflater = zlib.decompressobj(wbits=31)
    read = 0
    pending = False  # the current member has started but not ended
    while chunk := stream.read(CHUNK):
        read += len(chunk)
        if read > compressed_limit:
            raise PayloadTooLarge(f"compressed body larger than {compressed_limit} bytes")
        data = chunk
        while data:
            pending = True
            try:
                out += inflater.decompress(data, max_bytes + 1 - len(out))
            except zlib.error:
                raise InvalidInput("body is not valid gzip") from None
            if len(out) > max_bytes:
                raise PayloadTooLarge(f"decompressed body larger than {max_bytes} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:  # concatenated gzip members are legal
                data = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                pending = False
    if pending:
        raise InvalidInput("body is not valid gzip (truncated)")
    return bytes(out)


class GzipRequestMiddleware:
    def __init__(self, app: Callable, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding and encoding != "identity":
            body = b""
            try:
                if encoding not in ("gzip", "x-gzip"):
                    raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; use gzip")
                limit = self.max_bytes()
                declared = environ.get("CONTENT_LENGTH")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise PayloadTooLarge(f"compressed body larger than {limit} bytes")
                stream = environ["wsgi.input"]
                if declared and declared.isdigit():
                    stream = _Limited(stream, int(declared))
                elif not environ.get("wsgi.input_terminated"):
                    stream = io.BytesIO(b"")
                body = inflate_gzip(stream, limit, limit)
            except FrontendError as error:
                environ[ENVIRON_ERROR] = error
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_CONTENT_ENCODING", None)
            environ["mnist.request_was_gzip"] = True
        return self.app(environ, start_response)


class _Limited:
    """Reads at most `remaining` bytes of a WSGI input that may not signal its end itself."""

    def __init__(self, stream: Any, remaining: int) -> None:
        self._stream = stream
        self._remaining = remaining

    def read(self, size: int) -> bytes:
        if self._remaining <= 0:
            return b""
        data = self._stream.read(min(size, self._remaining))
        self._remaining -= len(data)
        return data


def raise_request_encoding_error(request: Request) -> None:
    error = request.environ.get(ENVIRON_ERROR)
    if error is not None:
        raise error


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = params.strip().lower()
            return not (quality.startswith("q=") and _zero(quality[2:]))
    return False


def _zero(text: str) -> bool:
    try:
        return float(text) == 0.0
    except ValueError:
        return False


def compress_response(request: Request, response: Response) -> Response:
    if (response.direct_passthrough or response.status_code < 200 or response.status_code in (204, 304)
            or "Content-Encoding" in response.headers
            or not accepts_gzip(request.headers.get("Accept-Encoding", ""))
            or not (response.mimetype or "").startswith(COMPRESSIBLE)):
        return response
    response.vary.add("Accept-Encoding")
    data = response.get_data()
    if len(data) < MIN_RESPONSE_BYTES:
        return response
    response.set_data(gzip.compress(data, compresslevel=5, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response
