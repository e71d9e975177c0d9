"""The servable manager: which model versions are loaded, their states, version labels, and lookups.

Follows TF Serving's ServerCore + AspiredVersionsManager semantics:
- a config reload first checks version labels against what is AVAILABLE now (FAILED_PRECONDITION, and
  nothing changes, when a label names a version that is not loaded yet: load first, label second); the
  rules are TF Serving's exactly, with their source lines at ServableManager.reload_config and _labels_for;
- the file system is polled; versions the policy asks for are loaded (START -> LOADING -> AVAILABLE, or
  END with an error status), versions no longer asked for are unloaded (UNLOADING -> END) once another
  asked-for version is AVAILABLE (availability-preserving), and every state stays visible in the status;
- a request names a model and optionally a version or a label; anything not AVAILABLE is NOT_FOUND.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_pb2

from . import config as cfg
from .errors import ServingError, failed_precondition, invalid_argument, not_found
from .metrics import Metrics
from .model import LoadedModel

log = logging.getLogger("tfserving_standin")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class VersionRecord:
    """What the manager knows about one version of one model."""

    path: Path
    state: str = START
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""
    aspired: bool = True
    model: LoadedModel | None = None


@dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatus."""

    version: int
    state: str
    code: grpc.StatusCode
    message: str


class ServableManager:
    """Loads, serves and unloads SavedModel versions as the current ModelServerConfig asks."""

    def __init__(self, *, path_map: Mapping[str, Path | str] | None = None,
                 allow_version_labels_for_unavailable_models: bool = False,
                 metrics: Metrics | None = None, load_threads: int = 2) -> None:
        self._path_map = dict(path_map or {})
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._metrics = metrics or Metrics()
        self._mu = threading.RLock()
        self._changed = threading.Condition(self._mu)
        self._config: cfg.ModelServerConfig | None = None
        self._records: dict[str, dict[int, VersionRecord]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._history: dict[str, list[tuple[int, str]]] = {}
        self._executor = ThreadPoolExecutor(max_workers=load_threads, thread_name_prefix="standin-load")
        self._closed = False
        self._waits_cancelled = False
        self._refused: list[str] = []  # every refused reload, in order (tests assert a rollout caused none)

    def cancel_waits(self) -> None:
        """Make reload waits return now (safe from a signal handler: no lock taken)."""
        self._waits_cancelled = True

    # ---- configuration --------------------------------------------------------------------------

    @property
    def config(self) -> cfg.ModelServerConfig | None:
        """The config in effect (the last one accepted)."""
        with self._mu:
            return self._config

    def refused(self) -> list[str]:
        """The message of every reload refused so far (a refused config polled again counts again, as the real
        server logs `PollFilesystemAndReloadConfig failed to ReloadConfig` on each poll)."""
        with self._mu:
            return list(self._refused)

    def reload_config(self, config: cfg.ModelServerConfig, *, wait_timeout_s: float | None = 120.0) -> None:
        """Apply a new ModelServerConfig, or raise ServingError and keep the old one in effect.

        The order is TF Serving's ServerCore::ReloadConfig (tensorflow/serving at 9d981c5,
        tensorflow_serving/model_servers/server_core.cc, lines 476-547): validate, then the version labels
        (UpdateModelVersionLabelMap, line 514), and only then the models are added or updated
        (AddModelsViaModelConfigList, line 524), which is what loads. So a refused label refuses the whole
        config: none of its new versions starts loading and the old labels stay. The real server stores the
        new config (line 512) before the label check; that only decides whether its next reload of the same
        config counts as "the same" (lines 479-483), and as Server::PollFilesystemAndReloadConfig
        (model_servers/server.cc, lines 165-180) re-applies the file on every poll either way, keeping the
        last *accepted* config here gives the same outcome: a refused file is tried again on each poll and
        goes through once its labelled versions are AVAILABLE. The first config of a server goes through this
        same path (ServerCore::Create, line 287), with no labels in effect yet.
        """
        try:
            self._reload_config(config, wait_timeout_s)
        except ServingError as exc:
            with self._mu:
                self._refused.append(exc.message)
            raise

    def _reload_config(self, config: cfg.ModelServerConfig, wait_timeout_s: float | None) -> None:
        cfg.validate(config)
        with self._mu:
            old_names = {m.name for m in self._config.model_config_list.config} if self._config else set()
            labels = self._labels_for(config)
            new = cfg.ModelServerConfig()
            new.CopyFrom(config)
            self._config = new
            self._labels = labels
            self._changed.notify_all()
        for model in config.model_config_list.config:
            log.info("Config entry: name %s, path %s, policy %s, labels %s", model.name, model.base_path,
                     model.model_version_policy.WhichOneof("policy_choice") or "latest(default)",
                     dict(model.version_labels))
        self.poll_file_system()
        new_models = [m.name for m in config.model_config_list.config if m.name not in old_names]
        if new_models:
            self._wait_until_models_available(new_models, wait_timeout_s)

    def _labels_for(self, config: cfg.ModelServerConfig) -> dict[str, dict[str, int]]:
        """The new label map, or FAILED_PRECONDITION as ServerCore::UpdateModelVersionLabelMap refuses it.

        tensorflow_serving/model_servers/server_core.cc at 9d981c5, lines 549-614, label by label:
        - allowed outright only with force_allow_any_version_labels_for_unavailable_models (lines 561-562), an
          option of ServerCore that tensorflow_model_server has no flag for (model_servers/main.cc), so never;
        - with --allow_version_labels_for_unavailable_models (main.cc, lines 109-113; server.cc, lines
          322-323), allowed when the label does not exist yet in the label map in effect, or names the same
          version there (lines 563-572). Moving an existing label to another version is not allowed by it;
        - otherwise the version must be kAvailable in the servable state monitor (lines 574-584), else
          FAILED_PRECONDITION "Request to assign label to version N of model M, which is not currently
          available for inference". One refused label refuses the whole map (and config);
        - the new map replaces the old one whole (lines 610-611): labels absent from the config are dropped.
        Before the first config there is no label map at all (GetModelVersionForLabel, lines 873-879), so at
        startup every label counts as new.
        """
        labels: dict[str, dict[str, int]] = {}
        for model in config.model_config_list.config:
            records = self._records.get(model.name, {})
            for label, version in model.version_labels.items():
                allowed = False
                if self._allow_unavailable_labels:
                    existing = self._labels.get(model.name, {}).get(label)
                    allowed = existing is None or existing == version
                record = records.get(version)
                if not allowed and (record is None or record.state != AVAILABLE):
                    raise failed_precondition(f"Request to assign label to version {version} of model "
                                              f"{model.name}, which is not currently available for inference")
                labels.setdefault(model.name, {})[label] = version
        return labels

    def _wait_until_models_available(self, names: list[str], timeout_s: float | None) -> None:
        """Block until each new model serves a version (as TF Serving does before answering a reload)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while True:
                pending = [n for n in names if not any(r.state == AVAILABLE for r in self._records.get(n, {}).values())]
                failed = [n for n in pending if self._records.get(n)
                          and all(r.state == END for r in self._records[n].values() if r.aspired)
                          and any(r.aspired for r in self._records[n].values())]
                if failed:
                    errors = "; ".join(f"{n} version {v}: {r.code.name}: {r.message}"
                                       for n in failed for v, r in self._records[n].items() if r.aspired)
                    raise ServingError(grpc.StatusCode.UNKNOWN, f"Some servables were not available: {errors}")
                if not pending or self._closed or self._waits_cancelled:
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"Timed out waiting for models to become available: {', '.join(pending)}")
                self._changed.wait(timeout=0.5 if remaining is None else min(0.5, remaining))

    def wait_until_settled(self, timeout_s: float | None) -> bool:
        """Wait until every version the policy asks for is AVAILABLE or END; False on timeout."""
        def settled() -> bool:
            return self._closed or self._waits_cancelled or all(
                r.state in (AVAILABLE, END) for records in self._records.values() for r in records.values()
                if r.aspired)
        with self._changed:
            return self._changed.wait_for(settled, timeout=timeout_s)

    # ---- file system polling (FileSystemStoragePathSource) ---------------------------------------

    def poll_file_system(self) -> None:
        """Compare the model base paths with the policy and start the loads and unloads it implies."""
        with self._mu:
            config = self._config
        if config is None:
            return
        aspired: dict[str, dict[int, Path]] = {}
        for model in config.model_config_list.config:
            base = cfg.remap_path(model.base_path, self._path_map)
            try:
                on_disk = cfg.versions_on_disk(base)
            except ServingError as exc:
                # TF Serving fails the whole poll and changes nothing.
                log.error("FileSystemStoragePathSource encountered a filesystem access error: %s (model %s)",
                          exc.message, model.name)
                return
            for version in cfg.missing_specific_versions(model, on_disk):
                log.warning("Version %d of servable %s, which was requested to be served as a 'specific' version "
                            "in the servable's version policy, was not found in the file system", version, model.name)
            wanted = cfg.aspired_versions(model, on_disk)
            if not wanted:
                log.warning("No versions of servable %s found under base path %s", model.name, base)
            aspired[model.name] = {v: on_disk[v] for v in wanted}
        with self._mu:
            for name in set(self._records) | set(aspired):
                self._set_aspired(name, aspired.get(name, {}))

    def _set_aspired(self, name: str, aspired: dict[int, Path]) -> None:
        records = self._records.setdefault(name, {})
        for version, path in aspired.items():
            record = records.get(version)
            if record is None or (record.state == END and not record.aspired):
                record = records[version] = VersionRecord(path=path)
                self._transition(name, version, record, START)
                log.info("Approving load for servable version {name: %s version: %d}", name, version)
                self._changed.notify_all()
                self._executor.submit(self._load, name, version, record)
            else:
                record.aspired = True
        for version, record in records.items():
            if version not in aspired and record.aspired:
                record.aspired = False
        self._unload_unaspired(name)

    def _unload_unaspired(self, name: str) -> None:
        """Unload versions no longer asked for, keeping something servable while a successor loads."""
        records = self._records.get(name, {})
        successor_ready = any(r.aspired and r.state == AVAILABLE for r in records.values())
        nothing_aspired = not any(r.aspired for r in records.values())
        if not (successor_ready or nothing_aspired):
            return
        for version, record in records.items():
            if not record.aspired and record.state == AVAILABLE:
                self._transition(name, version, record, UNLOADING)
                log.info("Unloading servable version {name: %s version: %d}", name, version)
                self._changed.notify_all()
                self._executor.submit(self._unload, name, version, record)

    def _transition(self, name: str, version: int, record: VersionRecord, state: str) -> None:
        """Change a version's state (lock held) and remember it, so tests can see every step."""
        record.state = state
        self._history.setdefault(name, []).append((version, state))
        self._changed.notify_all()

    def _load(self, name: str, version: int, record: VersionRecord) -> None:
        with self._mu:
            if self._closed or record.state != START:
                return
            self._transition(name, version, record, LOADING)
            self._changed.notify_all()
        started = time.monotonic()
        model: LoadedModel | None = None
        error: ServingError | None = None
        try:
            model = LoadedModel(record.path)
            warmups = model.run_warmup()
            if warmups:
                log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
                         record.path, warmups)
        except ServingError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any load failure ends the version with an error status
            error = ServingError(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
        self._metrics.record_load(str(record.path), ok=error is None)
        with self._mu:
            if error is not None:
                record.code, record.message = error.code, error.message
                self._transition(name, version, record, END)
                log.error("Loading servable: {name: %s version: %d} failed: %s", name, version, error)
            else:
                record.model = model
                self._transition(name, version, record, AVAILABLE)
                log.info("Successfully loaded servable version {name: %s version: %d} in %.2fs", name, version,
                         time.monotonic() - started)
            self._unload_unaspired(name)
            self._changed.notify_all()

    def _unload(self, name: str, version: int, record: VersionRecord) -> None:
        with self._mu:
            record.model = None  # in-flight requests keep their own reference until they finish
            self._transition(name, version, record, END)
            log.info("Done unloading servable version {name: %s version: %d}", name, version)
            self._changed.notify_all()

    # ---- requests -------------------------------------------------------------------------------

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[int, LoadedModel]:
        """The (version, model) a ModelSpec asks for; INVALID_ARGUMENT or NOT_FOUND as TF Serving answers."""
        name = spec.name
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        choice = spec.WhichOneof("version_choice")
        with self._mu:
            records = self._records.get(name, {})
            if choice == "version":
                version = spec.version.value
            elif choice == "version_label":
                version = self._labels.get(name, {}).get(spec.version_label)
                if version is None:
                    raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            else:
                available = [v for v, r in records.items() if r.state == AVAILABLE]
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                version = max(available)
            record = records.get(version)
            if record is None or record.state != AVAILABLE or record.model is None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return version, record.model

    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: every version ever seen (newest first), or one; NOT_FOUND as TF Serving says."""
        with self._mu:
            records = self._records.get(name, {})
            if version is not None:
                record = records.get(version)
                if record is None:
                    raise not_found(f"Could not find version {version} of model {name}")
                return [VersionStatus(version, record.state, record.code, record.message)]
            if not records:
                raise not_found(f"Could not find any versions of model {name}")
            return [VersionStatus(v, r.state, r.code, r.message) for v, r in sorted(records.items(), reverse=True)]

    def state(self, name: str, version: int) -> str | None:
        """A version's state name, or None if the manager never saw it."""
        with self._mu:
            record = self._records.get(name, {}).get(version)
            return record.state if record else None

    def history(self, name: str, version: int) -> list[str]:
        """Every state a version went through, in order (across reloads of the same version)."""
        with self._mu:
            return [state for v, state in self._history.get(name, []) if v == version]

    def labels(self, name: str) -> dict[str, int]:
        """The label map in effect for a model."""
        with self._mu:
            return dict(self._labels.get(name, {}))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until predicate() (evaluated under the lock) holds; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout=timeout_s)

    def close(self) -> None:
        """Stop loading and drop every model."""
        with self._mu:
            self._closed = True
            self._changed.notify_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._mu:
            for records in self._records.values():
                for record in records.values():
                    record.model = None
