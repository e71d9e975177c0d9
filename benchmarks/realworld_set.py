"""Real-world evaluation set: MNIST *test* digits rendered as people make digits, with a fixed seed.

Every image comes from one MNIST test digit (never a training one) and is drawn in one of five styles:

- photo:  a phone photo of the digit written on paper: dark ink on gray paper, the digit at 25-60% of the frame
          height anywhere in it, tilted up to 8 degrees, a lighting gradient and a vignette, slight blur, sensor
          noise, JPEG quality 60-90;
- thick:  the digit's strokes re-drawn with a marker (pen 14-22% of the digit's height) on light paper;
- thin:   re-drawn with a fine pen (2.5-4% of the height) on a large page, JPEG;
- small:  a marker digit at 6-12% of the height of a 1600x1200 photo of a page, anywhere in it;
- canvas: as the draw-a-digit page sends it: a 280x280 opaque RGBA PNG, white, black round-capped strokes 18 px
          wide (services/frontend/frontend/static/app.js), the digit 110-250 px tall anywhere on the pad.

Re-drawn styles follow the digit's skeleton (Zhang-Suen thinning) with a pen of the style's width and a smooth
hand wobble. Image i uses its own generator seeded with (seed, i) and the test digit at position i of a seeded
permutation of the test set, so a set of N images is the first N of any larger set with the same seed, and the
same seed gives the same bytes (with the same Pillow and NumPy).

    .venv/bin/python benchmarks/realworld_set.py --data data/mnist.npz --out build/realworld --count 1000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES = ("photo", "thick", "thin", "small", "canvas")
DEFAULT_SEED = 16
CANVAS_SIDE = 280   # the page's <canvas width="280" height="280">
CANVAS_PEN = 18     # its ctx.lineWidth
SUPERSAMPLE = 4     # strokes are drawn 4x larger and reduced: anti-aliased edges, as a browser draws them


# --- the digit's strokes ------------------------------------------------------------------------------------------
def crop_to_ink(digit: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def zhang_suen(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide skeleton of a boolean mask (Zhang and Suen's two-subiteration thinning)."""
    img = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for first in (True, False):
            p2, p3, p4, p5 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:]
            p6, p7, p8, p9 = img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(ring[:8])
            transitions = sum(((ring[k] == 0) & (ring[k + 1] == 1)).astype(np.uint8) for k in range(8))
            clear = ((p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)) if first else ((p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0))
            centre = img[1:-1, 1:-1]
            remove = (centre == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & clear
            if remove.any():
                centre[remove] = 0
                changed = True
    return img[1:-1, 1:-1].astype(bool)


def skeleton(digit: np.ndarray, upsample: int = 4) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Skeleton pixels (ys, xs) of the digit's ink, on a grid `upsample` times finer than its crop, and that grid's
    (height, width)."""
    crop = crop_to_ink(digit)
    height, width = crop.shape[0] * upsample, crop.shape[1] * upsample
    big = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR)) > 110
    ys, xs = np.nonzero(zhang_suen(big))
    return ys, xs, (height, width)


def _wobble(rng: np.random.Generator, amplitude: float) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """A smooth displacement field (a hand is not a plotter): two low-frequency sines per axis."""
    f = rng.uniform(0.5, 1.5, 4)
    phase = rng.uniform(0, 2 * math.pi, 4)

    def displace(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dy = amplitude * np.sin(2 * math.pi * f[0] * x + phase[0]) * np.cos(2 * math.pi * f[1] * y + phase[1])
        dx = amplitude * np.sin(2 * math.pi * f[2] * y + phase[2]) * np.cos(2 * math.pi * f[3] * x + phase[3])
        return y + dy, x + dx

    return displace


def pen_strokes(digit: np.ndarray, height_px: float, pen_px: float, rng: np.random.Generator,
                tilt_deg: float = 8.0, wobble: float = 0.03) -> np.ndarray:
    """The digit re-drawn along its skeleton with a round pen: float ink coverage in [0, 1], the digit
    `height_px` tall, tilted up to `tilt_deg` and wobbled by up to `wobble` of its height, with a pen margin."""
    ys, xs, (grid_h, grid_w) = skeleton(digit)
    scale = height_px / grid_h
    y, x = (ys + 0.5) / grid_h, (xs + 0.5) / grid_h  # in digit heights
    y, x = _wobble(rng, wobble)(y, x)
    angle = math.radians(rng.uniform(-tilt_deg, tilt_deg))
    cy, cx = 0.5, 0.5 * grid_w / grid_h
    y, x = (cy + (y - cy) * math.cos(angle) + (x - cx) * math.sin(angle),
            cx - (y - cy) * math.sin(angle) + (x - cx) * math.cos(angle))
    margin = pen_px
    py = (y - y.min()) * grid_h * scale + margin
    px = (x - x.min()) * grid_h * scale + margin
    out_h, out_w = int(math.ceil(py.max() + margin)), int(math.ceil(px.max() + margin))
    s = SUPERSAMPLE
    layer = Image.new("L", (out_w * s, out_h * s), 0)
    draw = ImageDraw.Draw(layer)
    radius = pen_px * s / 2
    index = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True))}
    for k, (a, b) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True)):
        here = (px[k] * s, py[k] * s)
        draw.ellipse([here[0] - radius, here[1] - radius, here[0] + radius, here[1] + radius], fill=255)
        for da, db in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each 8-neighbour pair once: round joins, no gaps
            other = index.get((a + da, b + db))
            if other is not None:
                draw.line([here, (px[other] * s, py[other] * s)], fill=255, width=max(1, round(pen_px * s)))
    return np.asarray(layer.reduce(s), dtype=np.float32) / 255.0


def scaled_ink(digit: np.ndarray, height_px: int, rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """The digit's own pen (its gray levels), scaled to `height_px` and tilted: ink coverage in [0, 1]."""
    crop = crop_to_ink(digit)
    width_px = max(1, round(crop.shape[1] * height_px / crop.shape[0]))
    image = Image.fromarray(crop).resize((width_px, height_px), Image.Resampling.BICUBIC)
    image = image.rotate(rng.uniform(-tilt_deg, tilt_deg), resample=Image.Resampling.BICUBIC, expand=True)
    return np.clip(np.asarray(image, dtype=np.float32) / 255.0, 0.0, 1.0)


# --- paper, light and camera --------------------------------------------------------------------------------------
def place(ink: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The ink patch anywhere in a height x width frame (whole, never cut)."""
    ink = ink[:height, :width]
    frame = np.zeros((height, width), np.float32)
    top = int(rng.integers(0, height - ink.shape[0] + 1))
    left = int(rng.integers(0, width - ink.shape[1] + 1))
    frame[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return frame


def lighting(height: int, width: int, rng: np.random.Generator, low: float, vignette: float) -> np.ndarray:
    """Uneven light: a gradient in any direction (its dark side at `low` of the bright side) and a vignette."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys, xs = ys / max(height, width), xs / max(height, width)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    r2 = ((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2) / float(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max())
    return (low + (1.0 - low) * ramp) * (1.0 - vignette * r2)


def on_paper(ink: np.ndarray, rng: np.random.Generator, paper: tuple[float, float], ink_level: tuple[float, float],
             low: float, vignette: float, noise: tuple[float, float], blur: float) -> np.ndarray:
    """Dark ink on paper under uneven light, with blur and sensor noise: gray in [0, 1]."""
    height, width = ink.shape
    picture = rng.uniform(*paper) * (1 - ink) + rng.uniform(*ink_level) * ink
    picture = picture * lighting(height, width, rng, low, vignette)
    if blur > 0:
        eight_bit = Image.fromarray(np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8))
        picture = np.asarray(eight_bit.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255.0
    return np.clip(picture + rng.normal(0.0, rng.uniform(*noise), picture.shape), 0.0, 1.0)


def encode(gray: np.ndarray, kind: str, quality: int = 90) -> bytes:
    image = Image.fromarray(np.round(gray * 255).astype(np.uint8))
    buffer = io.BytesIO()
    if kind == "jpg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- the styles ---------------------------------------------------------------------------------------------------
def render_photo(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    height, width = (480, 640) if rng.random() < 0.5 else (640, 480)
    ink = scaled_ink(digit, int(height * rng.uniform(0.25, 0.6)), rng, tilt_deg=8.0)
    gray = on_paper(place(ink, height, width, rng), rng, paper=(0.55, 0.85), ink_level=(0.05, 0.3),
                    low=rng.uniform(0.45, 0.75), vignette=rng.uniform(0.0, 0.3), noise=(0.01, 0.035),
                    blur=rng.uniform(0.5, 1.2))
    return encode(gray, "jpg", int(rng.integers(60, 91))), "jpg"


def render_thick(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    digit_h = rng.uniform(150, 260)
    ink = pen_strokes(digit, digit_h, digit_h * rng.uniform(0.14, 0.22), rng)
    side = int(max(ink.shape) * rng.uniform(1.2, 1.8))
    gray = on_paper(place(ink, side, side, rng), rng, paper=(0.8, 0.97), ink_level=(0.02, 0.2),
                    low=rng.uniform(0.75, 0.95), vignette=0.0, noise=(0.0, 0.01), blur=0.0)
    kind = "png" if rng.random() < 0.5 else "jpg"
    return encode(gray, kind, 90), kind


def render_thin(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    digit_h = rng.uniform(250, 420)
    ink = pen_strokes(digit, digit_h, digit_h * rng.uniform(0.025, 0.04), rng)
    height, width = int(max(ink.shape[0] * 1.5, 600)), int(max(ink.shape[1] * 1.5, 800))
    gray = on_paper(place(ink, height, width, rng), rng, paper=(0.75, 0.95), ink_level=(0.05, 0.3),
                    low=rng.uniform(0.7, 0.95), vignette=rng.uniform(0.0, 0.15), noise=(0.0, 0.015),
                    blur=rng.uniform(0.0, 0.6))
    return encode(gray, "jpg", 88), "jpg"


def render_small(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    height, width = 1200, 1600
    digit_h = height * rng.uniform(0.06, 0.12)
    ink = pen_strokes(digit, digit_h, digit_h * rng.uniform(0.1, 0.15), rng)
    gray = on_paper(place(ink, height, width, rng), rng, paper=(0.7, 0.92), ink_level=(0.05, 0.25),
                    low=rng.uniform(0.6, 0.9), vignette=rng.uniform(0.0, 0.2), noise=(0.005, 0.02),
                    blur=rng.uniform(0.3, 0.9))
    return encode(gray, "jpg", 85), "jpg"


def render_canvas(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """What the page posts: canvas.toDataURL("image/png") of an opaque white pad with black strokes."""
    ink = pen_strokes(digit, rng.uniform(110, 250 - CANVAS_PEN), CANVAS_PEN, rng, tilt_deg=10.0, wobble=0.04)
    ink = place(ink, CANVAS_SIDE, CANVAS_SIDE, rng)
    level = np.round((1.0 - ink) * 255).astype(np.uint8)
    rgba = np.dstack([level, level, level, np.full_like(level, 255)])
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue(), "png"


RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[bytes, str]]] = {
    "photo": render_photo, "thick": render_thick, "thin": render_thin, "small": render_small,
    "canvas": render_canvas}


# --- the set ------------------------------------------------------------------------------------------------------
def plan(n_test: int, count: int, seed: int, styles: tuple[str, ...] = STYLES) -> list[tuple[int, str]]:
    """(test index, style) of each image: a seeded permutation of the test set, the styles in turn."""
    order = np.random.default_rng(seed).permutation(n_test)
    return [(int(order[i]), styles[i % len(styles)]) for i in range(count)]


def render(digit: np.ndarray, style: str, seed: int, position: int) -> tuple[bytes, str]:
    return RENDERERS[style](digit, np.random.default_rng([seed, position]))


def write_set(x_test: np.ndarray, y_test: np.ndarray, out: Path, count: int, seed: int,
              styles: tuple[str, ...] = STYLES, data_sha256: str | None = None) -> dict:
    """Render the set into `out` (images and manifest.json); returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for position, (test_index, style) in enumerate(plan(len(x_test), count, seed, styles)):
        data, kind = render(x_test[test_index], style, seed, position)
        name = f"{position:05d}-{style}.{kind}"
        (out / name).write_bytes(data)
        images.append({"file": name, "label": int(y_test[test_index]), "style": style, "test_index": test_index,
                       "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"source": "MNIST test images", "seed": seed, "count": count, "styles": list(styles),
                "data_sha256": data_sha256, "images": images}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MNIST_DATA", "data/mnist.npz")))
    parser.add_argument("--out", type=Path, required=True, help="directory for the images and manifest.json")
    parser.add_argument("--count", type=int, default=1000, help="images (the styles in turn; default: 1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default: {DEFAULT_SEED}")
    parser.add_argument("--styles", default=",".join(STYLES), help=f"comma-separated subset of {','.join(STYLES)}")
    args = parser.parse_args(argv)
    styles = tuple(s for s in args.styles.split(",") if s)
    if not styles or any(s not in RENDERERS for s in styles):
        parser.error(f"--styles must name some of {', '.join(STYLES)}")
    if not 1 <= args.count <= 10_000:
        parser.error("--count must be 1..10000 (one test digit per image)")
    from trainer.data import load_npz

    data = load_npz(args.data)
    manifest = write_set(data.x_test, data.y_test, args.out, args.count, args.seed, styles, data.sha256)
    counts = {s: sum(1 for i in manifest["images"] if i["style"] == s) for s in styles}
    print(f"wrote {args.count} images ({', '.join(f'{s} {n}' for s, n in counts.items())}) and manifest.json "
          f"to {args.out}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
