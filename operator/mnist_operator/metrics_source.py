"""Where the frontend's metrics come from: scraped pods (found through the API), fixed URLs, or Prometheus.

Every source returns an analysis.Snapshot of raw counters per frontend process; the arithmetic lives in analysis.py.
A source that cannot be read is listed in Snapshot.errors; an empty snapshot makes the check inconclusive.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from mnist_operator.analysis import LATENCY_BUCKETS, PodCounters, Snapshot

PREDICTIONS = "mnist_frontend_predictions_total"
LATENCY = "mnist_frontend_prediction_latency_seconds"
FEEDBACK = "mnist_frontend_feedback_total"
SHADOW = "mnist_frontend_shadow_comparisons_total"
SHADOW_LATENCY = "mnist_frontend_shadow_latency_seconds"
GENERATION = "mnist_frontend_routing_generation"


def _bucket_index(le: str) -> int | None:
    bound = math.inf if le in ("+Inf", "inf", "Inf") else float(le)
    for i, b in enumerate(LATENCY_BUCKETS):
        if math.isclose(b, bound) or (math.isinf(b) and math.isinf(bound)):
            return i
    return None  # a bucket layout we do not know: ignored rather than misread


def counters_from_samples(samples: Iterable[tuple[str, dict[str, str], float]], model: str) -> PodCounters:
    """Fold (name, labels, value) samples of one process into the counters of one model."""
    pc = PodCounters()
    for name, labels, value in samples:
        if labels.get("model") != model:
            continue
        if name == PREDICTIONS:
            key = f"{labels.get('version', '')}|{labels.get('outcome', '')}"
            pc.requests[key] = pc.requests.get(key, 0.0) + value
        elif name == FEEDBACK:
            key = f"{labels.get('version', '')}|{labels.get('result', '')}"
            pc.feedback[key] = pc.feedback.get(key, 0.0) + value
        elif name == SHADOW:
            key = f"{labels.get('primary_version', '')}|{labels.get('shadow_version', '')}|{labels.get('result', '')}"
            pc.shadow[key] = pc.shadow.get(key, 0.0) + value
        elif name in (LATENCY + "_bucket", SHADOW_LATENCY + "_bucket"):
            i = _bucket_index(labels.get("le", ""))
            if i is None:
                continue
            target = pc.latency if name.startswith(LATENCY) else pc.shadow_latency
            buckets = target.setdefault(labels.get("version", ""), [0.0] * len(LATENCY_BUCKETS))
            buckets[i] += value  # summed over routes: per-version latency
        elif name == GENERATION:
            # Several worker processes may each report one: the routing in force everywhere is the lowest.
            pc.routing_generation = value if pc.routing_generation is None else min(pc.routing_generation, value)
    return pc


def parse_exposition(text: str, model: str) -> PodCounters:
    """Prometheus text exposition of one frontend process -> its counters for `model`."""
    samples = ((s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples)
    return counters_from_samples(samples, model)


def scrape_urls(urls: dict[str, str], model: str, timeout_s: float, session: requests.Session | None = None,
                clock: Callable[[], float] = time.time) -> Snapshot:
    """GET each /metrics URL (pod id -> URL) and fold them into one snapshot."""
    http = session or requests.Session()
    snap = Snapshot(taken_at=clock())
    for pod, url in urls.items():
        try:
            resp = http.get(url, timeout=timeout_s)
            resp.raise_for_status()
            snap.pods[pod] = parse_exposition(resp.text, model)
        except (requests.RequestException, ValueError) as exc:
            snap.errors.append(f"{pod}: {type(exc).__name__}: {str(exc)[:120]}")
    return snap


def ready_pod_urls(core_api: Any, namespace: str, selector: str, port: int, path: str) -> dict[str, str]:
    """Ready pods matching a label selector -> {namespace/name: http://ip:port/path} (kubernetes client objects)."""
    pods = core_api.list_namespaced_pod(namespace, label_selector=selector).items
    urls = {}
    for pod in pods:
        conds = (pod.status.conditions or []) if pod.status else []
        ready = any(c.type == "Ready" and c.status == "True" for c in conds)
        ip = pod.status.pod_ip if pod.status else None
        if ready and ip and not pod.metadata.deletion_timestamp:
            urls[f"{pod.metadata.namespace}/{pod.metadata.name}"] = f"http://{ip}:{port}{path}"
    return urls


def query_prometheus(base_url: str, model: str, timeout_s: float, session: requests.Session | None = None,
                     clock: Callable[[], float] = time.time) -> Snapshot:
    """Raw series from Prometheus, one pod per scrape target, so resets are handled exactly like direct scrapes."""
    http = session or requests.Session()
    snap = Snapshot(taken_at=clock())
    per_pod: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    names = (PREDICTIONS, FEEDBACK, SHADOW, LATENCY + "_bucket", SHADOW_LATENCY + "_bucket", GENERATION)
    for name in names:
        try:
            resp = http.get(base_url.rstrip("/") + "/api/v1/query", params={"query": f'{name}{{model="{model}"}}'},
                            timeout=timeout_s)
            resp.raise_for_status()
            body = resp.json()
            if body.get("status") != "success":
                raise ValueError(body.get("error", "query failed"))
        except (requests.RequestException, ValueError) as exc:
            snap.errors.append(f"prometheus {name}: {type(exc).__name__}: {str(exc)[:120]}")
            return Snapshot(taken_at=snap.taken_at, errors=snap.errors)  # partial data would skew the window
        for series in body["data"]["result"]:
            labels = dict(series["metric"])
            pod = labels.get("pod") or labels.get("instance") or "prometheus"
            per_pod.setdefault(f"{labels.get('namespace', '')}/{pod}", []).append(
                (labels.pop("__name__", name), labels, float(series["value"][1])))
    for pod, samples in per_pod.items():
        snap.pods[pod] = counters_from_samples(samples, model)
    return snap
