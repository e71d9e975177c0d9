"""Every TF Serving replica, and whether a version is AVAILABLE on each of them.

The model config reaches each TF Serving pod on its own (the kubelet syncs a mounted ConfigMap with a delay of up
to about a minute), so replicas load a version at different times. Asking through the Service sees one random
pod; a version is only safe to route to, or to move a label to, when every ready replica has it. Where the
replica addresses come from (first that is set):

- fixed REST base URLs, one per replica (MNIST_OPERATOR_SERVING_REPLICAS; `local --serving-rest` given more than
  once): local mode, tests, networks where the operator cannot read EndpointSlices;
- the EndpointSlices of the serving REST Service (MNIST_OPERATOR_SERVING_SERVICE): its ready endpoints, so a pod
  that joins mid-rollout is counted from the moment it is Ready and a terminating one is not;
- the one URL MNIST_OPERATOR_SERVING_REST: a Service address, so each call reaches one pod (no per-replica view).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from mnist_operator.versions import serving_available

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller on every slice of a Service
REST_PORT_NAME = "rest"  # the chart's REST Service names its port so (charts/mnist-platform/templates/serving-services.yaml)
MAX_PARALLEL = 8  # status calls in flight at once: an HPA may run many replicas, each call has its own timeout


def ready_rest_urls(slices: Iterable[dict[str, Any]], port_name: str = REST_PORT_NAME) -> list[str]:
    """REST base URLs of the ready endpoints of EndpointSlice objects (as the API serves them, JSON).

    Ready follows the EndpointSlice API (discovery.k8s.io/v1 EndpointConditions): `ready` absent counts as true,
    false means not ready or terminating (the controller sets it false on a terminating pod unless the Service
    publishes not-ready addresses). The addresses of one endpoint are fungible (the API says clients may use the
    first). The port is the one named `port_name`, or the only port of a slice with one; FQDN slices are skipped.
    """
    urls = set()
    for s in slices:
        if not isinstance(s, dict) or s.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in s.get("ports") or [] if isinstance(p, dict) and isinstance(p.get("port"), int)]
        named = [p for p in ports if p.get("name") == port_name]
        port = named[0] if named else (ports[0] if len(ports) == 1 else None)
        if port is None:
            continue
        for endpoint in s.get("endpoints") or []:
            if not isinstance(endpoint, dict):
                continue
            addresses = endpoint.get("addresses")
            if (endpoint.get("conditions") or {}).get("ready") is False or not addresses:
                continue
            host = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
            urls.add(f"http://{host}:{port['port']}")
    return sorted(urls)


def list_service_slices(discovery_api: Any, namespace: str, service: str) -> list[dict[str, Any]]:
    """The EndpointSlices of one Service (discovery.k8s.io/v1), as JSON objects; ApiException when refused."""
    response = discovery_api.list_namespaced_endpoint_slice(
        namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}", _preload_content=False)
    items = json.loads(response.data).get("items")
    return items if isinstance(items, list) else []


def version_on_every_replica(urls: Sequence[str], model: str, version: int, timeout_s: float,
                             session: requests.Session | None = None) -> tuple[bool, str]:
    """(AVAILABLE on every replica, what was seen). No replica: not available (nothing could serve it)."""
    if not urls:
        return False, "no ready TF Serving replica"
    if len(urls) == 1:
        seen = [serving_available(urls[0], model, version, timeout_s, session)]
    else:  # in parallel, each with its own connection (a requests.Session is not safe to share across threads)
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(urls))) as pool:
            seen = list(pool.map(lambda u: serving_available(u, model, version, timeout_s), urls))
    missing = [what for ok, what in seen if not ok]
    if not missing:
        return True, f"AVAILABLE on all {len(urls)} TF Serving replica(s)"
    shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
    return False, f"AVAILABLE on {len(urls) - len(missing)} of {len(urls)} TF Serving replicas; {shown}"
