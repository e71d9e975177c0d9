"""Prometheus metrics of the frontend (names, labels and buckets are a contract with the operator: docs/CONTRACTS.md).

Each app gets its own registry (so tests can build many apps). Under gunicorn with several workers,
PROMETHEUS_MULTIPROC_DIR is set (gunicorn_conf does it) and /metrics aggregates every worker's files, so a
scrape of any worker sees the whole pod.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OUTCOMES = ("ok", "client_error", "backend_error")


class Metrics:
    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.predictions = Counter("mnist_frontend_predictions", "Prediction requests (one per request, not per image)",
                                   ["model", "version", "route", "outcome"], registry=r)
        self.latency = Histogram("mnist_frontend_prediction_latency_seconds",
                                 "Request latency including the backend call", ["model", "version", "route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("mnist_frontend_images", "Images predicted (batches count each image)",
                              ["model", "version"], registry=r)
        self.feedback = Counter("mnist_frontend_feedback", "Feedback on earlier predictions",
                                ["model", "version", "result"], registry=r)
        self.shadow_comparisons = Counter("mnist_frontend_shadow_comparisons",
                                          "Shadow copies compared with the primary answer",
                                          ["model", "primary_version", "shadow_version", "result"], registry=r)
        self.shadow_latency = Histogram("mnist_frontend_shadow_latency_seconds", "Backend latency of shadow copies",
                                        ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
        self.shadow_dropped = Counter("mnist_frontend_shadow_dropped",
                                      "Shadow copies dropped because the shadow pool was full", ["model"], registry=r)
        self.routing_generation = Gauge("mnist_frontend_routing_generation", "Generation of the routing config in use",
                                        ["model"], registry=r, multiprocess_mode="max")
        self.routing_reload_errors = Counter("mnist_frontend_routing_reload_errors",
                                             "Routing files that could not be used (the last good one was kept)",
                                             ["model"], registry=r)
        self.api_key_reload_errors = Counter("mnist_frontend_api_key_reload_errors",
                                             "API key files that could not be used (the last good one was kept)",
                                             ["model"], registry=r)
        self.feedback_claim_errors = Counter("mnist_frontend_feedback_claim_errors",
                                             "Feedback claims the pod's shared file could not record (counted by "
                                             "the worker alone)", ["model"], registry=r)
        self.backend_retries = Counter("mnist_frontend_backend_retries",
                                       "Predictions that met UNAVAILABLE on one TF Serving replica and were sent once "
                                       "to another; outcome of that second call", ["model", "outcome"], registry=r)
        self.backend_replicas = Gauge("mnist_frontend_backend_replicas",
                                      "TF Serving replicas (addresses) the serving name resolved to last", ["model"],
                                      registry=r, multiprocess_mode="livemostrecent")
        # Make the per-model series exist from the start, so rate() and absent() behave.
        self.routing_generation.labels(model).set(0)
        self.routing_reload_errors.labels(model)
        self.shadow_dropped.labels(model)
        self.feedback_claim_errors.labels(model)
        for outcome in ("ok", "error"):
            self.backend_retries.labels(model, outcome)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
