"""Make sense of `mnist-operator local` output: the phase it reached and the decisions worth showing.

The operator prints three kinds of lines (operator/mnist_operator/local.py):
  events    `HH:MM:SS Normal  CanaryStep: step 2/3: 50% to v2`  (every decision, with its numbers)
  progress  `Progressing/canary | step 2/3 | candidate 50% | v2: ... | failed checks 0`  (when it changes)
  the end   `Promoted reason: ...` on stdout, or `RolledBack reason: LowAccuracy: ...` on stderr
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TERMINAL = ("Promoted", "RolledBack", "Failed")
_EVENT_RE = re.compile(r"^(\d\d:\d\d:\d\d) (Normal|Warning)\s+(\w+): (.*)$")
_PROGRESS_RE = re.compile(r"^(\w+)/(\w+)( \| .*)?$")
_STEP_RE = re.compile(r"\| step (\d+)/(\d+)")
_WEIGHT_RE = re.compile(r"\| candidate (\d+)%")
_END_RE = re.compile(r"^(Promoted|RolledBack|Failed) reason: (.*)$")


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
    """What the demo has learnt from the operator's output so far."""

    phase: str = "Pending"
    stage: str | None = None
    step: int | None = None
    candidate_weight: int | None = None
    reason: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Decision | str | None:
        """Take one output line; a Decision to show, another line worth showing (errors), or None."""
        text = line.rstrip()
        if not text.strip():
            return None
        event = _EVENT_RE.match(text)
        if event:
            decision = Decision(*event.groups())
            self.decisions.append(decision)
            return decision
        end = _END_RE.match(text)
        if end:
            self.phase, self.reason = end.group(1), end.group(2).strip()
            return None
        progress = _PROGRESS_RE.match(text)
        if progress:
            self.phase, self.stage = progress.group(1), progress.group(2)
            step = _STEP_RE.search(text)
            self.step = int(step.group(1)) if step else None
            weight = _WEIGHT_RE.search(text)
            if weight:
                self.candidate_weight = int(weight.group(1))
            return None
        # Anything else (a bad-input line, a timeout, a traceback) is shown as it is.
        self.other.append(text)
        return text


def final_phase(view: OperatorView, exit_code: int | None) -> str:
    """The rollout's end: the phase the operator printed, checked against its documented exit code."""
    if view.phase in TERMINAL:
        if exit_code == 0 and view.phase != "Promoted":
            return "Failed"  # contradictory: exit 0 is only for Promoted
        if exit_code not in (0, 1):
            return "Failed"
        return view.phase
    return "Failed"
