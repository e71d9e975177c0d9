"""The whole image path: real MNIST test digits as PNG files (and as photo-like pictures) -> preprocess -> embedded
backend. Accuracy must stay within 0.3 points (5 points for photos) of the model's own accuracy on the same digits
(fed as MNIST arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frontend.helpers import b64, paper_photo, png_bytes

COUNT = 1000
PHOTOS = 200
BATCH = 50


@pytest.mark.slow
def test_png_digits_through_preprocessing_keep_the_model_accuracy(model_app, mnist_test, good_models, tmp_path):
    images, labels = mnist_test[0][:COUNT], mnist_test[1][:COUNT]
    client = model_app.test_client()
    version = max(good_models.versions)
    # Real files on disk, read back: the same bytes a user would upload.
    paths = []
    for index, image in enumerate(images):
        path = tmp_path / f"{index}.png"
        path.write_bytes(png_bytes(image))
        paths.append(path)
    via_images, via_arrays = [], []
    for start in range(0, COUNT, BATCH):
        chunk = paths[start : start + BATCH]
        response = client.post("/v1/predict", json={"images": [b64(p.read_bytes()) for p in chunk]})
        assert response.status_code == 200 and response.json["version"] == version
        via_images += [p["digit"] for p in response.json["predictions"]]
        response = client.post("/v1/predict", json={"instances": images[start : start + BATCH].tolist()})
        via_arrays += [p["digit"] for p in response.json["predictions"]]
    accuracy_images = float(np.mean(np.asarray(via_images) == labels))
    accuracy_arrays = float(np.mean(np.asarray(via_arrays) == labels))
    assert accuracy_arrays > 0.5  # a real model, well above chance
    assert abs(accuracy_images - accuracy_arrays) <= 0.003, (accuracy_images, accuracy_arrays)


@pytest.mark.slow
def test_photos_of_paper_digits_are_read_about_as_well_as_the_digits_themselves(model_app, mnist_test, good_models):
    # Photo-like pictures (gray paper, a lighting gradient, grain, JPEG) of real MNIST test digits. Before the ink
    # was measured against the local paper, 1 in 10 was read right.
    images, labels = mnist_test[0][:PHOTOS], mnist_test[1][:PHOTOS]
    rng = np.random.default_rng(11)
    client = model_app.test_client()
    via_photos, via_arrays = [], []
    for start in range(0, PHOTOS, BATCH):
        chunk = images[start : start + BATCH]
        response = client.post("/v1/predict", json={"images": [b64(paper_photo(d, rng)) for d in chunk]})
        assert response.status_code == 200, response.json
        via_photos += [p["digit"] for p in response.json["predictions"]]
        response = client.post("/v1/predict", json={"instances": chunk.tolist()})
        via_arrays += [p["digit"] for p in response.json["predictions"]]
    accuracy_photos = float(np.mean(np.asarray(via_photos) == labels))
    accuracy_arrays = float(np.mean(np.asarray(via_arrays) == labels))
    assert accuracy_photos >= accuracy_arrays - 0.05, (accuracy_photos, accuracy_arrays)
