"""The in-process backend: SavedModel versions loaded from a model base path with TensorFlow.

New version directories are noticed without a restart (the directory is rescanned at most every
`rescan_s`, and at once when a version is asked for that is not known yet). Hidden `.tmp-*` directories
(trainer publishes in progress) are ignored, like TF Serving does. TensorFlow is imported only here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np

from frontend.backends.base import (
    INPUT_NAME,
    OUTPUT_DIGIT,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    BackendResult,
    check_result,
)
from frontend.errors import BackendError, BackendTimeout, BackendUnavailable

log = logging.getLogger(__name__)


def version_dirs(base_path: Path) -> dict[int, Path]:
    """Integer-named subdirectories holding a saved_model.pb (in-progress `.tmp-*` ones are skipped)."""
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and (Path(entry.path) / "saved_model.pb").is_file():
            found[int(entry.name)] = Path(entry.path)
    return found


class EmbeddedBackend:
    kind = "embedded"

    def __init__(self, base_path: str, *, threads: int = 4, rescan_s: float = 2.0) -> None:
        self.base_path = Path(base_path)
        self._rescan_s = rescan_s
        self._lock = threading.Lock()
        self._dirs: dict[int, Path] = {}
        self._scanned_at = -1e9
        self._loaded: dict[int, Any] = {}
        self._failed: dict[int, str] = {}
        # Predictions run on this pool so that a deadline can be enforced on an uninterruptible TF call.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embedded")

    def _scan(self, force: bool = False) -> dict[int, Path]:
        now = time.monotonic()
        if force or now - self._scanned_at >= self._rescan_s:
            self._dirs = version_dirs(self.base_path)
            self._scanned_at = now
        return self._dirs

    def _signature(self, version: int) -> Any:
        model = self._loaded.get(version)
        if model is not None:
            return model
        with self._lock:
            if version in self._loaded:
                return self._loaded[version]
            path = self._scan().get(version) or self._scan(force=True).get(version)
            if path is None:
                raise BackendUnavailable(f"model version {version} is not in {self.base_path}")
            import tensorflow as tf  # noqa: PLC0415 - only the embedded backend needs TensorFlow

            try:
                loaded = tf.saved_model.load(str(path))
                function = loaded.signatures[SIGNATURE]
            except Exception as exc:  # a broken SavedModel is that version's problem, not a crash
                self._failed[version] = f"{type(exc).__name__}: {exc}"[:500]
                log.error("cannot load %s: %s", path, self._failed[version])
                raise BackendUnavailable(f"model version {version} cannot be loaded") from None
            self._failed.pop(version, None)
            self._loaded[version] = (loaded, function)
            log.info("loaded model version %d from %s", version, path)
            return self._loaded[version]

    def latest_version(self) -> int:
        dirs = self._scan()
        if not dirs:
            dirs = self._scan(force=True)
        if not dirs:
            raise BackendUnavailable(f"no model version in {self.base_path}")
        return max(dirs)

    def _compute(self, function: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = function(**{INPUT_NAME: images})
        return outputs[OUTPUT_PROBABILITIES].numpy(), outputs[OUTPUT_DIGIT].numpy()

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float) -> BackendResult:
        version = self.latest_version() if version is None else version
        _, function = self._signature(version)
        future = self._pool.submit(self._compute, function, images)
        try:
            probabilities, digits = future.result(timeout=timeout_s)
        except FutureTimeout:
            raise BackendTimeout(f"model version {version} did not answer within {timeout_s:g} s") from None
        except Exception as exc:
            raise BackendError(f"model version {version} failed: {type(exc).__name__}") from None
        return check_result(probabilities, digits, len(images), version)

    def prepare(self, versions: set[int]) -> None:
        """Load `versions` and run each once, before the routing file that names them is adopted: the first
        request routed to a new version then finds it warm (a load takes seconds, a p99 judge notices)."""
        for version in sorted(versions):
            try:
                _, function = self._signature(version)
                self._compute(function, np.zeros((1, 28, 28, 1), dtype=np.float32))
            except BackendUnavailable:
                pass  # /readyz reports it and requests get a 503; nothing to warm
            else:
                log.info("model version %d is warm", version)

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        """Load what is wanted (readiness doubles as warm-up); a version that does not load is missing."""
        if not wanted:
            try:
                wanted = {self.latest_version()}
            except BackendUnavailable:
                return {0}
        missing = set()
        for version in wanted:
            try:
                self._signature(version)
            except BackendUnavailable:
                missing.add(version)
        return missing

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
