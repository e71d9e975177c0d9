"""What the demo learns from `mnist-operator local`: its machine-readable output, never its console text.

The operator writes the rollout's status to `--status-file` (JSON, replaced atomically each tick) and appends
every decision to `--events-file` (one JSON object per line: time, type, reason, message); its console lines go
to its log. The demo follows both files while the operator runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TERMINAL = ("Promoted", "RolledBack", "Failed")
CANARY = "Canary"


@dataclass(frozen=True)
class Decision:
    """One operator event: when, Normal or Warning, its reason word and the message with the numbers."""

    time: str
    type: str
    reason: str
    message: str

    def render(self) -> str:
        marker = "!!" if self.type == "Warning" else ">>"
        return f"  {marker} {self.time} {self.reason}: {self.message}"


@dataclass
class OperatorView:
    """What the demo has learnt from the operator so far."""

    phase: str = "Pending"
    stage: str | None = None
    step: int | None = None  # 1-based canary step in progress (the status counts from 0)
    candidate_weight: int | None = None
    reason: str | None = None
    decisions: list[Decision] = field(default_factory=list)

    def take_status(self, status: dict[str, Any]) -> None:
        """Phase, stage, step and weight from the rollout's status; at the end, why it ended."""
        self.phase = str(status.get("phase") or self.phase)
        self.stage = status.get("stage")
        self.step = int(status.get("step", 0)) + 1 if self.stage == CANARY else None
        self.candidate_weight = status.get("candidateWeight")
        if self.phase in TERMINAL:
            message = status.get("message", "")
            # A promotion needs no reason word; a rollback or failure leads with it (LowAccuracy: ...).
            self.reason = message if self.phase == "Promoted" else f"{status.get('reason')}: {message}"


class OperatorFiles:
    """Follows the operator's status file and events file (both removed first: a status file would be resumed)."""

    def __init__(self, status_path: Path, events_path: Path) -> None:
        self.status_path, self.events_path = status_path, events_path
        self._offset = 0
        self._partial = b""
        status_path.unlink(missing_ok=True)
        events_path.unlink(missing_ok=True)

    def poll(self, view: OperatorView) -> list[Decision]:
        """Update view from the status now; the decisions appended since the last poll, in order."""
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            status = None  # not written yet (the operator replaces it whole, so never half)
        if isinstance(status, dict):
            view.take_status(status)
        new = [Decision(r["time"], r["type"], r["reason"], r["message"]) for r in self._new_records()]
        view.decisions.extend(new)
        return new

    def _new_records(self) -> list[dict[str, Any]]:
        try:
            with open(self.events_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return []
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")  # a line being appended waits for its end
        return [json.loads(line) for line in lines if line.strip()]


def final_phase(view: OperatorView, exit_code: int | None) -> str:
    """The rollout's end: the phase in the operator's status, checked against its documented exit code."""
    if view.phase in TERMINAL:
        if exit_code == 0 and view.phase != "Promoted":
            return "Failed"  # contradictory: exit 0 is only for Promoted
        if exit_code not in (0, 1):
            return "Failed"
        return view.phase
    return "Failed"
