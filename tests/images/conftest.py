"""Fixtures of the image tests: the four images, built by `make images` FROM the base image made on this machine.

`make test` and `make test-images` build them before pytest starts (mk/images.mk, test-images-build) and say so
through MNIST_IMAGES_COMMIT; `pytest tests/images` run by hand builds them itself with the same `make images` (cached
layers: seconds to a minute), so that it tests what the working tree builds. No engine, or an image that does not
build, fails the tests: never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .containers import (
    IMAGE_NAMES,
    SLOWDOWN,
    Container,
    EngineError,
    Mount,
    build_images,
    engine,
    engine_name,
    head_commit,
    image_ref,
    writable_dir,
)

# One epoch on the first 2,000 training images, evaluated on 2,000 test images: a real, short training.
TRAIN_ARGS = ["--model-base-path", "/models/mnist", "--epochs", "1", "--train-limit", "2000", "--test-limit", "2000",
              "--batch-size", "64", "--register", "never"]
# A cold build (TensorFlow downloaded and installed for two images) takes many minutes on a 2-core machine.
BUILD_TIMEOUT_S = 3600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under emulation (make test-images PLATFORM=<another architecture>) each test's time limit (pyproject.toml's
    pytest timeout) stretches with its waits."""
    if SLOWDOWN == 1:
        return
    limit = float(config.getini("timeout") or 600) * SLOWDOWN
    for item in items:
        if "tests/images/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture(scope="session")
def container_engine() -> str:
    try:
        return engine_name()
    except EngineError as exc:
        pytest.fail(f"{exc} (make test installs podman where it can: make container-engine)", pytrace=False)


# Set by make test / make test-images, which built the images just before pytest started (mk/images.mk).
PREBUILT_COMMIT = os.environ.get("MNIST_IMAGES_COMMIT")


@pytest.fixture(scope="session")
def built_from() -> str:
    """The commit the images are built from (their org.opencontainers.image.revision)."""
    return PREBUILT_COMMIT or head_commit()


@pytest.fixture(scope="session")
def images(container_engine: str, built_from: str) -> dict[str, str]:
    """name -> image reference, for trainer, frontend, frontend-embedded and operator, freshly built."""
    refs = {name: image_ref(name) for name in IMAGE_NAMES}
    if PREBUILT_COMMIT:
        missing = [ref for ref in refs.values() if engine("image", "inspect", ref, check=False).returncode != 0]
        if missing:
            pytest.fail(f"MNIST_IMAGES_COMMIT is set but {missing} are not built: make test-images-build",
                        pytrace=False)
        return refs
    if shutil.which("make") is None:
        pytest.fail("make is missing: the image tests build through `make images`", pytrace=False)
    try:
        build_images(IMAGE_NAMES, built_from, timeout=BUILD_TIMEOUT_S)
    except EngineError as exc:
        pytest.fail(str(exc), pytrace=False)
    return refs


@pytest.fixture(scope="session")
def container_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session directory whose contents containers may be given (the parent of every bind mount here)."""
    path = tmp_path_factory.mktemp("containers")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def trainer_run(images: dict[str, str], container_tmp: Path):
    """One run of the trainer image into a host directory mounted at /models (the chart's model store volume):
    (the finished run, the model's base path on the host)."""
    store = writable_dir(container_tmp / "models")
    result = Container(images["trainer"], args=TRAIN_ARGS, mounts=[Mount(store, "/models", read_only=False)]).run(900)
    return result, store / "mnist"


@pytest.fixture(scope="session")
def trained_store(trainer_run) -> Path:
    """The base path holding version 1 as the trainer image published it (fails when the trainer did not)."""
    result, base = trainer_run
    if result.returncode != 0:
        pytest.fail(f"the trainer image exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}",
                    pytrace=False)
    return base
