"""How the demo reads `mnist-operator local` output (format of operator/mnist_operator/local.py)."""

from __future__ import annotations

import io

from mnist_operator.local import progress_line

from scripts.demo.operator_output import Decision, OperatorView, final_phase


def test_event_lines_become_decisions_with_their_numbers():
    view = OperatorView()
    shown = view.feed("06:12:01 Warning AnalysisFailed: check 1/2 failed: feedback accuracy 0.1000 < 0.93 (n=20)")
    assert shown == Decision(
        "06:12:01", "Warning", "AnalysisFailed", "check 1/2 failed: feedback accuracy 0.1000 < 0.93 (n=20)"
    )
    assert shown.render().startswith("  !! 06:12:01 AnalysisFailed: check 1/2")
    assert view.feed("06:12:05 Normal  CanaryStep: step 2/3: 50% to v2").render().startswith("  >> ")
    assert [d.reason for d in view.decisions] == ["AnalysisFailed", "CanaryStep"]


def test_progress_lines_update_phase_stage_step_and_weight_silently():
    view = OperatorView()
    status = {
        "phase": "Progressing",
        "stage": "Canary",
        "step": 1,
        "candidateWeight": 50,
        "failedChecks": 0,
        "lastAnalysis": {
            "candidate": {"version": 2, "requests": 30, "errorRate": 0.0, "p99Ms": 12.0, "accuracy": 0.97}
        },
    }
    assert view.feed(progress_line(status, 3)) is None
    assert (view.phase, view.stage, view.step, view.candidate_weight) == ("Progressing", "Canary", 2, 50)
    assert view.feed(progress_line({"phase": "Progressing", "stage": "Gate"}, 3)) is None
    assert (view.stage, view.step) == ("Gate", None)


def test_the_last_line_gives_phase_and_reason():
    view = OperatorView()
    assert view.feed("RolledBack reason: LowAccuracy: rolling back to v2: 2 consecutive failed checks") is None
    assert view.phase == "RolledBack"
    assert view.reason == "LowAccuracy: rolling back to v2: 2 consecutive failed checks"


def test_other_lines_are_shown_as_they_are():
    view = OperatorView()
    line = "mnist-operator local: rollout.yaml: invalid spec: canary.steps: must be strictly increasing"
    assert view.feed(line) == line and view.other == [line]
    assert view.feed("   ") is None


def test_final_phase_trusts_printed_phase_only_with_the_documented_exit_code():
    assert final_phase(OperatorView(phase="Promoted"), 0) == "Promoted"
    assert final_phase(OperatorView(phase="RolledBack"), 1) == "RolledBack"
    assert final_phase(OperatorView(phase="RolledBack"), 0) == "Failed", "exit 0 means Promoted only"
    assert final_phase(OperatorView(phase="Progressing"), 3) == "Failed"
    assert final_phase(OperatorView(), 2) == "Failed"


def test_progress_line_output_stream_is_parsed_end_to_end():
    """Lines exactly as run_local writes them to a non-tty stream."""
    out = io.StringIO()
    out.write(progress_line({"phase": "Progressing", "stage": "Canary", "step": 0, "candidateWeight": 25}, 3) + "\n")
    view = OperatorView()
    for line in out.getvalue().splitlines():
        view.feed(line)
    assert (view.step, view.candidate_weight) == (1, 25)
