"""The demo adapts the example ModelRollout: which fields change, to what, and that the operator accepts it."""

from __future__ import annotations

import pytest

from scripts.demo.rollout import PROMOTE, ROLLBACK, Pace, adapt_rollout, floor_to, load_example, render_changes

EXAMPLE = {
    "apiVersion": "ml.mnist-platform.dev/v1alpha1",
    "kind": "ModelRollout",
    "metadata": {"name": "mnist-v4", "namespace": "default"},
    "spec": {
        "model": "mnist",
        "candidateVersion": 4,
        "stableVersion": 3,
        "strategy": "canary",
        "canary": {"steps": [10, 25, 50, 100], "stepDuration": "60s"},
        "analysis": {
            "interval": "15s",
            "minRequests": 50,
            "maxErrorRate": 0.01,
            "maxLatencyP99Ms": 250,
            "minAccuracy": 0.98,
            "failureLimit": 2,
        },
        "gate": {"minOfflineAccuracy": 0.99},
    },
}
ACCURACY = {1: 0.9512, 2: 0.9815, 3: 0.1032}


def test_promote_rolls_v2_out_over_v1_at_demo_pace():
    pace = Pace()
    doc, changes = adapt_rollout(EXAMPLE, PROMOTE, ACCURACY, pace)
    spec = doc["spec"]
    assert (spec["stableVersion"], spec["candidateVersion"]) == (1, 2)
    assert spec["canary"] == {"steps": list(pace.steps), "stepDuration": f"{pace.step_duration_s}s"}
    assert spec["analysis"]["interval"] == f"{pace.interval_s}s"
    assert spec["analysis"]["minRequests"] == pace.min_requests
    # Thresholds follow the stable version's measured accuracy, with 5 points of slack, rounded down.
    assert spec["analysis"]["minAccuracy"] == 0.90
    assert spec["gate"]["minOfflineAccuracy"] == 0.90
    assert spec["analysis"]["maxErrorRate"] == 0.01  # untouched fields stay as in the example
    assert doc["metadata"] == {"name": "mnist-v2-canary", "namespace": "default"}
    assert EXAMPLE["spec"]["candidateVersion"] == 4, "the example itself is not modified"
    assert all(change.why for change in changes)


def test_rollback_opens_the_gate_so_live_analysis_must_catch_the_broken_candidate():
    doc, changes = adapt_rollout(EXAMPLE, ROLLBACK, ACCURACY)
    spec = doc["spec"]
    assert (spec["stableVersion"], spec["candidateVersion"]) == (2, 3)
    assert spec["gate"]["minOfflineAccuracy"] == 0.0
    # The broken v3 (about chance) is far below the live floor derived from v2.
    assert spec["analysis"]["minAccuracy"] == 0.93 > ACCURACY[3]
    gate = next(c for c in changes if c.dotted == "spec.gate.minOfflineAccuracy")
    assert "broken" in gate.why and gate.old == 0.99


def test_changes_list_only_what_differs_and_renders_old_and_new():
    _, changes = adapt_rollout(EXAMPLE, PROMOTE, ACCURACY)
    dotted = {c.dotted for c in changes}
    assert "spec.model" not in dotted and "spec.strategy" not in dotted
    text = render_changes(changes, "k8s/examples/canary.yaml")
    assert "spec.candidateVersion: 4 -> 2" in text
    assert "spec.canary.steps: [10, 25, 50, 100] -> [" in text
    assert text.count("why:") == len(changes)


def test_missing_fields_are_added_and_shown_as_unset():
    bare = {"kind": "ModelRollout", "metadata": {"name": "x"}, "spec": {"model": "mnist", "candidateVersion": 9}}
    doc, changes = adapt_rollout(bare, PROMOTE, {})
    assert doc["spec"]["analysis"]["minAccuracy"] == 0.9  # no stable accuracy known: a fixed floor
    assert "(unset)" in render_changes(changes, "x.yaml")


def test_floor_to_never_rounds_up():
    assert floor_to(0.9599) == 0.95 and floor_to(0.93) == 0.93
    assert floor_to(0.95 - 0.05) == 0.9, "binary float error must not cost a point"


def test_load_example_finds_the_rollout_document(tmp_path):
    path = tmp_path / "multi.yaml"
    path.write_text("kind: ConfigMap\nmetadata: {name: c}\n---\nkind: ModelRollout\nmetadata: {name: r}\nspec: {}\n")
    assert load_example(path)["metadata"]["name"] == "r"
    (tmp_path / "none.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ValueError, match="no ModelRollout"):
        load_example(tmp_path / "none.yaml")


def test_feedback_minimum_scales_with_the_demo_traffic():
    doc, _ = adapt_rollout(EXAMPLE, PROMOTE, ACCURACY, Pace(min_feedback=7))
    assert doc["spec"]["analysis"]["minFeedback"] == 7


@pytest.mark.parametrize("scenario", [PROMOTE, ROLLBACK], ids=lambda s: s.name)
def test_the_adapted_real_example_is_a_spec_the_operator_accepts(repo_root, scenario):
    """k8s/examples/canary.yaml after the demo's changes passes the operator's own validation."""
    from mnist_operator.spec import parse_spec

    doc, changes = adapt_rollout(load_example(repo_root / "k8s" / "examples" / "canary.yaml"), scenario, ACCURACY)
    parsed = parse_spec(doc["spec"])
    assert (parsed.stable_version, parsed.candidate_version) == (scenario.stable, scenario.candidate)
    assert parsed.canary.steps == Pace().steps
    assert parsed.step_duration_s == Pace().step_duration_s and parsed.interval_s == Pace().interval_s
    assert changes, "the example's production pace is always adapted"
