"""Make sense of `mnist-operator local` output: the phase it reached and the lines worth showing."""

from __future__ import annotations

import re
from dataclasses import dataclass

PHASES = ("Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Failed")
_PHASE_RE = re.compile(r"\b(" + "|".join(PHASES) + r")\b")
_STEP_RE = re.compile(r"\bstep[ =:]+(\d+)(?:\s*/\s*(\d+))?", re.IGNORECASE)
_REASON_RE = re.compile(r"\breason[=:]\s*(.+)$", re.IGNORECASE)


@dataclass
class OperatorView:
    """What the demo has learnt from the operator's output so far."""

    phase: str = "Pending"
    step: int | None = None
    reason: str | None = None
    last_line: str | None = None

    def feed(self, line: str) -> bool:
        """Take one output line; True when it says something (phase, step, decision) worth showing."""
        text = line.strip()
        if not text:
            return False
        self.last_line = text
        notable = False
        phases = _PHASE_RE.findall(text)
        if phases:
            self.phase = phases[-1]
            notable = True
        step = _STEP_RE.search(text)
        if step:
            self.step = int(step.group(1))
            notable = True
        reason = _REASON_RE.search(text)
        if reason:
            self.reason = reason.group(1).strip()
            notable = True
        return notable or any(word in text.lower() for word in ("check", "decision", "promot", "roll", "gate"))


def final_phase(view: OperatorView, exit_code: int | None) -> str:
    """The rollout's end: the phase the operator printed, checked against its documented exit code."""
    if view.phase in ("Promoted", "RolledBack", "Failed"):
        if exit_code == 0 and view.phase != "Promoted":
            return "Failed"  # contradictory: exit 0 is only for Promoted
        return view.phase
    if exit_code == 0:
        return "Promoted"
    return "Failed"
