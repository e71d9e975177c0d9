"""Turn real pictures of digits into MNIST-like inputs, and validate ready-made 28x28 arrays.

Pure functions (bytes or arrays in, float32 arrays out); every failure is an InvalidImage/InvalidInput/
PayloadTooLarge. The image path follows MNIST's own procedure: grayscale, ink white on black, crop to the
digit, scale to fit 20x20 keeping the aspect ratio, and centre the centre of mass in the 28x28 field.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from frontend.errors import InvalidImage, InvalidInput, PayloadTooLarge

SIDE = 28
BOX = 20
# Where MNIST puts the centre of mass (pixel-index coordinates): measured on the test set, 13.99 / 14.00.
CENTRE = 14.0
# Ink fainter than this (after contrast stretching) is paper texture or sensor noise, not digit: applied when
# faint pixels cover more than NOISY_SHARE of the picture (a photo). Clean digital images (MNIST files, canvas
# drawings) keep their anti-aliased edges and lose only JPEG-ringing-level values below CLEAN_FLOOR.
NOISE_FLOOR = 0.1
NOISY_SHARE = 0.10
CLEAN_FLOOR = 0.02
ACCEPTED_FORMATS = ("PNG", "JPEG")


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode PNG/JPEG bytes; the pixel count is checked before any pixel is decoded (image bombs)."""
    if not data:
        raise InvalidImage("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-readable files; their result is judged below
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(f"image of {width}x{height} pixels is larger than the {max_pixels} allowed")
            image.load()
    except (PayloadTooLarge, InvalidImage):
        raise
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image too large: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad files
        raise InvalidImage(f"not a readable PNG or JPEG image ({type(exc).__name__})") from None
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite a transparent image on a background that contrasts with its opaque pixels."""
    rgba = image.convert("RGBA")
    pixels = np.asarray(rgba, dtype=np.float32) / 255.0
    alpha = pixels[..., 3]
    opaque = alpha > 0.5
    if opaque.all():
        return rgba.convert("RGB")
    luminance = pixels[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # Dark strokes on a transparent canvas go on white; light strokes on black.
    ink_is_dark = bool(opaque.any()) and float(luminance[opaque].mean()) < 0.5
    background = (255, 255, 255, 255) if ink_is_dark else (0, 0, 0, 255)
    canvas = Image.new("RGBA", rgba.size, background)
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Upright (EXIF), alpha flattened, grayscale float32 in [0, 1]."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def ink_map(gray: np.ndarray) -> np.ndarray:
    """White-on-black ink in [0, 1]: inverted when the paper is light, contrast stretched, noise floored."""
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    ink = 1.0 - gray if float(np.median(border)) > 0.5 else gray
    background = float(np.median(ink))
    peak = float(ink.max())
    if peak - background < 0.1:  # nothing stands out from the paper
        return np.zeros_like(ink)
    ink = np.clip((ink - background) / (peak - background), 0.0, 1.0)
    faint_share = float(np.count_nonzero((ink > 0.0) & (ink < NOISE_FLOOR))) / ink.size
    ink[ink < (NOISE_FLOOR if faint_share > NOISY_SHARE else CLEAN_FLOOR)] = 0.0
    return ink


def mnist_normalize(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20x20 keeping aspect, centre by mass in 28x28; raises if there is no ink."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise InvalidImage("no digit found: the image is blank")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    patch = np.asarray(Image.fromarray(crop, mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS))
    patch = np.clip(patch, 0.0, 1.0)
    mass = float(patch.sum())
    if mass <= 0.0:
        raise InvalidImage("no digit found: the image is blank")
    ys, xs = np.indices(patch.shape)
    cy, cx = float((patch * ys).sum()) / mass, float((patch * xs).sum()) / mass
    top = min(max(round(CENTRE - cy), 0), SIDE - new_h)
    left = min(max(round(CENTRE - cx), 0), SIDE - new_w)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top : top + new_h, left : left + new_w] = patch
    return out


def image_to_mnist(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 [28, 28, 1] in [0, 1], white digit on black, MNIST-centred."""
    return mnist_normalize(ink_map(to_grayscale(decode_image(data, max_pixels))))[..., None]


def instances_to_array(instances: Any) -> np.ndarray:
    """Validate TF-Serving-style instances (28x28 or 28x28x1 each) -> float32 [N, 28, 28, 1] in [0, 1].

    JSON integers are read as 0-255 pixels, anything with a fraction (e.g. 0.5 or 1.0) as [0, 1] intensities;
    an instance may also be `{"images": <array>}` (TF Serving's named-input form).
    """
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    fast = _whole_batch(instances)
    if fast is not None:
        return fast
    arrays = [_one_instance(item, index) for index, item in enumerate(instances)]
    return np.stack(arrays).astype(np.float32, copy=False)[..., None]


def _whole_batch(instances: list) -> np.ndarray | None:
    """One numpy conversion for the common case (a clean batch of plain arrays); None sends the caller to the
    per-instance path, which also produces the precise error message."""
    if not all(isinstance(item, list) for item in instances):
        return None
    # numpy 2 raises (never warns) on ragged or odd input; warnings.catch_warnings is not thread-safe, so no
    # filter is touched here on the hot path of a threaded worker.
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.shape[1:] == (SIDE, SIDE, 1):
        array = array[..., 0]
    if array.shape[1:] != (SIDE, SIDE):
        return None
    # Integers only: a float batch may mix in all-integer instances, which mean 0-255 (decided per instance).
    if array.dtype.kind in "iu" and array.min() >= 0 and array.max() <= 255:
        return (array.astype(np.float32) / 255.0)[..., None]
    return None


def _one_instance(item: Any, index: int) -> np.ndarray:
    if isinstance(item, dict):
        if set(item) != {"images"}:
            raise InvalidInput(f"instance {index}: a named instance must have exactly the key 'images'")
        item = item["images"]
    if not isinstance(item, list):
        raise InvalidInput(f"instance {index}: expected a 28x28 array of numbers")
    try:
        array = np.asarray(item)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"instance {index}: ragged or non-numeric array") from None
    if array.shape == (SIDE, SIDE, 1):
        array = array[..., 0]
    if array.shape != (SIDE, SIDE):
        raise InvalidInput(f"instance {index}: shape {list(array.shape)}, expected [28, 28] or [28, 28, 1]")
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise InvalidInput(f"instance {index}: integer pixels must be in 0..255")
        return array.astype(np.float32) / 255.0
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise InvalidInput(f"instance {index}: float pixels must be finite and in [0, 1] (or send integers 0..255)")
        return array.astype(np.float32)
    raise InvalidInput(f"instance {index}: values must be numbers (floats in [0, 1] or integers 0..255)")
