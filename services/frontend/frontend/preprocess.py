"""Turn real pictures of digits into MNIST-like inputs, and validate ready-made 28x28 arrays.

Pure functions (bytes or arrays in, float32 arrays out); every failure is an InvalidImage/InvalidInput/
PayloadTooLarge. The image path follows MNIST's own procedure: grayscale, ink white on black, crop to the
digit, scale to fit 20x20 keeping the aspect ratio, and centre the centre of mass in the 28x28 field.

What a picture may cost is known before any pixel is decoded: the header gives its size, and the request's
pictures together may not exceed a pixel budget (CPU). Decoding is the only step whose memory grows with the
picture, so it happens under a per-worker byte budget (`DecodeBudget`), in 8-bit gray where the format allows
it (JPEG decodes straight to gray at 1/2-1/8 scale), and the picture is shrunk to WORK_SIDE before any float
array is made. Everything after that works on at most WORK_SIDE x WORK_SIDE pixels.
"""

from __future__ import annotations

import io
import math
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from frontend.errors import InvalidImage, InvalidInput, PayloadTooLarge, ServerBusy

SIDE = 28
BOX = 20
# Where MNIST puts the centre of mass (pixel-index coordinates): measured on the test set, 13.99 / 14.00.
CENTRE = 14.0
# Pictures are shrunk to this long side before any float work: a digit that fills a tenth of the frame still
# spans 50 pixels, more than the 20 it ends up in.
WORK_SIDE = 512
# Ink fainter than this (after contrast stretching) is paper texture or sensor noise, not digit: applied when
# faint pixels cover more than NOISY_SHARE of the picture (a photo). Clean digital images (MNIST files, canvas
# drawings) keep their anti-aliased edges and lose only JPEG-ringing-level values below CLEAN_FLOOR.
NOISE_FLOOR = 0.1
NOISY_SHARE = 0.10
CLEAN_FLOOR = 0.02
# Ink must stand this many noise standard deviations above the local paper (a photo's grain, measured per picture).
NOISE_SIGMAS = 4.0
# Noise (as a share of the ink's contrast) above which isolated specks are filtered out before the crop.
SPECKLE_NOISE = 0.01
# Shrunk copies made while decoding (Pillow reduces in steps to about twice WORK_SIDE, then resamples).
WORK_BYTES = 4 * 1024 * 1024
# The paper's shading is fitted on a grid of at most this many cells per side (it is smooth), in this many
# rounds, each leaving out the cells that stand this many spreads above the last fit (the ink).
BACKGROUND_GRID = 32
BACKGROUND_ROUNDS = 4
BACKGROUND_OUTLIER = 2.5
FLAT_BACKGROUND = 0.02  # a background varying less than this is taken as flat (clean images stay untouched)
# In a grainy picture, blobs of ink lighter than this share of the largest blob are grain, not pen; blobs are
# found on a grid of at most STROKE_GRID cells per side.
STROKE_SHARE = 0.1
STROKE_GRID = 128
ACCEPTED_FORMATS = ("PNG", "JPEG")
EXIF_ORIENTATION = 0x0112
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class DecodeBudget:
    """Bytes of decoded pictures that the threads of one worker may hold at once.

    A picture needs `decode_cost` bytes from the moment its pixels are decoded until it is shrunk to the working
    size. One bigger than the whole budget can never be decoded here (413); otherwise a thread waits up to
    `wait_s` for the others to finish theirs, then gives up (503, retry). So a worker's memory for pictures is
    bounded by the budget however many threads decode at once.
    """

    def __init__(self, capacity: int, wait_s: float, clock: Any = time.monotonic) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self._free = capacity
        self._clock = clock
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        return self._free

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.capacity:
            raise PayloadTooLarge(f"decoding this image needs {_mib(nbytes)} of memory; this server decodes at "
                                  f"most {_mib(self.capacity)} at once (send a smaller image, or a JPEG)")
        deadline = self._clock() + self.wait_s
        with self._changed:
            while self._free < nbytes:
                left = deadline - self._clock()
                if left <= 0:
                    raise ServerBusy(f"the server is busy decoding other images (waited {self.wait_s:g} s); "
                                     "retry shortly")
                self._changed.wait(left)
            self._free -= nbytes
        try:
            yield
        finally:
            with self._changed:
                self._free += nbytes
                self._changed.notify_all()


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read a PNG/JPEG header (no pixel is decoded); refuses more than `max_pixels` pixels (image bombs)."""
    if not data:
        raise InvalidImage("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-readable files; their result is judged below
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image too large: {exc}") from None
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad files
        raise InvalidImage(f"not a readable PNG or JPEG image ({type(exc).__name__})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image of {width}x{height} pixels is larger than the {max_pixels} allowed")
    return image


def shrink_on_decode(image: Image.Image) -> None:
    """JPEG only: decode straight to 8-bit gray, at the smallest 1/2..1/8 scale that keeps WORK_SIDE pixels on
    the long side (libjpeg skips the rest of the work). Other formats decode at full size."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = WORK_SIDE / max(width, height)
    if scale < 1:
        image.draft("L", (math.ceil(width * scale), math.ceil(height * scale)))
    else:
        image.draft("L", None)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info)


def decode_cost(image: Image.Image) -> int:
    """Bytes that decoding `image` (after shrink_on_decode) and turning it into gray take at the peak.

    Pillow keeps 1 byte per pixel for 1/L/P, 2 for 16-bit and 4 for everything else. Without alpha the gray copy
    adds 1. With alpha the gray picture and its alpha (1 each) are taken out before the decoded one is freed
    (a palette is first expanded to gray+alpha, 4 bytes, and then freed). The shrunk copies are small (WORK_BYTES).
    Measured peaks match (tests/frontend/test_preprocess.py).
    """
    mode = image.mode
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    per_pixel = stored + 1
    if _has_alpha(image):
        per_pixel = max(stored + 4, 4 + 2) if mode in ("P", "PA") else stored + 2
    width, height = image.size
    return width * height * per_pixel + WORK_BYTES


def _fit(image: Image.Image) -> Image.Image:
    """Shrink to WORK_SIDE on the long side (box-reduced first, then Lanczos); smaller pictures are kept."""
    width, height = image.size
    scale = WORK_SIDE / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _gray_of_alpha(image: Image.Image) -> np.ndarray:
    """Gray in [0, 1] of a transparent picture, composited on a background that contrasts with its opaque part.

    Done in 8-bit at full size, where each full-size picture is closed as soon as what is needed was taken out
    of it, and in floats only once shrunk. The shrink averages alpha-weighted gray, so the colour of transparent
    pixels never bleeds into the strokes.
    """
    if image.mode in ("P", "PA"):
        expanded = image.convert("LA")
        image.close()
        image = expanded
    gray = image.getchannel("L") if image.mode == "LA" else image.convert("L")
    alpha = image.getchannel("A")
    image.close()
    weighted = ImageChops.multiply(gray, alpha)
    del gray
    covered = np.asarray(_fit(alpha), dtype=np.float32) / 255.0
    del alpha
    weighted_small = np.asarray(_fit(weighted), dtype=np.float32) / 255.0
    coverage = float(covered.sum())
    # Dark strokes on a transparent canvas go on white; light strokes on black.
    ink_is_dark = coverage > 0 and float(weighted_small.sum()) / coverage < 0.5
    background = 1.0 if ink_is_dark else 0.0
    return np.clip(weighted_small + background * (1.0 - covered), 0.0, 1.0)


def load_gray(image: Image.Image) -> np.ndarray:
    """Decode an opened picture to upright gray float32 in [0, 1], at most WORK_SIDE on its long side; the
    picture is closed (its full-size pixels freed) on the way."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            orientation = image.getexif().get(EXIF_ORIENTATION)
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file fails here, after its header was read
        raise InvalidImage(f"not a readable PNG or JPEG image ({type(exc).__name__})") from None
    if _has_alpha(image):
        gray = _gray_of_alpha(image)
    else:
        full = image.convert("L")
        image.close()  # the decoded picture goes as soon as its gray copy exists
        gray = np.asarray(_fit(full), dtype=np.float32) / 255.0
    if orientation in ORIENTATIONS:  # EXIF: how the camera was held
        gray = np.asarray(Image.fromarray(gray, mode="F").transpose(ORIENTATIONS[orientation]))
    return gray


def local_background(ink: np.ndarray) -> np.ndarray:
    """The paper under bright-on-dark ink, as a smooth surface: a quadratic in (x, y) fitted to the median of
    each cell of a coarse grid, the cells that stand out (ink) left out of the fit, a few times over.

    A quadratic follows what lighting does to paper (a gradient, a vignette, a soft fall-off) and nothing a
    pen does. Unlike a local filter it has no window to tune against the stroke width, and no edge effects.
    """
    height, width = ink.shape
    step = max(1, math.ceil(max(height, width) / BACKGROUND_GRID))
    rows, cols = height // step, width // step
    if rows < 3 or cols < 3:
        return np.full_like(ink, float(np.median(ink)))
    cells = np.median(ink[: rows * step, : cols * step].reshape(rows, step, cols, step), axis=(1, 3)).ravel()
    ys, xs = np.mgrid[0:rows, 0:cols]
    terms = _quadratic_terms((ys.ravel() + 0.5) * step / height, (xs.ravel() + 0.5) * step / width)
    # First guess of the paper: the cells not far above the median (on a clean picture, exactly the flat ones).
    middle = float(np.median(cells))
    paper = cells <= middle + BACKGROUND_OUTLIER * 1.4826 * float(np.median(np.abs(cells - middle))) + 1e-6
    for _ in range(BACKGROUND_ROUNDS):
        coefficients = np.linalg.lstsq(terms[paper], cells[paper], rcond=None)[0]
        residual = cells - terms @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual[paper]))) + 1e-6
        paper = residual < BACKGROUND_OUTLIER * spread  # ink is bright here: only what stands above is left out
        if paper.sum() < terms.shape[1] * 2:
            return np.full_like(ink, float(np.median(ink)))
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    c = coefficients.astype(np.float32)
    return c[0] + c[1] * xx + c[2] * yy + c[3] * xx * xx + c[4] * xx * yy + c[5] * yy * yy


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _median3(values: np.ndarray) -> np.ndarray:
    """3x3 median: an isolated noisy pixel needs five bright neighbours to survive."""
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").filter(ImageFilter.MedianFilter(3)))


def ink_map(gray: np.ndarray) -> np.ndarray:
    """White-on-black ink in [0, 1], measured against the local paper: inverted when the ink is darker than the
    paper, the paper's own shading removed, contrast stretched, what the picture's noise could explain floored,
    and in a grainy picture the specks that are not part of any stroke dropped."""
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    # The ink is whatever departs furthest from the paper: darker on light paper (even a dim photo's), or lighter.
    dark_ink = paper - float(gray.min()) > float(gray.max()) - paper
    ink = 1.0 - gray if dark_ink else gray
    background = local_background(ink)
    if float(np.percentile(background, 99) - np.percentile(background, 1)) > FLAT_BACKGROUND:
        ink = ink - background  # a photo: lighting and paper tone vary across the frame
    level = float(np.median(ink))
    noise = 1.4826 * float(np.median(np.abs(ink - level)))  # the paper's grain, robust to the ink itself
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    if peak - level < 0.1:  # nothing stands out from the paper
        return np.zeros_like(ink)
    grainy = noise > SPECKLE_NOISE * (peak - level)
    if grainy:
        ink = _median3(ink)  # a lone bright pixel must not widen the digit's box
        peak = float(ink.max())
    ink = np.clip((ink - level) / (peak - level), 0.0, 1.0)
    faint_share = float(np.count_nonzero((ink > 0.0) & (ink < NOISE_FLOOR))) / ink.size
    floor = NOISE_FLOOR if faint_share > NOISY_SHARE else CLEAN_FLOOR
    floor = max(floor, NOISE_SIGMAS * noise / (peak - level))
    ink[ink < floor] = 0.0
    if grainy:  # clusters of grain that survived: far smaller than any stroke of the digit
        ink = keep_strokes(ink)
    return ink


def keep_strokes(ink: np.ndarray) -> np.ndarray:
    """Zero every blob of ink whose mass is under STROKE_SHARE of the largest one's.

    Blobs are the 8-connected parts of the ink on a grid of at most STROKE_GRID cells per side, grown by one
    cell, so the pieces of one digit a few pixels apart count as one.
    """
    height, width = ink.shape
    step = max(1, math.ceil(max(height, width) / STROKE_GRID))
    rows, cols = math.ceil(height / step), math.ceil(width / step)
    padded = np.pad(ink, ((0, rows * step - height), (0, cols * step - width)))
    mass = padded.reshape(rows, step, cols, step).sum(axis=(1, 3))
    present = np.pad(mass > 0, 1)
    grown = np.zeros_like(present)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown[1:-1, 1:-1] |= present[1 + dy : rows + 1 + dy, 1 + dx : cols + 1 + dx]
    labels = label_blobs(grown[1:-1, 1:-1])
    if labels.max() <= 1:
        return ink
    blob_mass = np.bincount(labels.ravel(), weights=mass.ravel())
    blob_mass[0] = 0.0
    kept = blob_mass >= STROKE_SHARE * blob_mass.max()
    keep = np.repeat(np.repeat(kept[labels], step, axis=0), step, axis=1)[:height, :width]
    return np.where(keep, ink, 0.0).astype(ink.dtype)


def label_blobs(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a small boolean grid: 0 for background, 1..n for the blobs (run-length
    union-find: one pass over the runs of each row)."""
    parent: list[int] = [0]

    def root(label: int) -> int:
        while parent[label] != label:
            parent[label] = parent[parent[label]]
            label = parent[label]
        return label

    labels = np.zeros(mask.shape, dtype=np.int32)
    previous: list[tuple[int, int, int]] = []
    for y, row in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate(([False], row, [False])).astype(np.int8)))
        current = []
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):  # [start, end)
            label = len(parent)
            parent.append(label)
            for other_start, other_end, other in previous:
                if other_start <= end and start <= other_end:  # touching, diagonals included
                    a, b = root(label), root(other)
                    parent[max(a, b)] = min(a, b)
            current.append((start, end, label))
            labels[y, start:end] = label
        previous = current
    roots = np.array([root(label) for label in range(len(parent))], dtype=np.int32)
    _, dense = np.unique(roots, return_inverse=True)
    return dense.astype(np.int32)[labels]


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


def _to_mnist(image: Image.Image, budget: DecodeBudget | None) -> np.ndarray:
    shrink_on_decode(image)
    try:
        if budget is None:
            gray = load_gray(image)
        else:
            with budget.reserve(decode_cost(image)):
                gray = load_gray(image)
    finally:
        image.close()
    return mnist_normalize(ink_map(gray))[..., None]


def images_to_mnist(images: Sequence[bytes], max_pixels: int, max_request_pixels: int,
                    budget: DecodeBudget | None = None) -> np.ndarray:
    """PNG/JPEG bytes -> float32 [N, 28, 28, 1]. Every header is read first: a request whose pictures add up to
    more than `max_request_pixels` is refused before any of them is decoded."""
    opened: list[Image.Image] = []
    try:
        total = 0
        for index, data in enumerate(images):
            try:
                opened.append(open_image(data, max_pixels))
            except (InvalidImage, PayloadTooLarge) as error:
                raise type(error)(f"image {index}: {error.message}" if len(images) > 1 else error.message) from None
            width, height = opened[-1].size
            total += width * height
        if total > max_request_pixels:
            raise PayloadTooLarge(f"the images of this request have {total} pixels together; at most "
                                  f"{max_request_pixels} are decoded per request")
        out = np.empty((len(opened), SIDE, SIDE, 1), dtype=np.float32)
        for index, image in enumerate(opened):
            try:
                out[index] = _to_mnist(image, budget)
            except (InvalidImage, PayloadTooLarge) as error:
                raise type(error)(f"image {index}: {error.message}" if len(images) > 1 else error.message) from None
        return out
    finally:
        for image in opened:
            image.close()


def image_to_mnist(data: bytes, max_pixels: int, budget: DecodeBudget | None = None) -> np.ndarray:
    """PNG/JPEG bytes -> float32 [28, 28, 1] in [0, 1], white digit on black, MNIST-centred."""
    return images_to_mnist([data], max_pixels, max_pixels, budget)[0]



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
