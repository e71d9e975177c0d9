"""Register a published version as a ModelVersion resource (fail-soft: a warning, never a failed run)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

GROUP = "ml.mnist-platform.dev"
API_VERSION = "v1alpha1"
PLURAL = "modelversions"
TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
NAMESPACE_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MODES = ("auto", "always", "never")
REQUEST_TIMEOUT_S = 10


def should_register(mode: str, env: Mapping[str, str], token_present: bool) -> bool:
    """auto: only inside a cluster (service host set and a service-account token); always/never: as said."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and token_present


def model_version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def build_model_version(metrics: Mapping, path: str, namespace: str) -> dict:
    """The ModelVersion object for a published version (pure; status is the operator's to write)."""
    model, version = metrics["model"], int(metrics["version"])
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(model, version),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "mnist-platform",
                "app.kubernetes.io/managed-by": "mnist-trainer",
                f"{GROUP}/model": model,
            },
        },
        "spec": {
            "model": model,
            "version": version,
            "path": path,
            "testAccuracy": float(metrics["test_accuracy"]),
            "created": metrics["created"],
            "datasetSha256": metrics["dataset_sha256"],
            "gitCommit": metrics.get("git_commit"),
        },
    }


def current_namespace(env: Mapping[str, str]) -> str:
    """$POD_NAMESPACE, else the service account's namespace file, else default."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return NAMESPACE_PATH.read_text().strip() or "default"
    except OSError:
        return "default"


def _api(env: Mapping[str, str]):
    """A CustomObjectsApi from the in-cluster config, else from $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # Read $KUBECONFIG now: the kubernetes package only looks at it when first imported.
        config.load_kube_config(config_file=env.get("KUBECONFIG") or None)
    return client.CustomObjectsApi()


def create_or_update(body: dict, env: Mapping[str, str]) -> str:
    """Create the object; when it exists already, merge-patch its spec (a re-published version)."""
    from kubernetes.client.exceptions import ApiException

    api = _api(env)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL, body,
                                            _request_timeout=REQUEST_TIMEOUT_S)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    api.patch_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL, name,
                                       {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]},
                                       _request_timeout=REQUEST_TIMEOUT_S)
    return "updated"


def register(mode: str, metrics: Mapping, path: Path, log: Callable[[str], None] = print,
             env: Mapping[str, str] | None = None) -> bool:
    """Register when the mode says so; any failure is logged as one warning line. True when registered."""
    env = os.environ if env is None else env
    if not should_register(mode, env, TOKEN_PATH.exists()):
        return False
    try:
        body = build_model_version(metrics, str(path), current_namespace(env))
        outcome = create_or_update(body, env)
    except Exception as exc:  # fail-soft by contract: the model is published whatever happens here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"WARNING: could not register ModelVersion {metrics.get('model')}-v{metrics.get('version')}: "
            f"{type(exc).__name__}: {reason}")
        return False
    log(f"ModelVersion {body['metadata']['namespace']}/{body['metadata']['name']} {outcome}")
    return True
