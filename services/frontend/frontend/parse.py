"""Request bodies of POST /v1/predict -> one float32 batch [N, 28, 28, 1]; pure, no Flask.

Four forms: JSON instances (TF Serving style), JSON base64 image(s), multipart image files, a raw image body.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from frontend.errors import BatchTooLarge, InvalidInput, InvalidJSON, PayloadTooLarge, UnsupportedMediaType
from frontend.preprocess import SIDE, DecodeBudget, images_to_mnist, instances_to_array

IMAGE_TYPES = ("image/png", "image/jpeg")
JSON_KEYS = ("instances", "inputs", "image", "images")
BASE64_LINE_BREAKS = ("\n", "\r", " ", "\t")
JSON_SLACK = 1024  # values beyond a full batch's pixels: keys, a signature name, data-URL commas
DROP_LINE_BREAKS = str.maketrans("", "", "".join(BASE64_LINE_BREAKS))


@dataclass(frozen=True)
class Limits:
    max_batch: int = 64
    max_image_pixels: int = 16_000_000
    max_request_pixels: int = 32_000_000
    decode_budget: DecodeBudget | None = None  # the worker's, shared by its threads; None: no shared bound


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json_body(body: bytes, max_values: int = 64 * SIDE * SIDE) -> Any:
    """JSON with at most about `max_values` values: each array item or object member but the first in its
    container follows a comma, so counting commas (in C, before parsing) bounds what parsing builds. A JSON
    array of numbers takes about 8 bytes of memory per value against 2 in the body: unbounded, a 4 MiB body
    of `0,0,0,...` grew a worker by 60 MiB before its shape was refused."""
    if body.count(b",") > max_values:
        raise PayloadTooLarge(f"JSON body with more than {max_values} values")
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise InvalidJSON(f"body is not valid JSON: {exc}"[:300]) from None


def check_batch(count: int, limits: Limits) -> None:
    if count > limits.max_batch:
        raise BatchTooLarge(f"{count} images in one request; at most {limits.max_batch} are allowed")


def decode_base64_image(value: Any, index: int) -> bytes:
    """Plain base64, a data: URL (canvas.toDataURL) or TF Serving's {"b64": ...}."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        value = value["b64"]
    if not isinstance(value, str):
        raise InvalidInput(f"image {index}: expected a base64 string")
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise InvalidInput(f"image {index}: data URL must be base64-encoded")
    if any(space in value for space in BASE64_LINE_BREAKS):
        # What the `base64` command and MIME encoders print: lines of 76 characters. Whitespace carries nothing
        # in base64, so it is dropped; every other stray character is still refused below.
        value = value.translate(DROP_LINE_BREAKS)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"image {index}: not valid base64") from None


def images_to_batch(images: list[bytes], limits: Limits) -> np.ndarray:
    check_batch(len(images), limits)
    if not images:
        raise InvalidInput("no image in the request")
    return images_to_mnist(images, limits.max_image_pixels, limits.max_request_pixels, limits.decode_budget)


def json_to_batch(payload: Any, limits: Limits) -> np.ndarray:
    if not isinstance(payload, dict):
        raise InvalidInput("JSON body must be an object with one of: " + ", ".join(JSON_KEYS))
    present = [key for key in JSON_KEYS if key in payload]
    if len(present) != 1:
        raise InvalidInput("JSON body must have exactly one of: " + ", ".join(JSON_KEYS))
    signature = payload.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise InvalidInput("only signature_name 'serving_default' is served")
    key = present[0]
    value = payload[key]
    if key == "image":
        return images_to_batch([decode_base64_image(value, 0)], limits)
    if key == "images":
        if not isinstance(value, list):
            raise InvalidInput("'images' must be a list of base64 strings")
        check_batch(len(value), limits)
        return images_to_batch([decode_base64_image(item, i) for i, item in enumerate(value)], limits)
    if key == "inputs" and isinstance(value, dict):  # TF Serving's columnar form: {"images": batch}
        if set(value) != {"images"}:
            raise InvalidInput("'inputs' as an object must have exactly the key 'images'")
        value = value["images"]
    if not isinstance(value, list):
        raise InvalidInput(f"'{key}' must be a list of 28x28 arrays")
    check_batch(len(value), limits)
    return instances_to_array(value)


def parse_predict(content_type: str | None, body: bytes, files: list[bytes] | None, limits: Limits) -> np.ndarray:
    """Dispatch on the media type; `files` are the multipart file parts (already split by the web layer)."""
    kind = media_type(content_type)
    if kind == "application/json" or kind.endswith("+json"):
        # Every value a valid request can hold: the pixels of a full batch (commas in base64 data URLs: one each).
        return json_to_batch(parse_json_body(body, limits.max_batch * SIDE * SIDE + JSON_SLACK), limits)
    if kind in IMAGE_TYPES:
        return images_to_batch([body], limits)
    if kind == "multipart/form-data":
        return images_to_batch(files or [], limits)
    raise UnsupportedMediaType(
        f"Content-Type {kind or '(none)'} is not accepted; send application/json, multipart/form-data, "
        "image/png or image/jpeg"
    )
