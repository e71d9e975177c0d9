"""gzip in both directions.

Requests: `inflate_gzip` (called by frontend.body on a body already read and bounded) stops as soon as the
output passes the body limit, so a gzip bomb costs at most the limit in memory and a fraction of a second.
Responses: compressed when the client accepts gzip and the body is worth it.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any

from flask import Request, Response

from frontend.errors import InvalidInput, PayloadTooLarge

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
