"""Injected faults, per transport: slow answers, failing Predicts, or a server that is not listening."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc

from .errors import ServingError

MODES = (None, "slow", "error", "down")
TRANSPORTS = ("grpc", "rest")


@dataclass(frozen=True)
class Fault:
    """What one transport does to Predict calls: nothing, delay them, fail them, or stop listening."""

    mode: str | None = None
    delay_s: float = 0.0
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


class Faults:
    """The fault in force on each transport; sleeps are cut short when the stand-in stops."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._faults = {transport: Fault() for transport in TRANSPORTS}
        self._interrupt = threading.Event()

    def set(self, transport: str, fault: Fault) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS} or 'both', not {transport!r}")
        if fault.mode not in MODES:
            raise ValueError(f"fault must be one of {MODES}, not {fault.mode!r}")
        with self._mu:
            self._faults[transport] = fault

    def get(self, transport: str) -> Fault:
        with self._mu:
            return self._faults[transport]

    def apply_to_predict(self, transport: str) -> None:
        """Called at the start of every Predict: sleep for "slow", raise for "error"."""
        fault = self.get(transport)
        if fault.mode == "slow":
            self._interrupt.wait(fault.delay_s)
        elif fault.mode == "error":
            raise ServingError(fault.code, f"Injected fault: the stand-in fails every Predict with {fault.code.name}")

    def interrupt_sleeps(self) -> None:
        """Wake every request sleeping in a "slow" fault (used when stopping)."""
        self._interrupt.set()
