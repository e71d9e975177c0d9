"""The scripted mouse's digits (tests/frontend/drawn_digits.py): every digit twice, varied, and on the pad."""

from __future__ import annotations

from collections import Counter

from tests.frontend.drawn_digits import STROKES, layouts, to_pad


def test_twenty_layouts_draw_every_digit_twice_with_varied_sizes_and_pens():
    drawn = layouts()
    assert len(drawn) == 20 and Counter(layout.digit for layout in drawn) == {d: 2 for d in range(10)}
    assert len({layout.pen for layout in drawn}) >= 4
    heights = sorted(layout.height for layout in drawn)
    assert heights[0] < 0.45 and heights[-1] > 0.65
    assert layouts() == drawn and layouts(seed=21) != drawn


def test_every_stroke_stays_on_the_pad_with_room_for_the_pen():
    for layout in layouts():
        for stroke in STROKES[layout.digit]:
            for x, y in to_pad(stroke, layout, 280):
                assert layout.pen / 2 <= x <= 280 - layout.pen / 2, (layout, x)
                assert layout.pen / 2 <= y <= 280 - layout.pen / 2, (layout, y)
