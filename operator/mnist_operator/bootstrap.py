"""What `mnist-operator run --create-configmaps --initial-rollout` adds: a fresh install that needs no manual step.

Importing this module registers its kopf handlers; the CLI imports it only when one of the flags is given, and
`enabled` says which duties are on.

- `--create-configmaps`: at start, the ConfigMaps named in the environment that do not exist are created with
  their initial content: the model config an empty `model_config_list` (TF Serving starts ready but empty), the
  routing ConfigMap without routing.json (the frontend routes to the default version). An existing one is never
  changed. A GitOps tool that cannot create an object once and then leave it alone (Argo CD re-applies its
  PreSync hooks on every sync) can so leave both to the operator.
- `--initial-rollout`: when a version is registered (ModelVersion created) while nothing routes to its model (the
  routing ConfigMap has no routing.json) and no ModelRollout of the model exists, the operator creates
  `<model>-initial` with that version as candidate; the decision core rolls it in at 100% (InitialVersion). So
  the first version trained after `helm install` serves as soon as it is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from mnist_operator import handlers
from mnist_operator.config import GROUP, MODELVERSION_PLURAL, ROLLOUT_PLURAL, VERSION, OperatorConfig
from mnist_operator.render import render_model_config

LABELS = {"app.kubernetes.io/managed-by": "mnist-operator"}


@dataclass(frozen=True)
class Enabled:
    create_configmaps: bool = False
    initial_rollout: bool = False


enabled = Enabled()


def initial_configmaps(cfg: OperatorConfig) -> list[dict[str, Any]]:
    """The operator's ConfigMaps with their initial content; a name with `{model}` waits for a rollout to name it."""
    wanted = []
    if cfg.serving_configmap and "{model}" not in cfg.serving_configmap:
        wanted.append((cfg.serving_configmap, {cfg.serving_key: render_model_config([])}))
    if cfg.routing_configmap and "{model}" not in cfg.routing_configmap:
        wanted.append((cfg.routing_configmap, {}))  # no routing.json: the default version, once one serves
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": dict(LABELS)},
             "data": data} for name, data in wanted]


def initial_rollout(model: str, version: int, rollouts: list[dict[str, Any]],
                    routing_text: str | None) -> tuple[dict[str, Any] | None, str]:
    """The ModelRollout that rolls a model's first version in, or None and why not."""
    if routing_text:
        return None, f"model {model} is routed already (routing.json exists)"
    owned = sorted((r.get("metadata") or {}).get("name", "") for r in rollouts
                   if (r.get("spec") or {}).get("model") == model)
    if owned:
        return None, f"model {model} has rollouts already: {', '.join(owned)}"
    name = f"{model}-initial".lower().replace("_", "-").replace(".", "-")[:63]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout",
            "metadata": {"name": name, "labels": {"ml.mnist-platform.dev/model": model}},
            # No stableVersion: with nothing routed the decision core treats it as the initial version.
            "spec": {"model": model, "candidateVersion": version}}
    return body, f"nothing serves model {model}: rolling its first registered version v{version} in ({name})"


def create_missing_configmaps(c: handlers.Clients, namespace: str) -> list[str]:
    """Create the initial ConfigMaps that do not exist (create only: one that exists answers 409 and stays)."""
    created = []
    for body in initial_configmaps(c.cfg):
        try:
            c.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        created.append(body["metadata"]["name"])
    return created


def _routing_text(c: handlers.Clients, namespace: str, model: str) -> str | None:
    try:
        cm = c.core.read_namespaced_config_map(handlers.routing_configmap(c, model), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return (cm.data or {}).get(c.cfg.routing_key)


@kopf.on.startup()
def create_configmaps(logger: logging.Logger, **_: Any) -> None:
    if not enabled.create_configmaps:
        return
    c = handlers.clients()
    if not c.cfg.namespace:
        logger.warning("--create-configmaps: no namespace to create them in (set MNIST_OPERATOR_NAMESPACE or "
                       "--namespace); nothing created")
        return
    try:
        created = create_missing_configmaps(c, c.cfg.namespace)
    except ApiException as exc:
        # Not fatal: the operator still runs; its first write creates a missing ConfigMap too.
        logger.warning(f"--create-configmaps: HTTP {exc.status}: {handlers.api_error_text(exc)}")
        return
    for name in created:
        logger.info(f"created ConfigMap {c.cfg.namespace}/{name} with its initial content")


def start_initial_rollout(c: handlers.Clients, namespace: str, model: str, version: int) -> tuple[str | None, str]:
    """Create the initial rollout of `model` when it needs one: (its name, why), or (None, why not)."""
    rollouts = c.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL).get("items", [])
    manifest, why = initial_rollout(model, version, rollouts, _routing_text(c, namespace, model))
    if manifest is None:
        return None, why
    manifest["metadata"]["namespace"] = namespace
    try:
        c.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL, manifest)
    except ApiException as exc:
        if exc.status == 409:
            return None, f"{manifest['metadata']['name']} exists already (another version's event created it)"
        raise
    return manifest["metadata"]["name"], why


@kopf.on.create(GROUP, VERSION, MODELVERSION_PLURAL)
def roll_in_first_version(namespace: str, spec: dict[str, Any], body: Any, logger: logging.Logger,
                          **_: Any) -> None:
    if not enabled.initial_rollout:
        return
    model, version = spec.get("model"), spec.get("version")
    if not isinstance(model, str) or not isinstance(version, int):
        return
    try:
        name, why = start_initial_rollout(handlers.clients(), namespace, model, version)
    except ApiException as exc:
        msg = f"cannot start the initial rollout of {model}: HTTP {exc.status}: {handlers.api_error_text(exc)}"
        logger.warning(msg)
        kopf.warn(body, reason="InitialRolloutFailed", message=msg)
        return
    if name is None:
        logger.info(f"no initial rollout: {why}")
        return
    logger.info(why)
    kopf.info(body, reason="InitialRollout", message=why)
