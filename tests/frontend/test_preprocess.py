"""frontend.preprocess: real pictures become MNIST-like inputs; bad ones become clear 4xx errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from frontend.errors import InvalidImage, InvalidInput, PayloadTooLarge
from frontend.preprocess import image_to_mnist, instances_to_array, mnist_normalize
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tests.frontend.helpers import jpeg_bytes, png_bytes

BIG = 10_000_000


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    return float((image * ys).sum() / image.sum()), float((image * xs).sum() / image.sum())


def test_mnist_digit_as_png_comes_back_nearly_unchanged(mnist_test):
    images, _ = mnist_test
    for digit in images[:50]:
        out = image_to_mnist(png_bytes(digit), BIG)
        assert out.shape == (28, 28, 1) and out.dtype == np.float32
        assert np.abs(out[..., 0] - digit / 255.0).mean() < 0.03


def test_dark_digit_on_light_paper_is_inverted_scaled_and_centred(mnist_test):
    digit = mnist_test[0][0]
    # A "photo": dark ink on light grey paper, 10x larger, off-centre, saved as JPEG.
    paper = np.full((400, 500), 200, dtype=np.uint8)
    big = np.asarray(Image.fromarray(255 - digit).resize((280, 280)))
    paper[20:300, 150:430] = np.minimum(paper[20:300, 150:430], big)
    out = image_to_mnist(jpeg_bytes(paper), BIG)[..., 0]
    assert np.abs(out - digit / 255.0).mean() < 0.05
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) <= 21  # fits the 20x20 box (+ resampling fringe)


def test_transparent_canvas_with_black_strokes_is_flattened_and_inverted():
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)  # transparent black everywhere
    rgba[60:220, 130:150] = (0, 0, 0, 255)  # a black vertical stroke: a "1"
    out = image_to_mnist(png_bytes(rgba, mode="RGBA"), BIG)[..., 0]
    assert out.max() == pytest.approx(1.0, abs=0.05)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 <= 5  # tall and thin, 20 high
    assert out[0].sum() == 0 and out[:, 0].sum() == 0  # background black


def test_white_strokes_on_transparent_canvas_stay_white():
    rgba = np.zeros((100, 100, 4), dtype=np.uint8)
    rgba[20:80, 45:55] = (255, 255, 255, 255)
    out = image_to_mnist(png_bytes(rgba, mode="RGBA"), BIG)[..., 0]
    assert out.max() > 0.9 and out[0, 0] == 0


def test_colour_photo_is_grayscaled():
    rgb = np.full((60, 60, 3), (250, 240, 200), dtype=np.uint8)
    rgb[10:50, 28:33] = (20, 30, 120)  # blue ink
    out = image_to_mnist(png_bytes(rgb), BIG)
    assert out.max() > 0.9


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 30, b"GIF89a" + b"\0" * 20])
def test_unreadable_bytes_are_invalid_image(data):
    with pytest.raises(InvalidImage):
        image_to_mnist(data, BIG)


def test_blank_image_is_invalid_image():
    with pytest.raises(InvalidImage, match="blank"):
        image_to_mnist(png_bytes(np.full((50, 50), 255)), BIG)
    with pytest.raises(InvalidImage):
        mnist_normalize(np.zeros((28, 28), dtype=np.float32))


def test_image_over_the_pixel_limit_is_rejected_before_decoding():
    with pytest.raises(PayloadTooLarge):
        image_to_mnist(png_bytes(np.zeros((100, 100))), max_pixels=9_999)


def test_decompression_bomb_png_is_rejected_quickly():
    # 20000 x 20000 PNG of zeros: a few hundred KB compressed, 400 MB decoded. Only the header is read.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    with pytest.raises(PayloadTooLarge):
        image_to_mnist(buffer.getvalue(), BIG)


def test_instances_accept_floats_ints_and_channel_axis():
    floats = np.random.default_rng(0).random((2, 28, 28)).tolist()
    assert instances_to_array(floats).shape == (2, 28, 28, 1)
    ints = [[[255] * 28] * 28]
    assert instances_to_array(ints).max() == pytest.approx(1.0)
    with_channel = [[[[0.5]] * 28] * 28]
    assert instances_to_array(with_channel)[0, 0, 0, 0] == pytest.approx(0.5)
    named = [{"images": [[0] * 28] * 28}]
    assert instances_to_array(named).shape == (1, 28, 28, 1)


@pytest.mark.parametrize("instances, message", [
    ([], "non-empty"),
    ("x", "non-empty"),
    ([[[0] * 28] * 27], "shape"),
    ([[[0] * 28] * 27 + [[0] * 27]], "ragged|shape"),
    ([[[256] * 28] * 28], "0..255"),
    ([[[-1] * 28] * 28], "0..255"),
    ([[[1.5] * 28] * 28], r"\[0, 1\]"),
    ([[["a"] * 28] * 28], "numbers"),
    ([[[True] * 28] * 28], "numbers"),
    ([[[None] * 28] * 28], "numbers"),
    ([{"pixels": []}], "images"),
    ([7], "28x28"),
])
def test_bad_instances_are_invalid_input(instances, message):
    with pytest.raises(InvalidInput, match=message):
        instances_to_array(instances)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_any_bytes_give_an_mnist_array_or_a_client_error(data):
    try:
        out = image_to_mnist(data, BIG)
    except (InvalidImage, PayloadTooLarge):
        return
    assert out.shape == (28, 28, 1) and np.isfinite(out).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80))), st.sampled_from(["png", "jpeg"]))
@example(np.array([[1] + [0] * 11 + [33]], dtype=np.uint8), "png")  # faint left pixel, mass at the right: clamped
def test_any_picture_gives_a_valid_array_or_blank_error(pixels, kind):
    data = png_bytes(pixels) if kind == "png" else jpeg_bytes(pixels)
    try:
        out = image_to_mnist(data, BIG)
    except InvalidImage as error:
        assert "blank" in error.message
        return
    assert out.shape == (28, 28, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    cy, cx = centre_of_mass(out[..., 0])
    # Centring by mass keeps the 20x20 patch inside the 28x28 frame: where the mass sits near one edge of a wide
    # patch, the shift is clamped, and the centre can end up to 6 px off (patch side 20: offset in [0, 8], mass
    # anywhere in [0, 19]). Unclamped, it is within rounding of the centre.
    assert abs(cy - 14) <= 6 and abs(cx - 14) <= 6


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                       lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3),
                                                                                          children, max_size=3),
                       max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(JSONISH)
def test_any_json_value_as_instances_is_an_array_or_invalid_input(value):
    try:
        out = instances_to_array(value)
    except InvalidInput:
        return
    assert out.shape[1:] == (28, 28, 1)
