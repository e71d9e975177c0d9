"""Every setting of the operator, as data: environment variable, OperatorConfig field, default, parser, meaning.

`ENV_SETTINGS` is the single table others (the chart's tests, the CLI's help, the docs test) import;
`OperatorConfig.from_env()` fills every field from it, so each variable is named once, here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROUP = "ml.mnist-platform.dev"
VERSION = "v1alpha1"
ROLLOUT_PLURAL = "modelrollouts"
MODELVERSION_PLURAL = "modelversions"


def _url_list(text: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in text.split(",") if u.strip())


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable and the OperatorConfig field it fills."""

    name: str
    field: str
    default: str
    help: str
    parse: Callable[[str], Any] = str


ENV_SETTINGS: dict[str, EnvSetting] = {
    s.name: s
    for s in (
        EnvSetting("MNIST_OPERATOR_NAMESPACE", "namespace", "",
                   "namespace to watch; empty: cluster-wide (--namespace overrides)"),
        EnvSetting("MNIST_OPERATOR_KUBECONFIG", "kubeconfig", "",
                   "kubeconfig file to log in with; empty: in-cluster, then $KUBECONFIG"),
        EnvSetting("MNIST_OPERATOR_SERVING_CONFIGMAP", "serving_configmap", "mnist-serving-config",
                   "ConfigMap holding TF Serving's model config ({model} is replaced by the model name); "
                   "empty: no TF Serving (the frontend serves from the model store), only the routing is written"),
        EnvSetting("MNIST_OPERATOR_SERVING_CONFIGMAP_KEY", "serving_key", "models.config",
                   "key of the model config in that ConfigMap"),
        EnvSetting("MNIST_OPERATOR_ROUTING_CONFIGMAP", "routing_configmap", "mnist-routing",
                   "ConfigMap holding the frontend's routing config ({model} is replaced)"),
        EnvSetting("MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY", "routing_key", "routing.json",
                   "key of the routing config in that ConfigMap"),
        EnvSetting("MNIST_OPERATOR_FRONTEND_SELECTOR", "frontend_selector", "app.kubernetes.io/component=frontend",
                   "label selector of the frontend pods whose /metrics are scraped"),
        EnvSetting("MNIST_OPERATOR_METRICS_PORT", "metrics_port", "8080",
                   "port of the frontend pods' metrics endpoint", int),
        EnvSetting("MNIST_OPERATOR_METRICS_PATH", "metrics_path", "/metrics",
                   "path of the frontend pods' metrics endpoint"),
        EnvSetting("MNIST_OPERATOR_METRICS_URLS", "metrics_urls", "",
                   "comma-separated fixed /metrics URLs scraped instead of discovering pods (tests, unusual networks)",
                   _url_list),
        EnvSetting("MNIST_OPERATOR_PROMETHEUS_URL", "prometheus_url", "",
                   "Prometheus base URL; when set, metrics come from it, not from pods"),
        EnvSetting("MNIST_OPERATOR_SERVING_REST", "serving_rest", "",
                   "TF Serving REST base URL for the model-status (AVAILABLE) gate; empty: check the model store "
                   "instead"),
        EnvSetting("MNIST_OPERATOR_SERVING_SERVICE", "serving_service", "",
                   "TF Serving REST Service whose EndpointSlices list the replicas (ready endpoints, port named rest): "
                   "a version counts as AVAILABLE only when every ready replica reports it; empty: the replicas "
                   "below, else MNIST_OPERATOR_SERVING_REST alone"),
        EnvSetting("MNIST_OPERATOR_SERVING_REPLICAS", "serving_replicas", "",
                   "comma-separated fixed TF Serving REST base URLs, one per replica, instead of EndpointSlices "
                   "(tests, unusual networks)", _url_list),
        EnvSetting("MNIST_OPERATOR_MODEL_BASE_PATH", "model_base_path", "",
                   "model store root holding <model>/<version>/ (read-only mount); used for the gate and version "
                   "discovery"),
        EnvSetting("MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE", "serving_base_path_template", "/models/{model}",
                   "base_path written into TF Serving's model config ({model} is replaced), as TF Serving's pod "
                   "sees it"),
        EnvSetting("MNIST_OPERATOR_HTTP_TIMEOUT_S", "http_timeout_s", "2.0",
                   "timeout of each scrape / TF Serving status call, seconds", float),
        EnvSetting("MNIST_OPERATOR_MAX_TICK_S", "max_tick_s", "5.0",
                   "longest sleep between two decisions of one rollout, seconds", float),
        EnvSetting("POD_NAMESPACE", "pod_namespace", "",
                   "the operator's own namespace (the downward API), where discovered ModelVersions go when no one "
                   "namespace is watched; empty: the service account's namespace, else default"),
    )
}


def env(name: str, environ: dict[str, str] | None = None) -> str:
    """The value of one declared setting, as text (its default when unset)."""
    source = os.environ if environ is None else environ
    return source.get(name, ENV_SETTINGS[name].default)


@dataclass(frozen=True)
class OperatorConfig:
    """The settings, parsed: one field per row of ENV_SETTINGS."""

    namespace: str
    kubeconfig: str
    serving_configmap: str
    serving_key: str
    routing_configmap: str
    routing_key: str
    frontend_selector: str
    metrics_port: int
    metrics_path: str
    metrics_urls: tuple[str, ...]
    prometheus_url: str
    serving_rest: str
    serving_service: str
    serving_replicas: tuple[str, ...]
    model_base_path: str
    serving_base_path_template: str
    http_timeout_s: float
    max_tick_s: float
    pod_namespace: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        return cls(**{s.field: s.parse(env(s.name, environ)) for s in ENV_SETTINGS.values()})

