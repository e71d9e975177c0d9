"""The counters TF Serving exports at /monitoring/prometheus/metrics, in its own text format.

Real names (tensorflow_serving/servables/tensorflow/util.cc, prometheus_exporter.cc):
  :tensorflow:serving:request_count{model_name,status}               counter, per Predict / REST call
  :tensorflow:serving:request_latency{model_name,API,entrypoint}      histogram in microseconds
  :tensorflow:cc:saved_model:load_attempt_count{model_path,status}    counter
plus one the real server does NOT have, for tests that need to know which version answered:
  :tensorflow:serving:standin:predict_count{model_name,version,entrypoint,status}
"""

from __future__ import annotations

import threading
from collections import defaultdict

# Buckets::Exponential(10, 1.8, 33), as request_latency uses.
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
STANDIN_PREDICT_COUNT = ":tensorflow:serving:standin:predict_count"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Thread-safe counters and latency histograms, rendered like TF Serving's PrometheusExporter."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], int]] = defaultdict(lambda: defaultdict(int))
        self._histograms: dict[tuple[tuple[str, str], ...], list[float]] = {}
        self._sums: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)

    def _inc(self, metric: str, labels: tuple[tuple[str, str], ...]) -> None:
        with self._mu:
            self._counters[metric][labels] += 1

    def record_request(self, model_name: str, status: str) -> None:
        """One API call (gRPC Predict, or any REST /v1 call), counted by final status name."""
        self._inc(REQUEST_COUNT, (("model_name", model_name), ("status", status)))

    def record_latency(self, model_name: str, api: str, entrypoint: str, latency_us: float) -> None:
        """Latency of a successful call (TF Serving records only those)."""
        key = (("model_name", model_name), ("API", api), ("entrypoint", entrypoint))
        with self._mu:
            counts = self._histograms.setdefault(key, [0] * (len(LATENCY_BUCKETS_US) + 1))
            index = next((i for i, limit in enumerate(LATENCY_BUCKETS_US) if latency_us < limit),
                         len(LATENCY_BUCKETS_US))
            counts[index] += 1
            self._sums[key] += latency_us

    def record_predict(self, model_name: str, version: int | None, entrypoint: str, status: str) -> None:
        """Stand-in only: which version answered a Predict ("" when none was resolved)."""
        self._inc(STANDIN_PREDICT_COUNT, (("model_name", model_name), ("version", "" if version is None else
                                                                        str(version)),
                                          ("entrypoint", entrypoint), ("status", status)))

    def record_load(self, model_path: str, *, ok: bool) -> None:
        self._inc(LOAD_ATTEMPT_COUNT, (("model_path", model_path), ("status", "success" if ok else "fail")))

    def predict_count(self, model_name: str, version: int | None = None, status: str = "OK") -> int:
        """Stand-in Predict calls so far for a model (and version), both transports."""
        with self._mu:
            return sum(n for labels, n in self._counters[STANDIN_PREDICT_COUNT].items()
                       if dict(labels)["model_name"] == model_name and dict(labels)["status"] == status
                       and (version is None or dict(labels)["version"] == str(version)))

    def render(self) -> str:
        """Prometheus text exposition, TF Serving style (no HELP lines, `# TYPE` per metric)."""
        lines: list[str] = []
        with self._mu:
            for metric in sorted(self._counters):
                lines.append(f"# TYPE {metric} counter")
                for labels, value in sorted(self._counters[metric].items()):
                    lines.append(f"{metric}{{{_labels(labels)}}} {value}")
            if self._histograms:
                lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
            for labels, counts in sorted(self._histograms.items()):
                cumulative = 0
                prefix = _labels(labels)
                for limit, count in zip((*LATENCY_BUCKETS_US, None), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if limit is None else f"{limit:g}"
                    lines.append(f'{REQUEST_LATENCY}_bucket{{{prefix},le="{le}"}} {cumulative}')
                lines.append(f"{REQUEST_LATENCY}_sum{{{prefix}}} {_number(self._sums[labels])}")
                lines.append(f"{REQUEST_LATENCY}_count{{{prefix}}} {cumulative}")
        return "\n".join(lines) + "\n"
