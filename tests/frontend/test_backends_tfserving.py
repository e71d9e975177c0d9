"""frontend.backends.grpc_backend and .rest against the TF Serving stand-in (real protocols, real SavedModels):
answers, exact versions, status, and the stand-in down, slow and failing."""

from __future__ import annotations

import time

import numpy as np
import pytest
from frontend.backends.embedded import EmbeddedBackend
from frontend.backends.grpc_backend import GrpcBackend
from frontend.backends.rest import RestBackend
from frontend.errors import BackendError, BackendTimeout, BackendUnavailable


@pytest.fixture(params=("grpc", "rest"))
def kind(request) -> str:
    return request.param


@pytest.fixture
def connect(kind, healthy_standin):
    """Makes backends of this test's kind against the stand-in; each is closed when the test ends."""
    made = []

    def make(model: str = "mnist"):
        serving = healthy_standin
        backend = GrpcBackend(serving.grpc_target, model) if kind == "grpc" else RestBackend(serving.rest_url, model)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def images(mnist_test) -> np.ndarray:
    return (mnist_test[0][:16].astype(np.float32) / 255.0)[..., None]


@pytest.fixture(scope="module")
def embedded(good_models):
    backend = EmbeddedBackend(str(good_models.base_path))
    yield backend
    backend.close()


def test_exact_version_answers_like_the_embedded_model(connect, images, embedded):
    backend = connect()
    for version in (1, 2):
        result = backend.predict(images, version, timeout_s=10)
        reference = embedded.predict(images, version, timeout_s=10)
        assert result.version == version
        np.testing.assert_array_equal(result.digits, reference.digits)
        np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-4)


def test_default_version_is_reported_and_status_lists_versions(connect, images):
    backend = connect()
    assert backend.predict(images[:1], None, timeout_s=10).version == 2
    assert backend.available_versions(timeout_s=5) == {1, 2}
    assert backend.missing_versions({1, 2}, 5) == set() and backend.missing_versions({1, 7}, 5) == {7}
    assert backend.missing_versions(set(), 5) == set()


def test_unknown_version_or_model_is_unavailable(connect, images):
    backend = connect()
    other = connect("fashion")
    with pytest.raises(BackendUnavailable):
        backend.predict(images[:1], 7, timeout_s=5)
    with pytest.raises(BackendUnavailable):
        other.predict(images[:1], 1, timeout_s=5)


def test_slow_backend_gives_timeout_within_the_deadline(connect, healthy_standin, images):
    backend = connect()
    healthy_standin.set_fault("slow", delay=3.0)
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        backend.predict(images[:1], 1, timeout_s=0.5)
    assert time.monotonic() - started < 2.0


def test_failing_backend_maps_to_unavailable_or_backend_error(connect, healthy_standin, images):
    backend = connect()
    healthy_standin.set_fault("error", code="UNAVAILABLE")
    with pytest.raises(BackendUnavailable):
        backend.predict(images[:1], 1, timeout_s=5)
    healthy_standin.set_fault("error", code="INTERNAL")
    with pytest.raises(BackendError) as info:
        backend.predict(images[:1], 1, timeout_s=5)
    assert not isinstance(info.value, BackendUnavailable | BackendTimeout)
    assert "Injected fault" in info.value.message or "INTERNAL" in info.value.message


def test_down_backend_fails_fast_and_recovery_needs_no_restart(connect, healthy_standin, images):
    backend = connect()
    assert backend.predict(images[:1], 1, timeout_s=5).version == 1
    healthy_standin.set_fault("down")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.predict(images[:1], 1, timeout_s=3)
    with pytest.raises(BackendUnavailable):
        backend.available_versions(timeout_s=3)
    assert time.monotonic() - started < 3.0
    healthy_standin.resume()
    deadline = time.monotonic() + 10
    while True:  # the gRPC channel reconnects with a backoff of at most 1 s
        try:
            assert backend.predict(images[:1], 1, timeout_s=2).version == 1
            break
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert time.monotonic() - started < 8.0


def test_app_over_tfserving_answers_and_maps_faults_to_json(kind, connect, healthy_standin, make_app, mnist_test):
    target = {"SERVING_GRPC": healthy_standin.grpc_target, "SERVING_REST": healthy_standin.rest_url}
    client = make_app(BACKEND=kind, BACKEND_TIMEOUT_S=1.0, **target).test_client()
    payload = {"instances": mnist_test[0][:4].tolist()}
    # the first call of a batch shape is slow on a loaded CPU
    connect().predict((mnist_test[0][:4, ..., None] / 255.0).astype(np.float32), 2, timeout_s=30)
    assert client.get("/readyz").status_code == 200
    response = client.post("/v1/predict", json=payload)
    assert response.status_code == 200 and response.json["version"] == 2 and len(response.json["predictions"]) == 4

    healthy_standin.set_fault("slow", delay=3.0)
    started = time.monotonic()
    response = client.post("/v1/predict", json=payload)
    assert response.status_code == 504 and response.json["error"]["code"] == "backend_timeout"
    assert time.monotonic() - started < 2.5

    healthy_standin.set_fault("down")
    response = client.post("/v1/predict", json=payload)
    assert response.status_code == 503 and response.json["error"]["code"] == "backend_unavailable"
    assert client.get("/readyz").status_code == 503

    healthy_standin.resume()
    deadline = time.monotonic() + 10
    while client.post("/v1/predict", json=payload).status_code != 200:
        assert time.monotonic() < deadline, "the frontend did not recover after the backend came back"
        time.sleep(0.2)
    assert client.get("/readyz").status_code == 200
