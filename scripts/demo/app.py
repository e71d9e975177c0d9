"""The demo from start to end: train, serve, roll out under live traffic, report, keep serving or exit."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from mnist_operator.local import atomic_write

from . import configs, metrics, models, progress, rollout, traffic
from .operator_output import OperatorFiles, OperatorView, final_phase
from .ports import PortInUseError, free_port, require_free_port, wait_for_port
from .supervisor import Child, Interrupted, Supervisor, install_signal_handlers

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoConfig:
    """Everything a run depends on; `make demo` sets the first few from DEMO_PORT, DEMO_EXIT and RETRAIN."""

    scenario: rollout.Scenario
    port: int = 8080
    exit_after: bool = False
    retrain: bool = False
    model: str = "mnist"
    model_dir: Path = REPO_ROOT / "models" / "mnist"
    data: Path = REPO_ROOT / "data" / "mnist.npz"
    example: Path = REPO_ROOT / "k8s" / "examples" / "canary.yaml"
    workdir: Path = REPO_ROOT / "build" / "demo"
    rate_per_s: float = 15.0
    workers: int = 1
    warmup_s: float = 3.0
    progress_every_s: float = 4.0
    ready_timeout_s: float = 240.0
    rollout_timeout_s: float = 600.0
    pace: rollout.Pace = field(default_factory=rollout.Pace)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def say(text: str = "") -> None:
    print(text, flush=True)


def section(number: int, title: str) -> None:
    say()
    say(f"==> [{number}/5] {title}")


class DemoError(RuntimeError):
    """Something the user can fix went wrong; the message says what."""


def ensure_models(cfg: DemoConfig) -> dict[int, float]:
    """Train the versions the scenario needs that are missing (all of them with retrain); their accuracies."""
    needed = [cfg.scenario.stable, cfg.scenario.candidate]
    todo = models.versions_to_train(cfg.model_dir, needed, cfg.retrain)
    for version in needed:
        if version not in todo:
            say(f"    v{version}: already in {cfg.model_dir / str(version)} (RETRAIN=1 trains it again)")
    for version in todo:
        spec = models.TRAIN_SPECS[version]
        say(f"    training {spec.describe()}")
        if cfg.retrain:
            models.remove_version(cfg.model_dir, version)
        argv = models.train_command(spec, cfg.data, cfg.model_dir)
        started = time.monotonic()
        result = models.run_training(argv, cfg.workdir / "logs" / f"train-v{version}.log")
        if result.returncode != 0 or not models.is_published(cfg.model_dir, version):
            raise DemoError(
                f"training v{version} failed (exit {result.returncode}); its log: "
                f"{cfg.workdir / 'logs' / f'train-v{version}.log'}"
            )
        say(f"    v{version} trained in {time.monotonic() - started:.0f} s")
    accuracy = {}
    for version in needed:
        acc = models.offline_accuracy(cfg.model_dir, version)
        if acc is not None:
            accuracy[version] = acc
        say(f"    v{version}: offline test accuracy {'unknown' if acc is None else f'{acc:.4f}'}")
    return accuracy


def prepare_files(cfg: DemoConfig, accuracy: dict[int, float]) -> tuple[Path, Path, Path]:
    """Write the adapted rollout and the starting routing/serving configs; show what was changed and why."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    example = rollout.load_example(cfg.example)
    adapted, changes = rollout.adapt_rollout(example, cfg.scenario, accuracy, cfg.pace)
    rollout_path = cfg.workdir / f"rollout-{cfg.scenario.name}.yaml"
    atomic_write(rollout_path, yaml.safe_dump(adapted, sort_keys=False))
    say(rollout.render_changes(changes, str(cfg.example.relative_to(REPO_ROOT))))
    say(f"    written to {rollout_path}")
    routing_path = cfg.workdir / "routing.json"
    serving_path = cfg.workdir / "models.config"
    configs.write_initial_state(routing_path, serving_path, cfg.model, cfg.model_dir, cfg.scenario.stable)
    say(f"    routing: all traffic to v{cfg.scenario.stable} ({routing_path})")
    return rollout_path, routing_path, serving_path


@dataclass
class Serving:
    """What serves the demo: the frontend process, and TF Serving's REST URL when its binary is used."""

    frontend: Child
    serving_rest: str | None = None


def frontend_command(cfg: DemoConfig, routing_path: Path, backend_args: list[str]) -> list[str]:
    """`mnist-frontend` (gunicorn) on 127.0.0.1 only."""
    return [
        models.venv_bin("mnist-frontend"),
        *backend_args,
        "--model-name",
        cfg.model,
        "--routing-file",
        str(routing_path),
        "--bind",
        f"127.0.0.1:{cfg.port}",
        "--workers",
        str(cfg.workers),
    ]


def start_serving(sup: Supervisor, cfg: DemoConfig, routing_path: Path, serving_path: Path) -> Serving:
    """TF Serving (when its binary is on PATH) and the frontend under gunicorn, both ready when this returns."""
    logs = cfg.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    backend_args = ["--backend", "embedded", "--model-base-path", str(cfg.model_dir)]
    serving_rest = None
    tfs_binary = shutil.which("tensorflow_model_server")
    if tfs_binary:
        grpc_port, rest_port = free_port(), free_port()
        say(f"    tensorflow_model_server found: gRPC on {grpc_port}, REST on {rest_port}; frontend backend: grpc")
        tfs = sup.start(
            "tensorflow_model_server",
            [
                tfs_binary,
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                f"--model_config_file={serving_path}",
                "--model_config_file_poll_wait_seconds=1",
                # The first config already labels v1 stable; without this the real server refuses to start.
                "--allow_version_labels_for_unavailable_models=true",
            ],
            log_path=logs / "tfserving.log",
        )
        if not wait_for_port(rest_port, timeout_s=cfg.ready_timeout_s, alive=tfs.alive):
            raise DemoError(f"TF Serving did not start; last lines of {tfs.log_path}:\n{tfs.tail()}")
        backend_args = ["--backend", "grpc", "--serving-grpc", f"127.0.0.1:{grpc_port}"]
        serving_rest = f"http://127.0.0.1:{rest_port}"
    else:
        say("    embedded backend (no tensorflow_model_server on PATH): the frontend loads the SavedModels itself")
    # Checked again: training took minutes, and something may have taken the port meanwhile.
    require_free_port(cfg.port, what="the demo's frontend")
    frontend = sup.start("frontend", frontend_command(cfg, routing_path, backend_args), log_path=logs / "frontend.log")
    if not wait_ready(cfg.base_url, frontend, cfg.ready_timeout_s):
        raise DemoError(f"the frontend did not become ready; last lines of {frontend.log_path}:\n{frontend.tail()}")
    return Serving(frontend, serving_rest)


def wait_ready(base_url: str, child: Child, timeout_s: float) -> bool:
    """Poll /readyz until 200, giving up early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            return False
        try:
            if requests.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def operator_files(cfg: DemoConfig) -> tuple[Path, Path]:
    """Where `mnist-operator local` writes its status (JSON) and its events (JSON lines) for the demo to read."""
    return cfg.workdir / "operator-status.json", cfg.workdir / "operator-events.jsonl"


def operator_command(
    cfg: DemoConfig, rollout_path: Path, routing_path: Path, serving_path: Path, serving_rest: str | None
) -> list[str]:
    """`mnist-operator local` against the demo's files and frontend (the gate reads the local model store)."""
    status_path, events_path = operator_files(cfg)
    argv = [
        models.venv_bin("mnist-operator"),
        "local",
        "--rollout",
        str(rollout_path),
        "--routing-file",
        str(routing_path),
        "--serving-config",
        str(serving_path),
        "--metrics-url",
        f"{cfg.base_url}/metrics",
        "--model-base-path",
        str(cfg.model_dir),
        "--timeout",
        str(int(cfg.rollout_timeout_s)),
        "--status-file",
        str(status_path),
        "--events-file",
        str(events_path),
    ]
    if serving_rest:
        argv += ["--serving-rest", serving_rest]
    return argv


def snapshot_state(
    cfg: DemoConfig,
    started: float,
    view: OperatorView,
    routing_path: Path,
    generator: traffic.TrafficGenerator,
    previous: metrics.MetricsSnapshot | None = None,
) -> progress.DemoState:
    """One consistent picture for the renderer (metrics that cannot be read are shown as empty)."""
    try:
        snap = metrics.fetch_metrics(f"{cfg.base_url}/metrics", cfg.model)
    except requests.RequestException:
        snap = metrics.MetricsSnapshot()
    routes = configs.read_routes(routing_path, cfg.model)
    step = view.step if view.stage == "Canary" else None
    return progress.DemoState(
        scenario=cfg.scenario.name,
        stable=cfg.scenario.stable,
        candidate=cfg.scenario.candidate,
        elapsed_s=time.monotonic() - started,
        phase=view.phase,
        stage=view.stage,
        step=step,
        steps=cfg.pace.steps,
        routes=routes,
        metrics=snap,
        recent=metrics.window(previous, snap) if previous is not None else None,
        traffic=generator.snapshot(),
        reason=view.reason,
    )


def _show_decisions(files: OperatorFiles, view: OperatorView) -> None:
    for decision in files.poll(view):
        say(decision.render())


def run_rollout(
    sup: Supervisor,
    cfg: DemoConfig,
    files: tuple[Path, Path, Path],
    serving: Serving,
    generator: traffic.TrafficGenerator,
) -> progress.DemoState:
    """Run the operator to its end, printing its decisions as they come and a progress block every few seconds."""
    rollout_path, routing_path, serving_path = files
    view = OperatorView()
    followed = OperatorFiles(*operator_files(cfg))
    operator = sup.start(
        "operator",
        operator_command(cfg, rollout_path, routing_path, serving_path, serving.serving_rest),
        log_path=cfg.workdir / "logs" / "operator.log",
    )
    started = time.monotonic()
    next_progress = started + 1.0
    previous: metrics.MetricsSnapshot | None = None
    while operator.alive():
        _show_decisions(followed, view)
        now = time.monotonic()
        if now >= next_progress:
            state = snapshot_state(cfg, started, view, routing_path, generator, previous)
            say("\n".join(progress.render_progress(state)))
            previous = state.metrics
            next_progress = now + cfg.progress_every_s
        if not serving.frontend.alive():
            raise DemoError(
                f"the frontend stopped during the rollout; last lines of its log:\n{serving.frontend.tail()}"
            )
        time.sleep(0.2)
    _show_decisions(followed, view)  # what it wrote before it exited
    state = snapshot_state(cfg, started, view, routing_path, generator)
    state.phase = final_phase(view, operator.process.returncode)
    if state.phase == "Failed" and state.reason is None:
        # It stopped without ending the rollout (bad input, --timeout, a crash): its own words are in its log.
        for line in operator.tail(5).splitlines():
            say(f"  operator: {line}")
        state.reason = f"mnist-operator exited {operator.process.returncode}; see {operator.log_path}"
    return state


def serve_until_interrupted(cfg: DemoConfig, serving: Serving) -> None:
    say()
    say(f"Draw a digit: {cfg.base_url}/   (metrics: {cfg.base_url}/metrics, logs: {cfg.workdir / 'logs'})")
    say("Serving until Ctrl-C.")
    while serving.frontend.alive():
        time.sleep(1)
    raise DemoError(f"the frontend stopped; last lines of its log:\n{serving.frontend.tail()}")


def preflight(cfg: DemoConfig) -> None:
    """The mistakes a newcomer can make, caught before anything starts (Python and disk: the venv rule)."""
    require_free_port(cfg.port, what="the demo's frontend")
    if not cfg.data.exists():
        raise DemoError(f"{cfg.data} is missing: run `make data` (make demo does it for you)")
    if not cfg.example.exists():
        raise DemoError(f"{cfg.example} is missing: the example ModelRollout the demo adapts")


def run(cfg: DemoConfig) -> int:
    """The whole demo; the process exit code (0 only when the rollout ended as the scenario expects)."""
    install_signal_handlers()
    scenario = cfg.scenario
    try:
        preflight(cfg)
        say(
            f"mnist-platform demo: roll v{scenario.candidate} out over v{scenario.stable} as a canary, "
            f"expecting {scenario.expected_phase}"
        )
        section(1, "models")
        accuracy = ensure_models(cfg)
        section(2, "rollout and routing files")
        files = prepare_files(cfg, accuracy)
        with Supervisor() as sup:
            section(3, f"serving on {cfg.base_url}")
            serving = start_serving(sup, cfg, files[1], files[2])
            say(f"    frontend ready (gunicorn pid {serving.frontend.pid}); log: {serving.frontend.log_path}")
            section(4, f"canary under live traffic: {cfg.rate_per_s:g} real MNIST test digits/s, true labels fed back")
            digits = traffic.load_test_digits(cfg.data, count=2000, seed=0)
            generator = traffic.TrafficGenerator(cfg.base_url, digits, rate_per_s=cfg.rate_per_s).start()
            try:
                time.sleep(cfg.warmup_s)
                state = run_rollout(sup, cfg, files, serving, generator)
            finally:
                generator.stop()
            state.traffic = generator.snapshot()
            section(5, "outcome")
            say("\n".join(progress.render_summary(state, scenario.expected_phase)))
            code = 0 if state.phase == scenario.expected_phase else 1
            if cfg.exit_after:
                say("    DEMO_EXIT=1: stopping every process the demo started")
                return code
            serve_until_interrupted(cfg, serving)
            return code
    except PortInUseError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\ndemo: {exc} received: every process the demo started has been stopped", file=sys.stderr)
        return 128 + exc.signum
