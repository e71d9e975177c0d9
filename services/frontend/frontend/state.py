"""The app's long-lived resources (backend, reloaders, metrics, stores), created once per app and reached through
`get_state()`, the way flaskr reaches its database."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from frontend.auth import ApiKey, parse_key_file
from frontend.backends import Backend, BackendEvents, make_backend
from frontend.claims import Claims, SharedClaims
from frontend.errors import ConfigError
from frontend.feedback import AnswerStore
from frontend.metrics import Metrics
from frontend.parse import Limits
from frontend.pipeline import Predictor
from frontend.preprocess import DecodeBudget
from frontend.reloader import ReloadingFile
from frontend.routing import RoutingConfig, parse_routing_text
from frontend.shadow import ShadowSender

log = logging.getLogger(__name__)
EXTENSION = "mnist_frontend"
# Set by gunicorn's master (gunicorn_conf) so that all its workers sign feedback tokens alike.
FEEDBACK_KEY_ENV = "MNIST_FEEDBACK_KEY"


@dataclass
class FrontendState:
    config: dict[str, Any]
    metrics: Metrics
    backend: Backend
    routing: ReloadingFile[RoutingConfig] | None
    api_keys: ReloadingFile[tuple[ApiKey, ...]] | None
    answers: AnswerStore
    claims: Claims  # who counted which feedback: this worker's memory, or the pod's shared file
    shadow: ShadowSender
    predictor: Predictor
    feedback_key: bytes
    limits: Limits  # what one prediction request may cost, with the worker's decode budget

    def current_routing(self) -> RoutingConfig | None:
        return self.routing.get() if self.routing is not None else None

    def close(self) -> None:
        self.shadow.close()
        self.backend.close()


def feedback_key(config: dict[str, Any]) -> bytes:
    path = config.get("FEEDBACK_KEY_FILE")
    if path:
        try:
            with open(path, "rb") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the feedback key file {path}: {exc.strerror}") from None
        if len(key) < 16:
            raise ConfigError(f"the feedback key in {path} is shorter than 16 bytes")
        return key
    from_master = os.environ.get(FEEDBACK_KEY_ENV)
    if from_master:
        return from_master.encode("ascii")
    return secrets.token_bytes(32)


def init_state(app: Flask, backend: Backend | None = None) -> FrontendState:
    config = app.config
    model = config["MODEL_NAME"]
    metrics = Metrics(model)
    backend = backend or make_backend(config, BackendEvents(
        retried=lambda outcome: metrics.backend_retries.labels(model, outcome).inc(),
        resolved=lambda count: metrics.backend_replicas.labels(model).set(count)))

    def routing_loaded(routing: RoutingConfig) -> None:
        metrics.routing_generation.labels(model).set(routing.generation)
        log.info("routing config generation %d: %s %s", routing.generation, routing.strategy,
                 ", ".join(f"v{r.version}/{r.label}={r.weight}" for r in routing.routes))

    routing = None
    if config.get("ROUTING_FILE"):
        warm_up = getattr(backend, "prepare", None)
        routing = ReloadingFile(config["ROUTING_FILE"], lambda data: parse_routing_text(data, model),
                                check_interval_s=config["ROUTING_CHECK_S"], on_load=routing_loaded,
                                on_error=lambda _: metrics.routing_reload_errors.labels(model).inc(),
                                prepare=(lambda routing: warm_up(routing.versions)) if warm_up else None)
    api_keys = None
    if config.get("API_KEYS_FILE"):
        api_keys = ReloadingFile(config["API_KEYS_FILE"], parse_key_file, check_interval_s=config["ROUTING_CHECK_S"],
                                 on_error=lambda _: metrics.api_key_reload_errors.labels(model).inc())
        if api_keys.value is None:
            # Secure by default: a configured but unusable key file must not open the API.
            log.error("API key file %s is unusable; every key is refused until it is fixed", config["API_KEYS_FILE"])
    else:
        log.warning("MNIST_API_KEYS_FILE is not set: the prediction API is open to anyone who can reach it")
    answers = AnswerStore(config["FEEDBACK_STORE_SIZE"], config["FEEDBACK_TTL_S"])
    claims: Claims = answers
    if config.get("FEEDBACK_CLAIMS_FILE"):
        claims = SharedClaims(config["FEEDBACK_CLAIMS_FILE"], config["FEEDBACK_TTL_S"], config["FEEDBACK_STORE_SIZE"],
                              fallback=answers.claim,
                              on_error=lambda: metrics.feedback_claim_errors.labels(model).inc())
    shadow = ShadowSender(backend, metrics, workers=config["SHADOW_WORKERS"], queue=config["SHADOW_QUEUE"],
                          timeout_s=config["BACKEND_TIMEOUT_S"])
    key = feedback_key(config)
    limits = Limits(max_batch=config["MAX_BATCH"], max_image_pixels=config["MAX_IMAGE_PIXELS"],
                    max_request_pixels=config["MAX_REQUEST_PIXELS"],
                    decode_budget=DecodeBudget(config["DECODE_MEMORY_BYTES"], wait_s=config["BACKEND_TIMEOUT_S"]))
    state = FrontendState(config=config, metrics=metrics, backend=backend, routing=routing, api_keys=api_keys,
                          answers=answers, claims=claims, shadow=shadow, feedback_key=key, limits=limits,
                          predictor=None)  # type: ignore[arg-type]
    state.predictor = Predictor(backend, model, state.current_routing, shadow, config["BACKEND_TIMEOUT_S"], key,
                                answers)
    app.extensions[EXTENSION] = state
    return state


def get_state() -> FrontendState:
    return current_app.extensions[EXTENSION]
