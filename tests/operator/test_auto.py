"""Auto-rollout: a new version that passes the gate starts a rollout from the model's newest template."""

from __future__ import annotations

from mnist_operator.auto import auto_rollout, pick_template
from mnist_operator.spec import parse_spec


def mr(name: str, created: str, candidate: int, enabled: bool = True, model: str = "mnist", **spec) -> dict:
    return {"apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": "ml", "creationTimestamp": created},
            "spec": {"model": model, "candidateVersion": candidate, "stableVersion": candidate - 1,
                     "autoRollout": {"enabled": enabled}, "gate": {"minOfflineAccuracy": 0.95}, **spec}}


def test_newest_enabled_rollout_of_the_model_is_the_template():
    items = [mr("a", "2026-01-01T00:00:00Z", 2), mr("b", "2026-01-02T00:00:00Z", 3),
             mr("c", "2026-01-03T00:00:00Z", 4, enabled=False), mr("d", "2026-01-04T00:00:00Z", 5, model="other")]
    assert pick_template(items, "mnist")["metadata"]["name"] == "b"
    assert pick_template(items, "fashion") is None


def test_a_new_version_passing_the_gate_gets_a_rollout_with_the_templates_spec():
    template = mr("mnist-v3", "2026-01-02T00:00:00Z", 3, strategy="shadow", paused=True)
    body, why = auto_rollout(template, 4, 0.97)
    assert body["metadata"]["name"] == "mnist-v4" and "passes the gate" in why
    spec = parse_spec(body["spec"])
    assert spec.candidate_version == 4 and spec.stable_version is None and spec.strategy == "shadow"
    assert not spec.paused and spec.auto_rollout.enabled  # it is the template for the next one


def test_old_or_weak_versions_start_nothing():
    template = mr("mnist-v3", "2026-01-02T00:00:00Z", 3)
    assert auto_rollout(template, 3, 0.99)[0] is None
    body, why = auto_rollout(template, 5, 0.5)
    assert body is None and "does not pass" in why
    assert auto_rollout(template, 5, None)[0] is None
