"""Fixtures of the frontend tests: app factories over an empty model dir or the trainer's published models."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flask import Flask
from frontend.app import create_app
from frontend.state import get_state
from werkzeug.serving import make_server

from tests.support.frontend_process import FrontendProcess


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with a test config; each is closed (backend, shadow pool) at the end of the test."""
    built: list[Flask] = []

    def make(**config: Any) -> Flask:
        base = {"MODEL_BASE_PATH": str(tmp_path / "no-models"), "BACKEND": "embedded", "FEEDBACK_KEY_FILE": None,
                "ROUTING_CHECK_S": 0.0}
        base.update(config)
        backend = base.pop("backend", None)
        app = create_app(base, backend=backend)
        built.append(app)
        return app

    yield make
    for app in built:
        with app.app_context():
            get_state().close()


@pytest.fixture
def app(make_app) -> Flask:
    """An app whose embedded backend has no model: everything but a successful prediction can be tested."""
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture(scope="session")
def mnist_test(mnist_npz: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(mnist_npz) as data:
        return data["x_test"], data["y_test"]


@pytest.fixture(scope="session")
def models(request) -> Any:
    """The trainer's published_models (real SavedModels v1, v2, broken v3).

    MNIST_FRONTEND_TEST_MODELS=<dir holding mnist/1,2,3> reuses a store published earlier (a developer's
    shortcut when iterating on frontend tests; CI always trains them through the shared fixture).
    """
    reuse = os.environ.get("MNIST_FRONTEND_TEST_MODELS")
    if reuse:
        import json

        base = Path(reuse) / "mnist"
        accuracy = {int(d.name): json.loads((d / "assets.extra" / "metrics.json").read_text())["test_accuracy"]
                    for d in base.iterdir() if d.name.isdigit()}
        return SimpleNamespace(base_path=base, name="mnist", broken_version=3, accuracy=accuracy)
    return request.getfixturevalue("published_models")


@pytest.fixture(scope="session")
def good_models(models, tmp_path_factory) -> SimpleNamespace:
    """Only the good versions (1, 2) of `models`, as symlinks: here "the latest version" is a good one."""
    base = tmp_path_factory.mktemp("good-models") / models.name
    base.mkdir()
    good = sorted(v for v in models.accuracy if v != models.broken_version)
    for version in good:
        (base / str(version)).symlink_to(models.base_path / str(version), target_is_directory=True)
    return SimpleNamespace(base_path=base, name=models.name, versions=good,
                           accuracy={v: models.accuracy[v] for v in good})


@pytest.fixture
def model_app(make_app, good_models) -> Flask:
    return make_app(MODEL_BASE_PATH=str(good_models.base_path), MODEL_NAME=good_models.name)


@pytest.fixture(scope="session")
def standin(good_models):
    """The TF Serving stand-in (real gRPC + REST protocol) serving the good versions 1 and 2."""
    from tests.support.tfserving_standin import StandIn

    with StandIn(model_base_path=good_models.base_path, model_name=good_models.name,
                 versions=good_models.versions) as serving:
        yield serving


@pytest.fixture
def healthy_standin(standin):
    """The module's stand-in, with any fault a test set cleared afterwards."""
    standin.resume()
    yield standin
    standin.resume()


@pytest.fixture
def frontend_factory(tmp_path):
    started: list[FrontendProcess] = []

    def start(app: str | None = None, **env: str) -> FrontendProcess:
        frontend = FrontendProcess(tmp_path, env, app)
        started.append(frontend)
        frontend.wait_ready()
        return frontend

    yield start
    for frontend in started:
        frontend.stop()


def _serve(app: Flask) -> Iterator[str]:
    """`app` on a free loopback port (werkzeug, threaded) until the generator is closed: its base URL."""
    assert app.test_client().get("/readyz").status_code == 200  # loads the model before the clock runs
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def served_app(model_app) -> Iterator[str]:
    """`model_app` on a free loopback port, for clients that need real HTTP: its base URL."""
    yield from _serve(model_app)


# Epochs of each member of the fully trained model: the drawn-digit test needs what a user gets from a real run
# (the default four deskewed members), not the 1-epoch smoke models. On all 60,000 images, 12 epochs in all, this
# is about two and a half minutes on 2 cores.
STRONG_MODEL_EPOCHS = 3


@pytest.fixture(scope="session")
def strong_model(tmp_path_factory, mnist_npz: Path) -> Path:
    """Version 1 of model `mnist` trained by the real trainer CLI on every training image: its base path."""
    from trainer.cli import main as mnist_train

    base = tmp_path_factory.mktemp("strong-model") / "mnist"
    code = mnist_train(["--data", str(mnist_npz), "--model-base-path", str(base), "--epochs", str(STRONG_MODEL_EPOCHS),
                        "--version", "1", "--register", "never"])
    if code != 0:
        pytest.fail(f"mnist-train for strong_model exited {code}")
    return base


@pytest.fixture
def served_strong_app(make_app, strong_model) -> Iterator[str]:
    yield from _serve(make_app(MODEL_BASE_PATH=str(strong_model), MODEL_NAME="mnist"))
