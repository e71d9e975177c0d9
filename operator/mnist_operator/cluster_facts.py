"""The kopf shell's facts from the cluster: the routing in place, the TF Serving replicas and what each has loaded,
ModelVersions (else the model store), other rollouts of a model, frontend metrics. I/O only: what to gather when is
the core's (decide.facts_needed), what the facts mean is decide()'s.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import requests
from kubernetes.client.rest import ApiException

from mnist_operator import metrics_source, replicas, versions
from mnist_operator.analysis import Snapshot
from mnist_operator.config import GROUP, MODELVERSION_PLURAL, ROLLOUT_PLURAL, VERSION, OperatorConfig
from mnist_operator.observation import CandidateInfo

log = logging.getLogger("mnist_operator")
API_MESSAGE_LIMIT = 400  # characters of the API server's message quoted in logs, Events and the status


@dataclass
class Clients:
    cfg: OperatorConfig
    core: Any
    custom: Any
    http: requests.Session
    discovery: Any = None  # discovery.k8s.io/v1: the serving Service's EndpointSlices


def api_error_text(exc: ApiException, limit: int = API_MESSAGE_LIMIT) -> str:
    """What the API server said about a refused call, on one line of at most `limit` characters: the `message` of
    its Status body (for a 403 it names the verb, the resource, the object and the user), else the body, else the
    HTTP reason."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    text = ""
    if isinstance(body, str) and body.strip():
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        text = doc["message"] if isinstance(doc, dict) and isinstance(doc.get("message"), str) else body
    text = " ".join((text or str(exc.reason or "")).split()) or "no message"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_configmap_key(c: Clients, namespace: str, name: str, key: str) -> str | None:
    try:
        cm = c.core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return (cm.data or {}).get(key)


def routing_configmap(c: Clients, model: str) -> str:
    return c.cfg.routing_configmap.format(model=model)


def serving_configmap(c: Clients, model: str) -> str:
    return c.cfg.serving_configmap.format(model=model)


def current_routing(c: Clients, namespace: str, model: str) -> dict[str, Any] | None:
    text = read_configmap_key(c, namespace, routing_configmap(c, model), c.cfg.routing_key)
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def serving_base_path(c: Clients, model: str) -> str:
    return c.cfg.serving_base_path_template.format(model=model)


def serving_replicas(c: Clients, namespace: str) -> list[str] | None:
    """TF Serving REST base URLs to ask, one per replica where known (replicas.py); None: no TF Serving URL."""
    if c.cfg.serving_replicas:
        return list(c.cfg.serving_replicas)
    if c.cfg.serving_service:
        slices = replicas.list_service_slices(c.discovery, namespace, c.cfg.serving_service)
        return replicas.ready_rest_urls(slices)
    return [c.cfg.serving_rest] if c.cfg.serving_rest else None


def candidate_info(c: Clients, namespace: str, model: str, version: int,
                   serving: list[str] | None = None) -> CandidateInfo:
    """Gate facts about one version (the candidate, or the stable one): ModelVersion (else model store) for existence
    and accuracy; TF Serving (else store) for AVAILABLE: on every replica in `serving` (serving_replicas)."""
    info = CandidateInfo()
    try:
        mv = c.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, MODELVERSION_PLURAL,
                                                   versions.modelversion_name(model, version))
        acc = (mv.get("spec") or {}).get("testAccuracy")
        info = CandidateInfo(exists=True, test_accuracy=acc if isinstance(acc, int | float) else None,
                                  available=False, detail=f"ModelVersion {versions.modelversion_name(model, version)}")
    except ApiException as exc:
        if exc.status != 404:
            raise
    store = f"{c.cfg.model_base_path.rstrip('/')}/{model}" if c.cfg.model_base_path else ""
    if store:
        from_store = versions.store_candidate_info(store, version)
        if not info.exists and from_store.exists:
            register_version(c, namespace, model, version, store)
            info = from_store
        elif info.exists and info.test_accuracy is None:
            info = CandidateInfo(True, from_store.test_accuracy, False, info.detail)
    if serving is not None:
        ok, seen = replicas.version_on_every_replica(serving, model, version, c.cfg.http_timeout_s, c.http)
        return CandidateInfo(info.exists, info.test_accuracy, ok, seen)
    if store:
        ok = versions.store_candidate_info(store, version).available
        return CandidateInfo(info.exists, info.test_accuracy, ok, f"model store {store}/{version} (no TF Serving URL)")
    # Neither TF Serving nor the store is reachable from here: a registered version is taken as loadable.
    return CandidateInfo(info.exists, info.test_accuracy, info.exists, info.detail + " (no TF Serving URL)")


def register_version(c: Clients, namespace: str, model: str, version: int, store: str) -> bool:
    """Create the ModelVersion of a version found in the model store (fail-soft: the registry is informational)."""
    body = versions.modelversion_manifest(model, version, f"{store}/{version}", versions.store_metrics(store, version),
                                          namespace)
    try:
        c.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MODELVERSION_PLURAL, body)
    except ApiException as exc:
        if exc.status != 409:
            log.warning("cannot register ModelVersion %s/%s: HTTP %s: %s", namespace, body["metadata"]["name"],
                        exc.status, api_error_text(exc))
        return False
    log.info("registered ModelVersion %s/%s", namespace, body["metadata"]["name"])
    return True


def metrics_snapshot(c: Clients, namespace: str, model: str) -> Snapshot:
    cfg = c.cfg
    if cfg.prometheus_url:
        return metrics_source.query_prometheus(cfg.prometheus_url, model, cfg.http_timeout_s, c.http)
    if cfg.metrics_urls:
        urls = {u: u for u in cfg.metrics_urls}
    else:
        try:
            urls = metrics_source.ready_pod_urls(c.core, namespace, cfg.frontend_selector, cfg.metrics_port,
                                                 cfg.metrics_path)
        except ApiException as exc:
            return Snapshot(taken_at=time.time(),
                            errors=[f"listing frontend pods: HTTP {exc.status}: {api_error_text(exc, 200)}"])
        if not urls:
            return Snapshot(taken_at=time.time(), errors=[f"no ready pod matches {cfg.frontend_selector!r}"])
    return metrics_source.scrape_urls(urls, model, cfg.http_timeout_s, c.http)


def other_rollouts(c: Clients, namespace: str, model: str) -> list[tuple[str, str, str | None]]:
    items = c.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL).get("items", [])
    return [(f"{namespace}/{o['metadata']['name']}", o["metadata"].get("creationTimestamp") or "",
             (o.get("status") or {}).get("phase"))
            for o in items if (o.get("spec") or {}).get("model") == model]
