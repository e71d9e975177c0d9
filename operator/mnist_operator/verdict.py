"""The verdict: one analysis window of candidate vs stable judged against the spec's thresholds, the A/B test's
statistical verdict, and the summaries people read in Events. Pure: numbers in, findings out; the stages act on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnist_operator import analysis as an
from mnist_operator.spec import AnalysisSpec, RolloutSpec
from mnist_operator.status import Phase, Stage


def fmt(x: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if x is None else pattern.format(x)


def stats_json(s: an.VersionStats) -> dict[str, Any]:
    return {"version": s.version, "requests": s.requests, "errorRate": s.error_rate, "p99Ms": s.p99_ms,
            "feedback": s.feedback, "accuracy": s.accuracy}


def window_report(stage: str, window_s: float, cs: an.VersionStats, ss: an.VersionStats,
                  sh: an.ShadowStats) -> dict[str, Any]:
    """The numbers of one window as status.lastAnalysis shows them (time and verdict are added by the caller)."""
    numbers: dict[str, Any] = {"windowSeconds": round(window_s, 3), "candidate": stats_json(cs),
                               "stable": stats_json(ss)}
    if stage == Stage.SHADOW:
        numbers["shadow"] = {"compared": sh.compared, "agreement": sh.agreement, "errors": sh.errors,
                             "errorRate": sh.error_rate, "p99Ms": sh.p99_ms}
    return numbers


def window_failures(stage: str, a: AnalysisSpec, cs: an.VersionStats,
                    sh: an.ShadowStats) -> list[tuple[str, str]]:
    """Every threshold the candidate breaks in one window, as (reason, message); the first names a rollback."""
    failures: list[tuple[str, str]] = []
    if stage == Stage.SHADOW:
        if sh.agreement is not None and sh.compared >= a.min_requests and sh.agreement < a.min_agreement:
            failures.append(("LowAgreement", f"agreement {sh.agreement:.4f} < {a.min_agreement}"))
        if sh.error_rate is not None and sh.error_rate > a.max_error_rate:
            failures.append(("HighErrorRate", f"shadow error rate {sh.error_rate:.4f} > {a.max_error_rate}"))
        if sh.p99_ms is not None and sh.p99_ms > a.max_latency_p99_ms:
            failures.append(("HighLatency", f"shadow p99 {sh.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms"))
    else:
        if cs.error_rate is not None and cs.error_rate > a.max_error_rate:
            failures.append(("HighErrorRate", f"error rate {cs.error_rate:.4f} > {a.max_error_rate}"))
        if cs.p99_ms is not None and cs.p99_ms > a.max_latency_p99_ms:
            failures.append(("HighLatency", f"p99 {cs.p99_ms:.1f}ms > {a.max_latency_p99_ms:g}ms"))
        if stage == Stage.CANARY and cs.feedback >= a.min_feedback and cs.accuracy is not None \
                and cs.accuracy < a.min_accuracy:
            failures.append(("LowAccuracy",
                             f"feedback accuracy {cs.accuracy:.4f} < {a.min_accuracy} (n={cs.feedback:.0f})"))
    return failures


def summary(stage: str, cs: an.VersionStats, ss: an.VersionStats, sh: an.ShadowStats) -> str:
    def one(s: an.VersionStats) -> str:
        return (f"v{s.version}: {s.requests:.0f} req, err {fmt(s.error_rate)}, p99 {fmt(s.p99_ms, '{:.1f}ms')}, "
                f"acc {fmt(s.accuracy)} (n={s.feedback:.0f})")
    text = f"candidate {one(cs)} | stable {one(ss)}"
    if stage == Stage.SHADOW:
        text += (f" | shadow: {sh.compared:.0f} compared, agreement {fmt(sh.agreement)}, "
                 f"err {fmt(sh.error_rate)}, p99 {fmt(sh.p99_ms, '{:.1f}ms')}")
    return text


def add_totals(totals: dict[str, Any], cs: an.VersionStats, ss: an.VersionStats) -> None:
    """Accumulate feedback per stage from reset-safe windows (the A/B verdict is judged on the whole test)."""
    for who, s in (("candidate", cs), ("stable", ss)):
        t = totals.setdefault(who, {"requests": 0.0, "errors": 0.0, "correct": 0.0, "wrong": 0.0})
        t["requests"] += s.requests
        t["errors"] += s.errors
        t["correct"] += s.correct
        t["wrong"] += s.wrong


@dataclass(frozen=True)
class ABVerdict:
    """How an A/B test ends: the candidate wins (promote), or the rollout ends as `outcome` for `reason`."""

    wins: bool
    message: str
    outcome: Phase | None = None
    reason: str | None = None
    report: dict[str, Any] | None = None  # status.lastAnalysis.abtest; None when too little feedback to test


def abtest_verdict(totals: dict[str, Any], candidate: int, stable: int, spec: RolloutSpec) -> ABVerdict:
    """The one-sided z-test of feedback accuracy over the whole test, by abtest.require and abtest.confidence."""
    c, s = totals["candidate"], totals["stable"]
    nc, ns = c["correct"] + c["wrong"], s["correct"] + s["wrong"]
    pc = c["correct"] / nc if nc else 0.0
    ps = s["correct"] / ns if ns else 0.0
    ab = spec.abtest
    numbers = (f"candidate v{candidate} accuracy {pc:.4f} (n={nc:.0f}) vs stable v{stable} "
               f"{ps:.4f} (n={ns:.0f})")
    if min(nc, ns) < ab.min_samples:
        return ABVerdict(False, f"A/B test over: {numbers}; each side needs abtest.minSamples {ab.min_samples}",
                         Phase.FAILED, "NotEnoughFeedback")
    z = an.one_sided_z(pc, nc, ps, ns)
    zc = an.z_for_confidence(ab.confidence)
    report = {"z": None if math.isinf(z) else z, "zCritical": zc, "candidateAccuracy": pc, "stableAccuracy": ps,
              "candidateN": nc, "stableN": ns}
    rule = (f"z={z:.2f}, critical {zc:.2f} at confidence {ab.confidence} "
            f"({'candidate must be better' if ab.require == 'better' else 'candidate must not be worse'})")
    wins = z >= zc if ab.require == "better" else z > -zc
    if wins and pc >= spec.analysis.min_accuracy:
        return ABVerdict(True, f"A/B test won: {numbers}; {rule}", report=report)
    if wins:
        return ABVerdict(False, f"A/B test: {numbers}; candidate below analysis.minAccuracy "
                                f"{spec.analysis.min_accuracy}", Phase.ROLLED_BACK, "LowAccuracy", report)
    return ABVerdict(False, f"A/B test lost: {numbers}; {rule}", Phase.ROLLED_BACK, "LostABTest", report)
