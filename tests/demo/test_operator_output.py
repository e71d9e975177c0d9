"""How the demo reads `mnist-operator local`: its --status-file and --events-file, as the operator writes them."""

from __future__ import annotations

import json

from mnist_operator.decide import Event
from mnist_operator.local import append_event, atomic_write

from scripts.demo.operator_output import Decision, OperatorFiles, OperatorView, final_phase


def files(tmp_path) -> OperatorFiles:
    return OperatorFiles(tmp_path / "status.json", tmp_path / "events.jsonl")


def test_events_become_decisions_in_order_each_once(tmp_path):
    followed, view = files(tmp_path), OperatorView()
    assert followed.poll(view) == []  # nothing written yet
    append_event(followed.events_path, "06:12:01", Event("Warning", "AnalysisFailed", "check 1/2 failed: acc 0.1"))
    append_event(followed.events_path, "06:12:05", Event("Normal", "CanaryStep", "step 2/3: 50% to v2"))
    new = followed.poll(view)
    assert new == [Decision("06:12:01", "Warning", "AnalysisFailed", "check 1/2 failed: acc 0.1"),
                   Decision("06:12:05", "Normal", "CanaryStep", "step 2/3: 50% to v2")]
    assert new[0].render() == "  !! 06:12:01 AnalysisFailed: check 1/2 failed: acc 0.1"
    assert new[1].render().startswith("  >> 06:12:05 CanaryStep")
    assert followed.poll(view) == [] and len(view.decisions) == 2


def test_a_line_still_being_appended_waits_for_its_end(tmp_path):
    followed, view = files(tmp_path), OperatorView()
    line = json.dumps({"time": "06:12:01", "type": "Normal", "reason": "Created", "message": "accepted"}) + "\n"
    with open(followed.events_path, "w") as f:
        f.write(line[:20])
    assert followed.poll(view) == []
    with open(followed.events_path, "a") as f:
        f.write(line[20:])
    assert [d.reason for d in followed.poll(view)] == ["Created"]


def test_the_status_gives_phase_stage_one_based_step_and_weight(tmp_path):
    followed, view = files(tmp_path), OperatorView()
    atomic_write(followed.status_path, json.dumps({"phase": "Progressing", "stage": "Canary", "step": 1,
                                                   "candidateWeight": 50}))
    followed.poll(view)
    assert (view.phase, view.stage, view.step, view.candidate_weight) == ("Progressing", "Canary", 2, 50)
    atomic_write(followed.status_path, json.dumps({"phase": "Progressing", "stage": "Loading"}))
    followed.poll(view)
    assert (view.stage, view.step, view.reason) == ("Loading", None, None)


def test_the_end_gives_phase_and_reason(tmp_path):
    view = OperatorView()
    view.take_status({"phase": "RolledBack", "stage": "Done", "reason": "LowAccuracy",
                      "message": "rolling back to v2: 2 consecutive failed checks"})
    assert (view.phase, view.reason) == ("RolledBack", "LowAccuracy: rolling back to v2: 2 consecutive failed checks")
    view.take_status({"phase": "Promoted", "stage": "Done", "reason": "Promoted", "message": "v2 is stable"})
    assert view.reason == "v2 is stable"


def test_files_of_an_earlier_run_are_removed_so_the_operator_starts_afresh(tmp_path):
    (tmp_path / "status.json").write_text('{"phase": "Promoted"}')
    (tmp_path / "events.jsonl").write_text('{"time": "1", "type": "Normal", "reason": "Old", "message": ""}\n')
    followed, view = files(tmp_path), OperatorView()
    assert followed.poll(view) == [] and view.phase == "Pending"


def test_final_phase_trusts_the_status_only_with_the_documented_exit_code():
    assert final_phase(OperatorView(phase="Promoted"), 0) == "Promoted"
    assert final_phase(OperatorView(phase="RolledBack"), 1) == "RolledBack"
    assert final_phase(OperatorView(phase="RolledBack"), 0) == "Failed", "exit 0 means Promoted only"
    assert final_phase(OperatorView(phase="Progressing"), 3) == "Failed"
    assert final_phase(OperatorView(), 2) == "Failed"
