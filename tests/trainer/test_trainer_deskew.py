"""trainer.deskew: slanted digits come out upright and centred; empty and upright ones are left alone."""

from __future__ import annotations

import numpy as np
import pytest
from trainer.deskew import CENTRE, MAX_SHEAR, deskew, deskew_transforms


def moments(image: np.ndarray) -> tuple[float, float, float]:
    """(centre row, centre column, shear cov(x, y) / var(y)) of one [28, 28] image's ink."""
    rows, cols = np.mgrid[:28, :28]
    mass = image.sum()
    cy, cx = (image * rows).sum() / mass, (image * cols).sum() / mass
    var_y = (image * (rows - cy) ** 2).sum() / mass
    return cy, cx, (image * (cols - cx) * (rows - cy)).sum() / mass / var_y


def slanted_bar(shear: float, top: int = 4, bottom: int = 24, centre_col: float = 16.0) -> np.ndarray:
    """A 2-pixel-wide stroke leaning `shear` pixels right per pixel down, off-centre."""
    image = np.zeros((28, 28), np.float32)
    for row in range(top, bottom):
        col = int(round(centre_col + shear * (row - (top + bottom) / 2)))
        image[row, col:col + 2] = 1.0
    return image


@pytest.mark.parametrize("shear", [-0.5, -0.2, 0.3, 0.6])
def test_a_slanted_off_centre_stroke_comes_out_upright_and_centred(shear):
    image = slanted_bar(shear)
    assert abs(moments(image)[2] - shear) < 0.05
    out = deskew(image[None, ..., None]).numpy()[0, ..., 0]
    cy, cx, out_shear = moments(out)
    assert abs(out_shear) < 0.05
    assert abs(cy - CENTRE) < 0.3 and abs(cx - CENTRE) < 0.3
    assert out.sum() == pytest.approx(image.sum(), rel=0.05)  # ink moved, not lost
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_real_digits_lose_their_slant_and_keep_their_ink(mnist_arrays):
    x, _ = mnist_arrays
    images = x[:200].astype(np.float32)[..., None] / 255.0
    out = deskew(images).numpy()
    before = np.array([abs(moments(image[..., 0])[2]) for image in images])
    after = np.array([abs(moments(image[..., 0])[2]) for image in out])
    assert before.mean() > 0.1
    assert after.max() < 0.05
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), images.sum(axis=(1, 2, 3)), rtol=0.1)


def test_an_upright_centred_digit_is_unchanged():
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 6:22, 13:15, 0] = 1.0  # a vertical bar on the centre
    np.testing.assert_allclose(deskew_transforms(image).numpy()[0], [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(deskew(image).numpy(), image, atol=1e-5)


def test_an_empty_image_stays_empty_and_a_flat_one_is_sheared_at_most_the_bound():
    empty = np.zeros((1, 28, 28, 1), np.float32)
    assert np.all(deskew(empty).numpy() == 0.0)
    assert np.all(np.isfinite(deskew_transforms(empty).numpy()))
    flat = np.zeros((1, 28, 28, 1), np.float32)
    flat[0, 14, 3:25, 0] = 1.0  # all ink on one row: var(y) = 0
    transform = deskew_transforms(flat).numpy()[0]
    assert np.all(np.isfinite(transform)) and abs(transform[1]) <= MAX_SHEAR


def test_each_image_is_deskewed_on_its_own():
    images = np.stack([slanted_bar(0.4), slanted_bar(-0.3, centre_col=10.0)])[..., None]
    together = deskew(images).numpy()
    for i in range(2):
        np.testing.assert_allclose(together[i], deskew(images[i:i + 1]).numpy()[0], atol=1e-6)
