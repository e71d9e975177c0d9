"""Small helpers shared by the frontend tests (image encoding, key files, routing files)."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    """uint8 array -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_json_atomically(path: Path, data: dict) -> None:
    """Like kubelet updating a ConfigMap: write aside, then rename over (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def routing(routes: list[tuple[int, str, int]], *, strategy: str = "canary", sticky: str | None = None,
            shadow: dict | None = None, generation: int = 1, model: str = "mnist") -> dict:
    return {"model": model, "strategy": strategy,
            "routes": [{"version": v, "label": label, "weight": w} for v, label, w in routes],
            "sticky_header": sticky, "shadow": shadow, "rollout": None, "generation": generation}


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class InstantBackend:
    """Answers every batch at once with digit `digit` (probability 0.91): for tests that need no real model."""

    kind = "instant"

    def __init__(self, digit: int = 3, version: int = 1) -> None:
        self.digit = digit
        self.version = version
        self.calls = 0

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float):
        from frontend.backends.base import BackendResult

        self.calls += 1
        count = len(images)
        probabilities = np.full((count, 10), 0.01, np.float32)
        probabilities[:, self.digit] = 0.91
        return BackendResult(version if version is not None else self.version, probabilities,
                             np.full(count, self.digit, np.int64))

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        return set()

    def close(self) -> None:
        pass


def paper_photo(digit: np.ndarray, rng: np.random.Generator, height: int = 480, width: int = 640) -> bytes:
    """A photo-like JPEG of an MNIST digit written on paper: dark ink on gray paper, the digit at 35-60% of the
    frame's height anywhere in it, a lighting gradient in any direction (the far side at 45-70% of the near
    side's light), sensor noise (sigma 1.5-3.5% of full scale), a slight blur, JPEG quality 85."""
    from PIL import ImageFilter

    size = int(round(height * rng.uniform(0.35, 0.6)))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    paper, ink_level = rng.uniform(0.6, 0.85), rng.uniform(0.08, 0.3)
    picture = np.full((height, width), paper, np.float32)
    top, left = rng.integers(0, height - size), rng.integers(0, width - size)
    region = picture[top : top + size, left : left + size]
    picture[top : top + size, left : left + size] = region * (1 - ink) + ink_level * ink
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    low = rng.uniform(0.45, 0.7)
    picture *= low + (1.1 - low) * ramp
    picture += rng.normal(0, rng.uniform(0.015, 0.035), picture.shape)
    image = Image.fromarray(np.clip(picture * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
