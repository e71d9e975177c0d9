"""The whole image path: real MNIST test digits as PNG files -> preprocess -> embedded backend. Accuracy must stay
within 0.3 points of the model's own accuracy on the same digits (fed as MNIST arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frontend.helpers import b64, png_bytes

COUNT = 1000
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
