"""gzip: compressed requests (bounded inflation, bombs get 413 fast) and compressed responses."""

from __future__ import annotations

import gzip
import io
import json
import time
import zlib

import pytest
from frontend.compression import accepts_gzip, inflate_gzip
from frontend.errors import InvalidInput, PayloadTooLarge


def test_inflate_round_trip_and_concatenated_members():
    data = b"hello " * 1000
    assert inflate_gzip(io.BytesIO(gzip.compress(data)), 10_000, 10_000) == data
    assert inflate_gzip(io.BytesIO(gzip.compress(b"ab") + gzip.compress(b"cd")), 100, 100) == b"abcd"


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"x" * 100)[:-12], b"\x1f\x8b"])
def test_broken_gzip_is_invalid_input(body):
    with pytest.raises(InvalidInput):
        inflate_gzip(io.BytesIO(body), 10_000, 10_000)


def test_gzip_bomb_stops_at_the_limit_quickly():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(128)) + compressor.flush()  # 128 MiB of zeros, ~130 KB
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge):
        inflate_gzip(io.BytesIO(bomb), len(bomb) + 1, 1_000_000)
    assert time.perf_counter() - started < 2.0  # stopped near 1 MB, not after inflating 128 MiB


def test_accept_encoding_parsing():
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("br")
    assert not accepts_gzip("")


def test_gzip_request_reaches_the_parser(client):
    body = gzip.compress(json.dumps({"instances": [[[0] * 28] * 27]}).encode())
    response = client.post("/v1/predict", data=body, headers={"Content-Encoding": "gzip",
                                                               "Content-Type": "application/json"})
    assert response.status_code == 400 and "shape" in response.json["error"]["message"]


def test_gzip_bomb_request_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=100_000).test_client()
    bomb = gzip.compress(b"[" + b" " * 10_000_000 + b"]")
    assert len(bomb) < 100_000
    response = client.post("/v1/predict", data=bomb, headers={"Content-Encoding": "gzip",
                                                               "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


def test_bad_or_unknown_encodings(client):
    response = client.post("/v1/predict", data=b"garbage", headers={"Content-Encoding": "gzip",
                                                                      "Content-Type": "application/json"})
    assert response.status_code == 400
    response = client.post("/v1/predict", data=b"x", headers={"Content-Encoding": "br",
                                                                "Content-Type": "application/json"})
    assert response.status_code == 415


def test_responses_are_gzipped_when_accepted_and_large_enough(client):
    plain = client.get("/openapi.json")
    zipped = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["Vary"]
    assert json.loads(gzip.decompress(zipped.data)) == plain.json
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers
