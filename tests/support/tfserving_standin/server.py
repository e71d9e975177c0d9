"""StandIn: a TF Serving stand-in on 127.0.0.1 (gRPC + REST), started and stopped by a test or a process."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import grpc

from . import config as cfg
from .core import ServingCore
from .errors import ServingError, code_from_name
from .faults import TRANSPORTS, Fault, Faults
from .grpc_service import start_grpc_server
from .metrics import Metrics
from .rest import PROMETHEUS_PATH, RestServer
from .servables import ServableManager

log = logging.getLogger("tfserving_standin")


class StandIn:
    """TF Serving's REST and gRPC APIs over real SavedModels, with faults for tests.

    Say what to serve like tensorflow_model_server does: `model_base_path` + `model_name` (optionally
    `versions=[1, 2]` for a specific version policy; None = the latest version), or `model_config_file`
    (a text ModelServerConfig re-read every `poll_seconds`). Model directories are re-scanned every
    `file_system_poll_seconds` (default: `poll_seconds`). `path_map` maps config base paths such as the
    cluster's /models/mnist onto local directories. Ports: 0 = a free one, picked at start. `host`: the
    loopback address to listen on (another 127.0.0.x plays another pod of one Deployment, on the same ports).
    """

    def __init__(self, model_base_path: str | os.PathLike[str] | None = None, model_name: str = "mnist",
                 versions: Iterable[int] | None = None, model_config_file: str | os.PathLike[str] | None = None,
                 poll_seconds: float = 0.2, *, file_system_poll_seconds: float | None = None,
                 grpc_port: int = 0, rest_port: int = 0, prometheus_path: str | None = PROMETHEUS_PATH,
                 path_map: Mapping[str, str | os.PathLike[str]] | None = None,
                 allow_version_labels_for_unavailable_models: bool = False,
                 load_timeout_s: float | None = 120.0, grpc_workers: int = 8, host: str = "127.0.0.1") -> None:
        if (model_base_path is None) == (model_config_file is None):
            raise ValueError("give exactly one of model_base_path or model_config_file")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the stand-in listens on loopback addresses only, not {host}")
        self.host = host
        self.model_name = model_name
        self._base_path = None if model_base_path is None else Path(model_base_path).resolve()
        self._versions = None if versions is None else sorted(int(v) for v in versions)
        self._config_file = None if model_config_file is None else Path(model_config_file)
        self._poll_s = poll_seconds
        self._fs_poll_s = poll_seconds if file_system_poll_seconds is None else file_system_poll_seconds
        self._grpc_port, self._rest_port = grpc_port, rest_port
        self._prometheus_path = prometheus_path
        self._load_timeout_s = load_timeout_s
        self._grpc_workers = grpc_workers
        self.metrics = Metrics()
        self.faults = Faults()
        self.manager = ServableManager(path_map=path_map, metrics=self.metrics,
                                       allow_version_labels_for_unavailable_models=(
                                           allow_version_labels_for_unavailable_models))
        self.core = ServingCore(self.manager, self.metrics, self.faults)
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._listeners_mu = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._last_config_error: str | None = None
        self._started = False

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> StandIn:
        """Load the initial versions (the real server also loads before opening its ports), listen, poll."""
        if self._started:
            return self
        self._started = True
        try:
            self.manager.reload_config(self._initial_config(), wait_timeout_s=self._load_timeout_s)
            # Stricter than the real server (which opens once one version per model is up), so that tests
            # see every initial version AVAILABLE (or END with its error) as soon as start() returns.
            self.manager.wait_until_settled(self._load_timeout_s)
            self._open_grpc()
            self._open_rest()
        except BaseException:
            self.stop()
            raise
        self._poller = threading.Thread(target=self._poll_loop, name="standin-poll", daemon=True)
        self._poller.start()
        log.info("Running gRPC ModelServer at %s ...", self.grpc_target)
        if self._rest_port is not None:
            log.info("Exporting HTTP/REST API at:%s ...", self.rest_url)
        return self

    def stop(self) -> None:
        """Stop listening, polling and loading; idempotent."""
        self._stop.set()
        self.faults.interrupt_sleeps()
        self._close_grpc()
        self._close_rest()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout=10)
        self.manager.close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _initial_config(self) -> cfg.ModelServerConfig:
        if self._config_file is not None:
            return cfg.read_config_file(self._config_file)
        return cfg.single_model_config(self.model_name, self._base_path, self._versions)

    # ---- addresses ------------------------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def rest_port(self) -> int | None:
        return self._rest_port

    @property
    def grpc_target(self) -> str:
        """host:port for grpc.insecure_channel."""
        return f"{self.host}:{self._grpc_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API (no trailing slash)."""
        return f"http://{self.host}:{self._rest_port}"

    # ---- faults ---------------------------------------------------------------------------------

    def set_fault(self, mode: str | None, *, delay: float = 1.0, code: str | grpc.StatusCode = "UNAVAILABLE",
                  transport: str = "both") -> None:
        """None | "slow" (each Predict waits `delay` s) | "error" (each Predict fails with `code`,
        UNAVAILABLE = HTTP 503 by default) | "down" (stop listening; resume() or set_fault(None) reopens
        the same ports). `transport`: "grpc", "rest" or "both"."""
        status = code if isinstance(code, grpc.StatusCode) else code_from_name(code)
        targets = TRANSPORTS if transport == "both" else (transport,)
        for target in targets:
            self.faults.set(target, Fault(mode=mode, delay_s=delay, code=status))
        with self._listeners_mu:
            for target in targets:
                if mode == "down":
                    (self._close_grpc if target == "grpc" else self._close_rest)()
                else:
                    (self._open_grpc if target == "grpc" else self._open_rest)()
        log.info("Fault on %s: %s", "+".join(targets), mode)

    def resume(self) -> None:
        """Clear every fault and listen again on the same ports."""
        self.set_fault(None)

    def _open_grpc(self) -> None:
        if self._grpc is not None or self._stop.is_set():
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                self._grpc, self._grpc_port = start_grpc_server(self.core, self._grpc_port, self._grpc_workers,
                                                                self.host)
                return
            except (OSError, RuntimeError):
                # The old socket may linger a moment after "down"; the port is ours, so retry.
                if self._grpc_port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _close_grpc(self) -> None:
        server, self._grpc = self._grpc, None
        if server is not None:
            server.stop(grace=None).wait(timeout=10)

    def _open_rest(self) -> None:
        if self._rest is not None or self._stop.is_set() or self._rest_port is None:
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                self._rest = RestServer(self.core, self._rest_port, self._prometheus_path, self.host)
                self._rest_port = self._rest.port
                return
            except OSError:
                if self._rest_port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _close_rest(self) -> None:
        server, self._rest = self._rest, None
        if server is not None:
            server.close_all()

    # ---- model state ----------------------------------------------------------------------------

    def status(self, version: int, model: str | None = None) -> str | None:
        """State of a version ("START", "LOADING", "AVAILABLE", "UNLOADING", "END"), None if never seen."""
        return self.manager.state(model or self.model_name, version)

    def history(self, version: int, model: str | None = None) -> list[str]:
        """Every state a version went through, e.g. ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]."""
        return self.manager.history(model or self.model_name, version)

    def labels(self, model: str | None = None) -> dict[str, int]:
        """The version labels in effect."""
        return self.manager.labels(model or self.model_name)

    def wait_for_state(self, version: int, state: str, timeout: float = 30.0, model: str | None = None) -> bool:
        """Wait until a version reaches a state; False on timeout."""
        name = model or self.model_name
        return self.manager.wait_for(lambda: self.manager.state(name, version) == state, timeout)

    def reload_config(self, config: cfg.ModelServerConfig | str) -> None:
        """Apply a ModelServerConfig (proto or text) as HandleReloadConfigRequest does; ServingError if refused."""
        self.manager.reload_config(cfg.parse_config_text(config) if isinstance(config, str) else config,
                                   wait_timeout_s=self._load_timeout_s)

    def predict_count(self, version: int | None = None, model: str | None = None) -> int:
        """Successful Predicts answered so far (both transports), for one version or all."""
        return self.metrics.predict_count(model or self.model_name, version)

    # ---- polling --------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        next_fs = next_config = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self._config_file is not None and self._poll_s > 0 and now >= next_config:
                self._poll_config_file()
                next_config = now + self._poll_s
            if self._fs_poll_s > 0 and now >= next_fs:
                self.manager.poll_file_system()
                next_fs = now + self._fs_poll_s
            upcoming = [next_fs if self._fs_poll_s > 0 else None,
                        next_config if self._config_file is not None and self._poll_s > 0 else None]
            waits = [t - time.monotonic() for t in upcoming if t is not None]
            self._stop.wait(max(0.01, min(waits)) if waits else 1.0)

    def _poll_config_file(self) -> None:
        """Re-read --model_config_file and apply it; failures are logged (once per distinct error)."""
        try:
            config = cfg.read_config_file(self._config_file)
            if config != self.manager.config:
                self.manager.reload_config(config, wait_timeout_s=self._load_timeout_s)
            self._last_config_error = None
        except (OSError, ServingError) as exc:
            message = f"PollFilesystemAndReloadConfig failed to ReloadConfig: {exc}"
            if message != self._last_config_error:
                log.error("%s", message)
            self._last_config_error = message
