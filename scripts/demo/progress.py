"""What the terminal shows: pure functions of a state snapshot, so they are tested without servers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from frontend.routing import Route
from mnist_operator.analysis import VersionStats

from .metrics import MetricsSnapshot
from .traffic import TrafficStats


@dataclass
class DemoState:
    """Everything one progress update shows."""

    scenario: str
    stable: int
    candidate: int
    elapsed_s: float
    phase: str = "Pending"
    stage: str | None = None  # the operator's stage: Gate, Loading, Canary, Promoting, RollingBack, Done
    step: int | None = None  # 1-based index of the canary step in progress
    steps: Sequence[int] = ()
    routes: Sequence[Route] = ()
    metrics: MetricsSnapshot = field(default_factory=MetricsSnapshot)  # since the frontend started
    recent: MetricsSnapshot | None = None  # since the previous progress update (for "p99 now")
    traffic: TrafficStats = field(default_factory=TrafficStats)
    reason: str | None = None


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def _ms(milliseconds: float | None) -> str:
    return "    -  " if milliseconds is None else f"{milliseconds:5.0f} ms"


def role_of(state: DemoState, version: int) -> str:
    if version == state.stable:
        return "stable"
    if version == state.candidate:
        return "candidate"
    return "other"


def weight_of(routes: Sequence[Route], version: int) -> int:
    return sum(r.weight for r in routes if r.version == version)


def render_weights(routes: Sequence[Route]) -> str:
    if not routes:
        return "(no routing yet)"
    return "  ".join(f"v{r.version} {r.weight}%" for r in routes)


def render_step(state: DemoState) -> str:
    if state.step is None or not state.steps:
        return "step -"
    return f"step {state.step}/{len(state.steps)}"


def version_line(state: DemoState, version: int) -> str:
    """Totals since the start; p99 over the last update interval (a cold start must not hide what happens now)."""
    stats: VersionStats = state.metrics.version(version)
    recent = state.recent.version(version) if state.recent is not None else stats
    return (
        f"v{version} {role_of(state, version):<9} {int(stats.requests):6d} req  "
        f"acc {_pct(stats.accuracy)}  p99 now {_ms(recent.p99_ms)}  backend errors {int(stats.errors)}"
    )


def render_progress(state: DemoState) -> list[str]:
    """A short block: phase, step, weights, caller-side totals, then one line per version."""
    traffic = state.traffic
    head = (
        f"[{state.elapsed_s:5.0f}s] {state.phase + ('/' + state.stage if state.stage else ''):<23} "
        f"{render_step(state)}  "
        f"weights: {render_weights(state.routes)}   "
        f"traffic: {traffic.sent} sent, {traffic.server_errors} 5xx, {traffic.lost} lost"
    )
    lines = [head]
    for version in (state.stable, state.candidate):
        lines.append("        " + version_line(state, version))
    return lines


def render_summary(state: DemoState, expected_phase: str) -> list[str]:
    """The closing table: outcome against expectation, then one row per version."""
    ok = state.phase == expected_phase
    verdict = "as expected" if ok else f"EXPECTED {expected_phase}"
    lines = [f"Outcome: {state.phase} ({verdict}) after {state.elapsed_s:.0f} s"]
    if state.reason:
        lines.append(f"Reason:  {state.reason}")
    header = f"  {'version':<8}{'role':<11}{'requests':>9}{'errors':>9}{'accuracy':>10}{'p99':>10}{'weight':>8}"
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for version in (state.stable, state.candidate):
        stats = state.metrics.version(version)
        lines.append(
            f"  {'v' + str(version):<8}{role_of(state, version):<11}{int(stats.requests):>9}{int(stats.errors):>9}"
            f"{_pct(stats.accuracy):>10}{_ms(stats.p99_ms):>10}{weight_of(state.routes, version):>7}%"
        )
    lines.append("  (p99 over the whole run)")
    traffic = state.traffic
    answered = sum(traffic.statuses.values())
    lines.append(
        f"  traffic: {traffic.sent} digits sent, {answered} answered, {traffic.server_errors} 5xx, "
        f"{traffic.lost} lost; {traffic.feedback_sent - traffic.feedback_failed} labels fed back"
    )
    return lines
