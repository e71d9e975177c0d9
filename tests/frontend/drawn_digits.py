"""Ten digits as a person draws them with a mouse, as pen strokes, and twenty ways to place them on the pad.

A stroke is a polyline in a unit box (x right, y down, the digit about 0.6 wide and 1.0 tall, centred on
(0, 0)). `layouts()` gives each digit twice, at different positions, sizes and pen widths, from a fixed
seed; `to_pad()` maps a stroke into pad pixels. Used by tests/frontend/test_browser.py (the real page in
Chromium); tests/frontend/test_drawn_digits.py checks the layouts themselves.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int = 16) -> list[Point]:
    """Points along an ellipse from start to end angle (degrees, 0 = right, 90 = down, as on a screen)."""
    return [(cx + rx * math.cos(math.radians(start_deg + (end_deg - start_deg) * i / n)),
             cy + ry * math.sin(math.radians(start_deg + (end_deg - start_deg) * i / n))) for i in range(n + 1)]


STROKES: dict[int, list[list[Point]]] = {
    0: [_arc(0.0, 0.0, 0.28, 0.48, -90, 275, 28)],
    1: [[(-0.12, -0.32), (0.04, -0.5), (0.04, 0.5)]],
    2: [_arc(0.0, -0.22, 0.26, 0.26, 200, 380, 12) + [(0.2, -0.05), (-0.28, 0.5), (0.3, 0.5)]],
    3: [_arc(-0.02, -0.25, 0.25, 0.24, 210, 450, 14) + _arc(-0.02, 0.24, 0.28, 0.26, 270, 510, 14)[1:]],
    4: [[(0.1, -0.5), (-0.3, 0.18), (0.3, 0.18)], [(0.14, -0.2), (0.14, 0.5)]],
    5: [[(0.26, -0.5), (-0.2, -0.5), (-0.24, -0.04)] + _arc(0.0, 0.2, 0.28, 0.29, 235, 490, 14)[1:]],
    6: [[(0.2, -0.5), (0.0, -0.35), (-0.2, -0.1)] + _arc(0.0, 0.24, 0.26, 0.26, 190, 555, 20)[1:]],
    7: [[(-0.28, -0.5), (0.3, -0.5), (-0.06, 0.5)]],
    8: [_arc(0.0, -0.26, 0.22, 0.23, 90, 450, 16) + _arc(0.0, 0.25, 0.27, 0.25, 270, -90, 16)[1:]],
    9: [_arc(0.0, -0.24, 0.25, 0.25, 0, 360, 18) + [(0.25, 0.1), (0.2, 0.5)]],
}


class Layout(NamedTuple):
    digit: int
    cx: float       # centre, as a fraction of the pad's width
    cy: float       # centre, as a fraction of the pad's height
    height: float   # digit height, as a fraction of the pad's height
    pen: int        # pen width in pad pixels (the page's pen control)
    tilt_deg: float


def layouts(seed: int = 20) -> list[Layout]:
    """Twenty placements: every digit twice, large and small, off-centre, with thin and thick pens."""
    rng = random.Random(seed)
    out = []
    for round_ in range(2):
        for digit in range(10):
            height = rng.uniform(0.55, 0.8) if round_ == 0 else rng.uniform(0.35, 0.55)
            margin = height / 2 + 0.04
            out.append(Layout(digit, rng.uniform(max(margin * 0.7, 0.25), 1 - max(margin * 0.7, 0.25)),
                              rng.uniform(margin, 1 - margin), height, rng.choice((10, 14, 18, 24, 28)),
                              rng.uniform(-8, 8)))
    return out


def to_pad(stroke: list[Point], layout: Layout, size: float) -> list[Point]:
    """A unit-box stroke in the pixels of a square pad `size` wide: tilted, scaled and moved."""
    tilt = math.radians(layout.tilt_deg)
    scale = layout.height * size
    return [((layout.cx * size) + scale * (x * math.cos(tilt) - y * math.sin(tilt)),
             (layout.cy * size) + scale * (x * math.sin(tilt) + y * math.cos(tilt))) for x, y in stroke]
