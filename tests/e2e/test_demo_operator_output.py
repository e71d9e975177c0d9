"""How the demo reads `mnist-operator local` output: phase, step, reason, and the final outcome."""

from __future__ import annotations

from scripts.demo.operator_output import OperatorView, final_phase


def test_phase_step_and_reason_are_picked_up_from_lines():
    view = OperatorView()
    assert view.feed("phase=Progressing step=2/3 candidateWeight=50")
    assert (view.phase, view.step) == ("Progressing", 2)
    assert view.feed("RolledBack reason: accuracy 0.10 < 0.93 (2 failed checks)")
    assert view.phase == "RolledBack" and view.reason == "accuracy 0.10 < 0.93 (2 failed checks)"


def test_blank_and_chatty_lines_are_not_decisions():
    view = OperatorView()
    assert not view.feed("   ")
    assert not view.feed("scraping http://127.0.0.1:8080/metrics")
    assert view.phase == "Pending"


def test_final_phase_trusts_printed_phase_and_exit_code_together():
    promoted, rolled = OperatorView(phase="Promoted"), OperatorView(phase="RolledBack")
    assert final_phase(promoted, 0) == "Promoted"
    assert final_phase(rolled, 3) == "RolledBack"
    assert final_phase(rolled, 0) == "Failed", "exit 0 means Promoted only; anything else is contradictory"
    assert final_phase(OperatorView(), 0) == "Promoted"
    assert final_phase(OperatorView(), 1) == "Failed"
    assert final_phase(OperatorView(phase="Progressing"), None) == "Failed"
