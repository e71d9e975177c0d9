"""kopf handlers: the thin Kubernetes shell around mnist_operator.decide.

Start it with `mnist-operator run [--namespace NS | --all-namespaces]`, `kopf run -m mnist_operator.handlers
[-n NS | -A]`, or from Python (tests):

    import kopf, mnist_operator.handlers  # importing registers the handlers
    kopf.operator(namespaces=["default"], standalone=True, stop_flag=..., ready_flag=...)

Login: with MNIST_OPERATOR_KUBECONFIG set, that kubeconfig file; otherwise the in-cluster service account, then
$KUBECONFIG / ~/.kube/config. Every other environment variable it reads is in mnist_operator.config.ENV_SETTINGS
(ConfigMap names and keys, frontend label selector, metrics port/path or fixed URLs, Prometheus URL, TF Serving REST
URL, model store path, timeouts).

One daemon per ModelRollout drives ticks: read the object, then loop.tick with this shell's adapter (KubeShell):
gather the facts the core asks for (cluster_facts.py: other rollouts of the model, the routing in place, the
candidate's ModelVersion / model store / TF Serving status, frontend metrics), decide(), write the ConfigMaps (model
config first, routing second), patch status; then post Events and sleep decide.next_delay. Spec changes wake the
daemon at once. All state is in .status; the daemon keeps nothing it needs across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import requests
from kubernetes.client.rest import ApiException

from mnist_operator import auto, loop, merge_patch, versions
from mnist_operator import decide as core
from mnist_operator.analysis import Snapshot
from mnist_operator.cluster_facts import (
    Clients,
    api_error_text,
    candidate_info,
    current_routing,
    metrics_snapshot,
    other_rollouts,
    read_configmap_key,
    register_version,
    routing_configmap,
    serving_base_path,
    serving_configmap,
    serving_replicas,
)
from mnist_operator.config import GROUP, MODELVERSION_PLURAL, ROLLOUT_PLURAL, VERSION, OperatorConfig, env
from mnist_operator.observation import CandidateInfo
from mnist_operator.render import render_model_config, render_routing
from mnist_operator.spec import SpecError, parse_spec

log = logging.getLogger("mnist_operator")
ANNOTATION_PREFIX = GROUP
DISCOVERY_PERIOD_S = 30.0
API_RETRY_MAX_S = 30.0  # longest wait between two ticks of a rollout whose API calls are refused
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


_clients: Clients | None = None


def _load_kube_config(path: str) -> None:
    """The kubeconfig file `path` (MNIST_OPERATOR_KUBECONFIG) when set; else in-cluster, then $KUBECONFIG."""
    if path:
        kubernetes.config.load_kube_config(config_file=path)
        return
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def clients() -> Clients:
    """API clients, created once (the first CoreV1Api costs about a second)."""
    global _clients
    if _clients is None:
        cfg = OperatorConfig.from_env()
        _load_kube_config(cfg.kubeconfig)
        _clients = Clients(cfg=cfg, core=kubernetes.client.CoreV1Api(),
                           custom=kubernetes.client.CustomObjectsApi(), http=requests.Session(),
                           discovery=kubernetes.client.DiscoveryV1Api())
    return _clients


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """MNIST_OPERATOR_KUBECONFIG when set (tests, out-of-cluster runs); else kopf's own (in-cluster, $KUBECONFIG)."""
    # The one setting read before startup (login comes first): the rest are parsed by configure's clients().
    kubeconfig = env("MNIST_OPERATOR_KUBECONFIG")
    if not kubeconfig:
        return kopf.login_via_client(settings=settings, **kwargs)
    _load_kube_config(kubeconfig)
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
                               username=config.username or None, password=config.password or None, scheme=scheme,
                               token=token, certificate_path=config.cert_file, private_key_path=config.key_file,
                               trust_env=settings.networking.trust_env)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """All operator tuning in one place."""
    global _clients
    _clients = None  # a new operator run (tests start several in one process) re-reads env and kubeconfig
    c = clients()
    if c.cfg.model_base_path:
        memo.discovery = Discovery(c, discovery_namespace(c.cfg))
        memo.discovery.start()
    # Progress and diff-base in annotations: .status belongs to the rollout state machine alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/rollback-on-delete"
    settings.posting.level = logging.INFO  # kopf.info/warn decision Events; plain log lines stay in the log
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    settings.batching.idle_timeout = 1.0
    settings.batching.batch_window = 0.05  # react to a spec change well within a second
    settings.execution.max_workers = 32
    settings.networking.request_timeout = 30


@kopf.on.cleanup()
def stop_discovery(memo: Any, **_: Any) -> None:
    if getattr(memo, "discovery", None) is not None:
        memo.discovery.stop()


def discovery_namespace(cfg: OperatorConfig) -> str:
    """Where discovered ModelVersions go: the watched namespace, else the operator's own."""
    if cfg.namespace:
        return cfg.namespace
    if cfg.pod_namespace:
        return cfg.pod_namespace
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class Discovery:
    """Registers every version published in the model store as a ModelVersion (a thread: plain blocking I/O)."""

    def __init__(self, c: Clients, namespace: str, period_s: float = DISCOVERY_PERIOD_S) -> None:
        self.c, self.namespace, self.period_s = c, namespace, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelversion-discovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def scan_once(self) -> list[str]:
        root = Path(self.c.cfg.model_base_path)
        items = self.c.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, MODELVERSION_PLURAL)
        known = {o["metadata"]["name"] for o in items.get("items", [])}
        created = []
        for model, version in versions.unregistered(root, known):
            if register_version(self.c, self.namespace, model, version, str(root / model)):
                created.append(versions.modelversion_name(model, version))
        return created

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception as exc:  # noqa: BLE001 - discovery is best effort; the next scan retries
                log.warning("model store discovery failed: %s", exc)
            self._stop.wait(self.period_s)


# ----------------------------------------------------------------------------------------------- refused API calls


def api_error_reason(exc: ApiException) -> str:
    """The reason of the Warning Event and the Degraded condition a refused call sets."""
    return "APIForbidden" if exc.status == 403 else "APIError"


def retry_delay(failures: int) -> float:
    """Seconds before the next tick after `failures` refused ticks in a row: 2, 4, 8, 16, then every 30."""
    return min(API_RETRY_MAX_S, 2.0 ** max(1, failures))


def refused_conditions(conditions: Any, reason: str, message: str, now: float) -> list[dict[str, Any]]:
    """The rollout's conditions with `Degraded` True for a refused API call; the other conditions are kept, and the
    next decision sets all three again (decide() knows nothing of API calls)."""
    old = [c for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []
    prev = next((c for c in old if c.get("type") == "Degraded"), {})
    since = prev.get("lastTransitionTime") if prev.get("status") == "True" else None
    degraded = {"type": "Degraded", "status": "True", "reason": reason, "message": message[:1000],
                "lastTransitionTime": since or core.ts(now)}
    return [degraded if c is prev else c for c in old] if prev else [*old, degraded]


def _record_refusal(lock: threading.Lock, namespace: str, name: str, conditions: Any, reason: str, message: str,
                    logger: logging.Logger) -> None:
    """Put a refused call into the rollout's status (the Degraded condition), when the operator may patch it."""
    patch = {"status": {"conditions": refused_conditions(conditions, reason, message, time.time())}}
    try:
        with lock:
            clients().custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, ROLLOUT_PLURAL, name,
                                                                   patch)
    except ApiException as exc:
        logger.warning(f"cannot record the refused call in the rollout's status either: HTTP {exc.status}: "
                       f"{api_error_text(exc)}")


# ---------------------------------------------------------------------------------------------- writes (I/O only)


def _write_configmap_key(c: Clients, namespace: str, name: str, key: str, text: str) -> bool:
    """Set one key of a ConfigMap (created when missing); False when it already held exactly this text."""
    current = read_configmap_key(c, namespace, name, key)
    if current == text:
        return False
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "mnist-operator"}},
            "data": {key: text}}
    try:
        c.core.patch_namespaced_config_map(name, namespace, {"data": {key: text}})
    except ApiException as exc:
        if exc.status != 404:
            raise
        c.core.create_namespaced_config_map(namespace, body)
    return True


# --------------------------------------------------------------------------------------------------------- one tick


@dataclass
class KubeShell:
    """The kopf shell's adapter for loop.tick: facts from the cluster (cluster_facts.py), decisions into the two
    ConfigMaps, the rollout's .status and its ModelVersions."""

    c: Clients
    namespace: str
    name: str

    def other_rollouts(self, model: str) -> list[tuple[str, str, str | None]]:
        return other_rollouts(self.c, self.namespace, model)

    def routing(self, model: str) -> dict[str, Any] | None:
        return current_routing(self.c, self.namespace, model)

    def version_facts(self, model: str, wanted: list[int]) -> dict[int, CandidateInfo]:
        serving = serving_replicas(self.c, self.namespace)  # listed once a tick, asked about every version
        return {v: candidate_info(self.c, self.namespace, model, v, serving) for v in wanted}

    def metrics(self, model: str) -> Snapshot:
        return metrics_snapshot(self.c, self.namespace, model)

    def base_path(self, model: str) -> str:
        return serving_base_path(self.c, model)

    def apply(self, before: dict[str, Any], decision: core.Decision) -> None:
        apply_decision(self.c, self.namespace, decision)
        _patch_status(self.c, self.namespace, self.name, before, decision.status)
        _update_versions(self.c, self.namespace, before, decision.status, f"{self.namespace}/{self.name}")


def tick(namespace: str, name: str, now: float | None = None) -> tuple[dict[str, Any], core.Decision] | None:
    """Read, then loop.tick (gather, decide, write). Returns (object, decision), or None when the object is gone."""
    c = clients()
    try:
        obj = c.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if obj["metadata"].get("deletionTimestamp"):
        return None
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    rollout = loop.Rollout(key=f"{namespace}/{name}", spec=obj.get("spec") or {}, status=status,
                           generation=int(obj["metadata"].get("generation") or 1),
                           created=obj["metadata"].get("creationTimestamp") or "")
    decision = loop.tick(KubeShell(c, namespace, name), rollout, time.time() if now is None else now)
    return obj, decision


def apply_decision(c: Clients, namespace: str, decision: core.Decision) -> None:
    """Load first, label second: the model config is written before the routing that sends traffic to it.
    Without TF Serving (no serving ConfigMap configured: the frontend's embedded backend) only the routing is."""
    if decision.serving is not None and c.cfg.serving_configmap:
        _write_configmap_key(c, namespace, serving_configmap(c, decision.serving.model), c.cfg.serving_key,
                             render_model_config([decision.serving]))
    if decision.routing is not None:
        _write_configmap_key(c, namespace, routing_configmap(c, decision.routing.model), c.cfg.routing_key,
                             render_routing(decision.routing, decision.routing_generation))


def _patch_status(c: Clients, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Store exactly `new` (null-free, from decide) over `old`: keys gone at any depth are nulled in the merge patch."""
    patch = merge_patch.diff(old, new)
    if patch:
        c.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, ROLLOUT_PLURAL, name,
                                                       {"status": patch})


def _update_versions(c: Clients, namespace: str, old: dict[str, Any], new: dict[str, Any], key: str) -> None:
    """Keep ModelVersion phases in step with rollout outcomes (best effort: the registry is informational)."""
    model, cand, stable = new.get("model"), new.get("candidateVersion"), new.get("stableVersion")
    if not model or not cand or (old.get("phase"), old.get("stage")) == (new.get("phase"), new.get("stage")):
        return
    changes: dict[int, str] = {}
    if new.get("stage") in core.TRAFFIC_STAGES:
        changes[cand] = "Candidate"
    elif new.get("phase") == core.PROMOTED:
        changes[cand] = "Stable"
        if stable:
            changes[stable] = "Retired"
    elif new.get("phase") == core.ROLLED_BACK:
        changes[cand] = "Rejected"
    for version, phase in changes.items():
        try:
            c.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, MODELVERSION_PLURAL, versions.modelversion_name(model, version),
                {"status": {"phase": phase, "rollout": key, "lastTransitionTime": core.ts(time.time())}})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("ModelVersion %s-v%s status: HTTP %s: %s", model, version, exc.status, api_error_text(exc))


# ----------------------------------------------------------------------------------------------------------- kopf


def _post(obj: dict[str, Any], events: list[core.Event], logger: logging.Logger) -> None:
    for e in events:
        line = f"{e.reason}: {e.message}"
        if e.type == "Warning":
            logger.warning(line)
            kopf.warn(obj, reason=e.reason, message=e.message)
        else:
            logger.info(line)
            kopf.info(obj, reason=e.reason, message=e.message)


def _tick_lock(memo: Any) -> threading.Lock:
    """Serialises a rollout's tick and its deletion handler, so a late tick never writes after the rollback."""
    if getattr(memo, "tick_lock", None) is None:
        memo.tick_lock = threading.Lock()
    return memo.tick_lock


def _locked_tick(lock: threading.Lock, namespace: str, name: str) -> tuple[dict[str, Any], core.Decision] | None:
    with lock:
        return tick(namespace, name)


def _wake_event(memo: Any) -> asyncio.Event:
    if getattr(memo, "wake", None) is None:
        memo.wake = asyncio.Event()
    return memo.wake


@kopf.daemon(GROUP, VERSION, ROLLOUT_PLURAL, cancellation_timeout=10.0)
async def drive_rollout(name: str, namespace: str, body: kopf.Body, memo: Any, logger: logging.Logger, stopped: Any,
                        **_: Any) -> None:
    """One loop per ModelRollout: tick, then sleep until the next check is due or the spec changes.

    A tick the API server refuses is retried with backoff (a fixed Role heals it without a restart), and the
    refusal is shown on the rollout once per distinct message: a Warning Event and the Degraded condition, both
    quoting the server's words (the verb and resource refused), as far as the operator may post and patch them."""
    wake = _wake_event(memo)
    lock = _tick_lock(memo)
    c = clients()
    failures, refused = 0, ""  # refused ticks in a row; the API server's message last shown on the rollout
    while not stopped:
        wake.clear()
        delay = 1.0
        try:
            result = await asyncio.to_thread(_locked_tick, lock, namespace, name)
            if result is None:
                return
            obj, decision = result
            if refused:
                logger.info(f"API calls go through again after {failures} refused tick(s)")
                kopf.info(obj, reason="APIRecovered", message=f"API calls go through again after {failures} "
                                                              f"refused tick(s); refused before: {refused}")
            failures, refused = 0, ""
            _post(obj, decision.events, logger)
            delay = core.next_delay(decision.status, obj.get("spec") or {}, c.cfg.max_tick_s,
                                    before=obj.get("status") or {})
        except ApiException as exc:
            failures += 1
            delay = retry_delay(failures)
            text = api_error_text(exc)
            logger.warning(f"Kubernetes API error during a tick (retry {failures} in {delay:.0f}s): "
                           f"HTTP {exc.status} {exc.reason}: {text}")
            if text != refused:
                refused = text
                reason = api_error_reason(exc)
                message = f"HTTP {exc.status}, retrying with backoff: {text}"
                kopf.warn(body, reason=reason, message=message)  # kopf logs it if Events may not be posted
                await asyncio.to_thread(_record_refusal, lock, namespace, name,
                                        (body.get("status") or {}).get("conditions"), reason, message, logger)
        except Exception as exc:  # noqa: BLE001 - a daemon that dies stops the rollout; report and retry
            logger.exception(f"tick failed, retrying: {exc}")
            delay = 5.0
        deadline = time.monotonic() + delay
        while not stopped and not wake.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(1.0, max(0.0, deadline - time.monotonic())))


@kopf.on.create(GROUP, VERSION, ROLLOUT_PLURAL)
@kopf.on.update(GROUP, VERSION, ROLLOUT_PLURAL, field="spec")
def spec_changed(spec: dict[str, Any], memo: Any, logger: logging.Logger, **_: Any) -> None:
    """Refuse what can never work with a clear line, and wake the rollout's daemon to decide now."""
    try:
        parse_spec(dict(spec))
    except SpecError as exc:
        logger.warning(f"invalid spec: {exc}")  # the daemon marks it Failed with reason InvalidSpec
    _wake_event(memo).set()


@kopf.on.delete(GROUP, VERSION, ROLLOUT_PLURAL)
def rollout_deleted(name: str, namespace: str, status: dict[str, Any], body: Any, memo: Any,
                    logger: logging.Logger, **_: Any) -> None:
    """Finalizer: an unfinished rollout gives all traffic back to stable and unloads the candidate."""
    c = clients()
    key = f"{namespace}/{name}"
    lock = _tick_lock(memo)
    if not lock.acquire(timeout=30):
        raise kopf.TemporaryError("a tick of this rollout is still running", delay=1)
    try:
        _restore_on_delete(c, namespace, name, key, status, body, logger)
    except ApiException as exc:  # kopf retries; its Event then quotes the server, not a traceback's first line
        raise kopf.TemporaryError(f"HTTP {exc.status}: {api_error_text(exc)}", delay=10) from exc
    finally:
        lock.release()


def _restore_on_delete(c: Clients, namespace: str, name: str, key: str, status: dict[str, Any], body: Any,
                       logger: logging.Logger) -> None:
    try:  # the freshest status: the last tick may have moved on since this event was sent
        obj = c.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL, name)
        status = obj.get("status") or status
    except ApiException as exc:
        if exc.status != 404:
            raise
    st = dict(status or {})
    model = st.get("model") or "model"
    base_path = serving_base_path(c, model)
    if not core.restores_on_delete(st, key, base_path):
        return
    decision = core.on_delete(st, key, base_path, current_routing(c, namespace, model))
    if decision is None:
        return
    apply_decision(c, namespace, decision)
    for e in decision.events:
        logger.warning(e.message)
        kopf.warn(body, reason=e.reason, message=e.message)


@kopf.on.create(GROUP, VERSION, MODELVERSION_PLURAL)
@kopf.on.resume(GROUP, VERSION, MODELVERSION_PLURAL)
def modelversion_seen(spec: dict[str, Any], status: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    """A registered version gets a phase: Registered, or Missing when the model store does not have it."""
    if (status or {}).get("phase"):
        return
    c = clients()
    phase = "Registered"
    if c.cfg.model_base_path and spec.get("model") and isinstance(spec.get("version"), int):
        store = f"{c.cfg.model_base_path.rstrip('/')}/{spec['model']}"
        if not versions.store_candidate_info(store, spec["version"]).exists:
            phase = "Missing"
    patch.status["phase"] = phase
    patch.status["lastTransitionTime"] = core.ts(time.time())


@kopf.on.create(GROUP, VERSION, MODELVERSION_PLURAL)
def maybe_auto_rollout(namespace: str, spec: dict[str, Any], body: Any, logger: logging.Logger, **_: Any) -> None:
    """A newly registered version starts a rollout when the model has a template (spec.autoRollout.enabled)."""
    model, version = spec.get("model"), spec.get("version")
    if not isinstance(model, str) or not isinstance(version, int):
        return
    c = clients()
    rollouts = c.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL).get("items", [])
    template = auto.pick_template(rollouts, model)
    if template is None:
        return
    acc = spec.get("testAccuracy")
    manifest, why = auto.auto_rollout(template, version, float(acc) if isinstance(acc, int | float) else None)
    if manifest is None:
        logger.info(f"no auto-rollout: {why}")
        return
    manifest["metadata"]["namespace"] = namespace
    try:
        c.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROLLOUT_PLURAL, manifest)
    except ApiException as exc:
        if exc.status == 409:
            return  # already started (by an earlier event, or by hand)
        msg = f"cannot create {manifest['metadata']['name']}: HTTP {exc.status}: {api_error_text(exc)}"
        logger.warning(msg)
        kopf.warn(body, reason="AutoRolloutFailed", message=msg)
        return
    logger.info(why)
    kopf.info(body, reason="AutoRollout", message=why)
