"""frontend.parse: every accepted request form, and every rejected one with the right error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from frontend.errors import (
    BatchTooLarge,
    InvalidImage,
    InvalidInput,
    InvalidJSON,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from frontend.parse import Limits, decode_base64_image, parse_predict
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.frontend.helpers import b64, png_bytes

LIMITS = Limits(max_batch=4, max_image_pixels=1_000_000)


@pytest.fixture(scope="module")
def digit_png(mnist_test) -> bytes:
    return png_bytes(mnist_test[0][0])


def test_json_instances(digit_png):
    body = json.dumps({"instances": [[[0.0] * 28] * 28, [[255] * 28] * 28]}).encode()
    out = parse_predict("application/json", body, None, LIMITS)
    assert out.shape == (2, 28, 28, 1)


def test_json_inputs_columnar_and_named():
    batch = [[[0] * 28] * 28]
    assert parse_predict("application/json", json.dumps({"inputs": batch}).encode(), None, LIMITS).shape[0] == 1
    named = json.dumps({"inputs": {"images": batch}}).encode()
    assert parse_predict("application/json; charset=utf-8", named, None, LIMITS).shape[0] == 1


def test_json_base64_image_data_url_and_b64_object(digit_png):
    for value in (b64(digit_png), "data:image/png;base64," + b64(digit_png), {"b64": b64(digit_png)}):
        key = "images" if isinstance(value, dict) else "image"
        payload = {key: [value] if key == "images" else value}
        assert parse_predict("application/json", json.dumps(payload).encode(), None, LIMITS).shape == (1, 28, 28, 1)


def test_raw_png_body_and_multipart_files(digit_png):
    assert parse_predict("image/png", digit_png, None, LIMITS).shape == (1, 28, 28, 1)
    assert parse_predict("multipart/form-data; boundary=x", b"", [digit_png, digit_png], LIMITS).shape[0] == 2


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "image/gif"])
def test_other_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaType):
        parse_predict(content_type, b"{}", None, LIMITS)


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[" * 100_000])
def test_broken_json_is_invalid_json(body):
    with pytest.raises(InvalidJSON):
        parse_predict("application/json", body, None, LIMITS)


@pytest.mark.parametrize("payload", [[], 3, {}, {"instances": [], "image": "x"}, {"instances": {}},
                                     {"images": "x"}, {"inputs": {"x": []}},
                                     {"instances": [[[0] * 28] * 28], "signature_name": "other"}])
def test_wrong_json_shapes_are_invalid_input(payload):
    with pytest.raises(InvalidInput):
        parse_predict("application/json", json.dumps(payload).encode(), None, LIMITS)


def test_batch_limit_is_checked_before_decoding():
    payload = {"images": ["not even base64"] * 5}
    with pytest.raises(BatchTooLarge):
        parse_predict("application/json", json.dumps(payload).encode(), None, LIMITS)
    with pytest.raises(BatchTooLarge):
        parse_predict("application/json", json.dumps({"instances": [0] * 5}).encode(), None, LIMITS)
    with pytest.raises(BatchTooLarge):
        parse_predict("multipart/form-data", b"", [b"x"] * 5, LIMITS)


def test_multipart_without_files_is_invalid_input():
    with pytest.raises(InvalidInput, match="no image"):
        parse_predict("multipart/form-data", b"", [], LIMITS)


@pytest.mark.parametrize("value", ["***", 5, None, "data:image/png,abc", "data:image/png;base64,@@",
                                   "aGVsbG8=\n\x00", "aGVs\nbG8=\v", "aGVs-bG8="])
def test_bad_base64_is_invalid_input(value):
    with pytest.raises(InvalidInput):
        decode_base64_image(value, 0)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(1, 100), st.sampled_from(["\n", "\r\n", " ", "\t"]),
       st.booleans())
def test_line_wrapped_base64_decodes_like_the_unwrapped_text(data, width, newline, data_url):
    # `base64 file.png` prints lines of 76 characters; MIME encoders wrap too. Whitespace carries nothing in base64.
    text = b64(data)
    wrapped = newline.join(text[i : i + width] for i in range(0, len(text), width)) + newline
    if data_url:
        wrapped = "data:image/png;base64," + wrapped
    assert decode_base64_image(wrapped, 0) == data


def test_the_base64_command_output_of_a_png_is_predicted(digit_png):
    import base64 as stdlib_base64

    printed = stdlib_base64.encodebytes(digit_png).decode()  # what `base64 digit.png` prints: 76-column lines
    assert "\n" in printed.strip()
    out = parse_predict("application/json", json.dumps({"image": printed}).encode(), None, LIMITS)
    assert out.shape == (1, 28, 28, 1)


def test_base64_of_garbage_is_invalid_image():
    with pytest.raises(InvalidImage):
        parse_predict("application/json", json.dumps({"image": b64(b"garbage")}).encode(), None, LIMITS)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=512), st.sampled_from(["application/json", "image/png", "image/jpeg",
                                                 "multipart/form-data", "text/plain"]))
def test_any_body_parses_or_raises_a_client_error(body, content_type):
    try:
        out = parse_predict(content_type, body, [body], LIMITS)
    except (InvalidInput, UnsupportedMediaType, BatchTooLarge):
        return
    except Exception as error:  # PayloadTooLarge is fine too; anything else is a bug
        from frontend.errors import PayloadTooLarge

        assert isinstance(error, PayloadTooLarge)
        return
    assert out.ndim == 4 and np.isfinite(out).all()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["instances", "inputs", "image", "images", "signature_name", "x"]),
                       st.recursive(st.none() | st.integers(-3, 300) | st.floats(allow_nan=True) | st.text(max_size=5),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                                         max_size=2),
                                    max_leaves=20)))
def test_any_json_object_parses_or_raises_a_client_error(payload):
    from frontend.errors import FrontendError, PayloadTooLarge

    try:
        parse_predict("application/json", json.dumps(payload).encode(), None, LIMITS)
    except FrontendError as error:
        assert isinstance(error, InvalidInput | UnsupportedMediaType | PayloadTooLarge)


def test_json_with_more_values_than_a_full_batch_is_refused_before_parsing(monkeypatch):
    # 4 MiB of `0,0,0,...` parsed into two million list items (about 60 MiB) before its shape was refused.
    import frontend.parse as parse

    monkeypatch.setattr(parse.orjson, "loads", lambda body: pytest.fail("parsed"))
    body = b'{"instances": [' + b"0," * 2_000_000 + b"0]}"
    with pytest.raises(PayloadTooLarge, match="more than 4160 values"):  # LIMITS: 4 images of 28x28, + 1024
        parse_predict("application/json", body, None, LIMITS)
