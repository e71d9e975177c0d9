"""Auto-rollout (pure): a newly registered version starts a rollout from the model's template rollout."""

from __future__ import annotations

import copy
from typing import Any

from mnist_operator.spec import SpecError, parse_spec


def pick_template(rollouts: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """The newest ModelRollout of `model` with spec.autoRollout.enabled (by creation time, then name)."""
    candidates = []
    for obj in rollouts:
        spec = obj.get("spec") or {}
        if spec.get("model") != model or not (spec.get("autoRollout") or {}).get("enabled"):
            continue
        try:
            parse_spec(spec)
        except SpecError:
            continue
        meta = obj.get("metadata") or {}
        candidates.append((meta.get("creationTimestamp") or "", meta.get("name") or "", obj))
    return max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


def auto_rollout(template: dict[str, Any], version: int, test_accuracy: float | None) -> tuple[dict[str, Any] | None,
                                                                                                 str]:
    """The ModelRollout to create for a new version, or None and why not."""
    spec = parse_spec(template["spec"])
    if version <= spec.candidate_version:
        return None, f"v{version} is not newer than the template's candidate v{spec.candidate_version}"
    need = spec.gate.min_offline_accuracy
    if need > 0 and (test_accuracy is None or test_accuracy < need):
        return None, f"v{version} offline accuracy {test_accuracy} does not pass gate.minOfflineAccuracy {need}"
    new_spec = copy.deepcopy(template["spec"])
    new_spec["candidateVersion"] = version
    new_spec.pop("stableVersion", None)  # whatever serves when it starts
    new_spec["paused"] = False
    meta = template.get("metadata") or {}
    name = f"{spec.model}-v{version}".lower().replace("_", "-").replace(".", "-")[:63]
    body = {"apiVersion": template.get("apiVersion", "ml.mnist-platform.dev/v1alpha1"), "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": meta.get("namespace"),
                         "labels": {"ml.mnist-platform.dev/model": spec.model,
                                    "ml.mnist-platform.dev/auto-rollout-from": meta.get("name", "")}},
            "spec": new_spec}
    return body, f"v{version} passes the gate: starting {name} from template {meta.get('name')}"
