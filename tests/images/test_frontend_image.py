"""The frontend images serve the version the trainer image published: the thin one through TF Serving's gRPC
protocol (the stand-in on the host), the embedded one from the model store itself (TF Serving off: arm64)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from scripts.demo.ports import free_port
from tests.support.tfserving_standin import StandIn

from .containers import Container, Mount, readable_copy, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digit(mnist_npz: Path) -> tuple[bytes, np.ndarray]:
    """MNIST test image 0 as a PNG, and its pixels as the serving signature takes them."""
    with np.load(mnist_npz) as data:
        pixels = data["x_test"][0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), pixels.reshape(1, 28, 28, 1).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def expected_digit(trained_store: Path, digit) -> int:
    """What the published SavedModel itself says about the digit (the frontends must answer the same)."""
    import tensorflow as tf
    from frontend.backends.base import INPUT_NAME, OUTPUT_DIGIT, SIGNATURE

    signature = tf.saved_model.load(str(trained_store / "1")).signatures[SIGNATURE]
    return int(signature(**{INPUT_NAME: tf.constant(digit[1])})[OUTPUT_DIGIT].numpy()[0])


@pytest.fixture(scope="module")
def serving(trained_store: Path) -> Iterator[StandIn]:
    with StandIn(model_base_path=trained_store, model_name="mnist") as standin:
        yield standin


def frontend_env(port: int, **extra: str) -> dict[str, str]:
    return {"MNIST_BIND": f"127.0.0.1:{port}", "MNIST_WORKERS": "1", "MNIST_THREADS": "4", **extra}


def ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def check_serves(base: str, container: Container, png: bytes, expected: int) -> dict:
    wait_until(lambda: ready(base), 180, "/readyz to answer 200", container)
    response = requests.post(f"{base}/v1/predict", data=png, headers={"Content-Type": "image/png"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1
    prediction = body["predictions"][0]
    assert prediction["digit"] == expected
    assert abs(sum(prediction["probabilities"]) - 1.0) < 1e-3
    metrics = requests.get(f"{base}/metrics", timeout=10)
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["Content-Type"]
    assert any(line.startswith("mnist_frontend_") and 'version="1"' in line and not line.startswith("#")
               for line in metrics.text.splitlines()), metrics.text[:2000]
    return body


def test_thin_frontend_image_serves_the_published_version_through_tf_serving_grpc(images, serving: StandIn, digit,
                                                                                  expected_digit: int) -> None:
    port = free_port()
    env = frontend_env(port, MNIST_BACKEND="grpc", MNIST_SERVING_GRPC=serving.grpc_target,
                       MNIST_SERVING_REST=serving.rest_url)
    before = serving.predict_count(1)
    with Container(images["frontend"], env=env) as container:
        check_serves(f"http://127.0.0.1:{port}", container, digit[0], expected_digit)
    assert serving.predict_count(1) > before, "the prediction did not go through TF Serving's gRPC API"


def test_embedded_frontend_image_serves_the_published_version_from_the_model_store(images, trained_store: Path,
                                                                                   container_tmp: Path, digit,
                                                                                   expected_digit: int) -> None:
    store = readable_copy(trained_store.parent, container_tmp / "store-embedded")
    port = free_port()
    env = frontend_env(port, MNIST_BACKEND="embedded", MNIST_MODEL_BASE_PATH="/models/mnist")
    with Container(images["frontend-embedded"], env=env, mounts=[Mount(store, "/models")]) as container:
        check_serves(f"http://127.0.0.1:{port}", container, digit[0], expected_digit)
