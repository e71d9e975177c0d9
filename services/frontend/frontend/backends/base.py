"""The one interface every backend implements; the routing and HTTP code never know which transport answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from frontend.errors import BackendError

INPUT_NAME = "images"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_DIGIT = "digit"
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class BackendResult:
    """The backend's answer for a batch, and the exact model version that computed it."""

    version: int
    probabilities: np.ndarray  # float32 [N, 10]
    digits: np.ndarray  # int64 [N]


def _ignore(_: object) -> None:
    return None


@dataclass(frozen=True)
class BackendEvents:
    """What a TF Serving backend reports as it goes (the app turns them into metrics; by default nothing)."""

    retried: Callable[[str], None] = field(default=_ignore)  # a predict retried on another replica: "ok" / "error"
    resolved: Callable[[int], None] = field(default=_ignore)  # the serving name resolved to this many replicas


class Backend(Protocol):
    """Computes the `serving_default` signature of one model, at an exact version or the default (latest) one."""

    kind: str

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float) -> BackendResult:
        """images float32 [N, 28, 28, 1]; raises BackendUnavailable / BackendTimeout / BackendError."""
        ...

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        """Which of `wanted` cannot answer now (empty `wanted`: is there a default version at all? {0} if not).

        Raises BackendUnavailable when the backend cannot be asked.
        """
        ...

    def close(self) -> None: ...

    # Optional: `prepare(versions: set[int]) -> None`, for a backend that loads models itself (embedded). The
    # routing file calls it before a config naming those versions is used. TF Serving loads versions on its own.


def missing_from(available: set[int], wanted: set[int]) -> set[int]:
    """`Backend.missing_versions` for a server that reports which versions are AVAILABLE (TF Serving)."""
    if not wanted:
        return set() if available else {0}
    return wanted - available


def check_result(probabilities: np.ndarray, digits: np.ndarray, count: int, version: int) -> BackendResult:
    """Shape-check what came back, so a misbehaving backend is a 502 and not a confusing answer."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    digits = np.asarray(digits, dtype=np.int64).reshape(-1)
    if probabilities.shape != (count, 10) or digits.shape != (count,):
        raise BackendError(f"backend returned shapes {list(probabilities.shape)} and {list(digits.shape)} "
                           f"for a batch of {count}")
    return BackendResult(version=version, probabilities=probabilities, digits=digits)
