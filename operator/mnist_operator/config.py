"""Every environment variable the operator reads, as data (the chart and the tests import ENV_SETTINGS)."""

from __future__ import annotations

import os
from dataclasses import dataclass

GROUP = "ml.mnist-platform.dev"
VERSION = "v1alpha1"
ROLLOUT_PLURAL = "modelrollouts"
MODELVERSION_PLURAL = "modelversions"


@dataclass(frozen=True)
class EnvSetting:
    name: str
    default: str
    help: str


ENV_SETTINGS: dict[str, EnvSetting] = {
    s.name: s
    for s in (
        EnvSetting("MNIST_OPERATOR_NAMESPACE", "", "namespace to watch; empty: cluster-wide (--namespace overrides)"),
        EnvSetting("MNIST_OPERATOR_KUBECONFIG", "", "kubeconfig file to log in with; empty: in-cluster, then $KUBECONFIG"),
        EnvSetting("MNIST_OPERATOR_SERVING_CONFIGMAP", "mnist-serving-config", "ConfigMap holding TF Serving's model config ({model} is replaced by the model name); "
                   "empty: no TF Serving (the frontend serves from the model store), only the routing is written"),
        EnvSetting("MNIST_OPERATOR_SERVING_CONFIGMAP_KEY", "models.config", "key of the model config in that ConfigMap"),
        EnvSetting("MNIST_OPERATOR_ROUTING_CONFIGMAP", "mnist-routing", "ConfigMap holding the frontend's routing config ({model} is replaced)"),
        EnvSetting("MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY", "routing.json", "key of the routing config in that ConfigMap"),
        EnvSetting(
            "MNIST_OPERATOR_FRONTEND_SELECTOR",
            "app.kubernetes.io/component=frontend",
            "label selector of the frontend pods whose /metrics are scraped",
        ),
        EnvSetting("MNIST_OPERATOR_METRICS_PORT", "8080", "port of the frontend pods' metrics endpoint"),
        EnvSetting("MNIST_OPERATOR_METRICS_PATH", "/metrics", "path of the frontend pods' metrics endpoint"),
        EnvSetting(
            "MNIST_OPERATOR_METRICS_URLS",
            "",
            "comma-separated fixed /metrics URLs scraped instead of discovering pods (tests, unusual networks)",
        ),
        EnvSetting("MNIST_OPERATOR_PROMETHEUS_URL", "", "Prometheus base URL; when set, metrics come from it, not from pods"),
        EnvSetting(
            "MNIST_OPERATOR_SERVING_REST",
            "",
            "TF Serving REST base URL for the model-status (AVAILABLE) gate; empty: check the model store instead",
        ),
        EnvSetting(
            "MNIST_OPERATOR_SERVING_SERVICE",
            "",
            "TF Serving REST Service whose EndpointSlices list the replicas (ready endpoints, port named rest): a "
            "version counts as AVAILABLE only when every ready replica reports it; empty: the replicas below, else "
            "MNIST_OPERATOR_SERVING_REST alone",
        ),
        EnvSetting(
            "MNIST_OPERATOR_SERVING_REPLICAS",
            "",
            "comma-separated fixed TF Serving REST base URLs, one per replica, instead of EndpointSlices (tests, "
            "unusual networks)",
        ),
        EnvSetting(
            "MNIST_OPERATOR_MODEL_BASE_PATH",
            "",
            "model store root holding <model>/<version>/ (read-only mount); used for the gate and version discovery",
        ),
        EnvSetting(
            "MNIST_OPERATOR_SERVING_BASE_PATH_TEMPLATE",
            "/models/{model}",
            "base_path written into TF Serving's model config ({model} is replaced), as TF Serving's pod sees it",
        ),
        EnvSetting("MNIST_OPERATOR_HTTP_TIMEOUT_S", "2.0", "timeout of each scrape / TF Serving status call, seconds"),
        EnvSetting("MNIST_OPERATOR_MAX_TICK_S", "5.0", "longest sleep between two decisions of one rollout, seconds"),
    )
}


def env(name: str, environ: dict[str, str] | None = None) -> str:
    """The value of one declared setting (its default when unset)."""
    source = os.environ if environ is None else environ
    return source.get(name, ENV_SETTINGS[name].default)


@dataclass(frozen=True)
class OperatorConfig:
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
    http_timeout_s: float
    max_tick_s: float

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        def e(name: str) -> str:
            return env(name, environ)

        return cls(
            namespace=e("MNIST_OPERATOR_NAMESPACE"),
            kubeconfig=e("MNIST_OPERATOR_KUBECONFIG"),
            serving_configmap=e("MNIST_OPERATOR_SERVING_CONFIGMAP"),
            serving_key=e("MNIST_OPERATOR_SERVING_CONFIGMAP_KEY"),
            routing_configmap=e("MNIST_OPERATOR_ROUTING_CONFIGMAP"),
            routing_key=e("MNIST_OPERATOR_ROUTING_CONFIGMAP_KEY"),
            frontend_selector=e("MNIST_OPERATOR_FRONTEND_SELECTOR"),
            metrics_port=int(e("MNIST_OPERATOR_METRICS_PORT")),
            metrics_path=e("MNIST_OPERATOR_METRICS_PATH"),
            metrics_urls=tuple(u.strip() for u in e("MNIST_OPERATOR_METRICS_URLS").split(",") if u.strip()),
            prometheus_url=e("MNIST_OPERATOR_PROMETHEUS_URL"),
            serving_rest=e("MNIST_OPERATOR_SERVING_REST"),
            serving_service=e("MNIST_OPERATOR_SERVING_SERVICE"),
            serving_replicas=tuple(u.strip() for u in e("MNIST_OPERATOR_SERVING_REPLICAS").split(",") if u.strip()),
            model_base_path=e("MNIST_OPERATOR_MODEL_BASE_PATH"),
            http_timeout_s=float(e("MNIST_OPERATOR_HTTP_TIMEOUT_S")),
            max_tick_s=float(e("MNIST_OPERATOR_MAX_TICK_S")),
        )
