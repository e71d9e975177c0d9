"""ModelVersion registration: the object built, when it runs, and that failure never fails training."""

from __future__ import annotations

import pytest
from trainer.register import API_VERSION, GROUP, PLURAL, build_model_version, register, should_register

METRICS = {"model": "mnist", "version": 4, "test_accuracy": 0.9931, "created": "2026-11-27T06:00:00Z",
           "dataset_sha256": "ab" * 32, "git_commit": "0123abc"}


def test_model_version_object_follows_the_contract():
    body = build_model_version(METRICS, "/models/mnist/4", "ml")
    assert body["apiVersion"] == "ml.mnist-platform.dev/v1alpha1"
    assert body["kind"] == "ModelVersion"
    assert body["metadata"]["name"] == "mnist-v4" and body["metadata"]["namespace"] == "ml"
    assert body["spec"] == {"model": "mnist", "version": 4, "path": "/models/mnist/4", "testAccuracy": 0.9931,
                            "created": "2026-11-27T06:00:00Z", "datasetSha256": "ab" * 32, "gitCommit": "0123abc"}
    assert "status" not in body  # the operator's to write


@pytest.mark.parametrize(("mode", "env", "token", "expected"), [
    ("auto", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, True, True),
    ("auto", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, False, False),
    ("auto", {}, True, False),
    ("never", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, True, False),
    ("always", {}, False, True),
])
def test_registration_runs_only_in_a_cluster_unless_told(mode, env, token, expected):
    assert should_register(mode, env, token) is expected


def test_registration_failure_is_one_warning_not_an_exception(tmp_path):
    # A kubeconfig pointing at a port where nothing listens: the client fails, register() only warns.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    lines: list[str] = []
    env = {"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": "ml"}
    assert register("always", METRICS, tmp_path / "4", log=lines.append, env=env) is False
    assert len(lines) == 1 and lines[0].startswith("WARNING: could not register ModelVersion mnist-v4")


def test_registration_is_skipped_outside_a_cluster():
    lines: list[str] = []
    assert register("auto", METRICS, "/models/mnist/4", log=lines.append, env={}) is False
    assert lines == []


def test_registration_creates_then_updates_the_model_version_in_an_api_server(cluster):
    # A real API server with the chart's CRDs: the object must pass the ModelVersion schema to be stored.
    env = {"KUBECONFIG": str(cluster.kubeconfig), "POD_NAMESPACE": cluster.namespace}
    lines: list[str] = []
    assert register("always", METRICS, "/models/mnist/4", log=lines.append, env=env) is True
    assert lines == [f"ModelVersion {cluster.namespace}/mnist-v4 created"]
    stored = cluster.get("ml.mnist-platform.dev/v1alpha1", "ModelVersion", "mnist-v4")
    assert stored["spec"] == build_model_version(METRICS, "/models/mnist/4", cluster.namespace)["spec"]
    # Re-publishing the same version number (e.g. a store rebuilt from scratch) updates the spec.
    assert register("always", {**METRICS, "test_accuracy": 0.995}, "/models/mnist/4", log=lines.append, env=env)
    assert lines[-1] == f"ModelVersion {cluster.namespace}/mnist-v4 updated"
    stored = cluster.get("ml.mnist-platform.dev/v1alpha1", "ModelVersion", "mnist-v4")
    assert stored["spec"]["testAccuracy"] == 0.995


def test_the_trainer_and_the_operator_build_the_same_model_version():
    """Two writers of ModelVersion (the trainer, the operator's store discovery): one name, label and spec."""
    from mnist_operator import config, versions

    assert (GROUP, API_VERSION, PLURAL) == (
        config.GROUP, config.VERSION, config.MODELVERSION_PLURAL)
    trainer = build_model_version(METRICS, "/models/mnist/4", "ml")
    operator = versions.modelversion_manifest("mnist", 4, "/models/mnist/4", METRICS, "ml")
    assert {k: v for k, v in trainer.items() if k != "metadata"} == {k: v for k, v in operator.items()
                                                                     if k != "metadata"}
    assert (trainer["metadata"]["name"], trainer["metadata"]["namespace"]) == (
        operator["metadata"]["name"], operator["metadata"]["namespace"])
    model_label = f"{config.GROUP}/model"
    assert trainer["metadata"]["labels"][model_label] == operator["metadata"]["labels"][model_label] == "mnist"
    # Only the trainer says who made it; the operator's discovery leaves the app.kubernetes.io labels out.
    assert set(trainer["metadata"]["labels"]) - set(operator["metadata"]["labels"]) == {
        "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
