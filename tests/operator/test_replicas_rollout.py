"""A rollout across three TF Serving replicas that pick each new model config up 0 s, 5 s and 30 s late.

As in a cluster: the operator writes one model config (the ConfigMap); each replica reads its own copy, which a
"kubelet" thread updates with that replica's delay (the mounted ConfigMap's sync delay), and polls it like
`--model_config_file_poll_wait_seconds`. The replicas are TF Serving stand-ins with TF Serving's label rules and
`--allow_version_labels_for_unavailable_models=true`, as the chart runs TF Serving. Each replica has a real
frontend (gunicorn, gRPC backend) in front of it, all reading one routing file, and traffic (real MNIST test
digits, each answered with feedback) goes round-robin over the three: every request reaches every replica in turn,
as a frontend spreading over the replicas sends it. `mnist-operator local` is given the three replicas' REST URLs
(`--serving-rest`, repeated) and the three frontends' metrics.

A canary (v1 -> v2) is promoted and a broken candidate (v2 -> v3) rolled back, in parallel, each with no failed
request and no config refused by any replica, the slowest replica included. Asking one replica (the old
behaviour) routes to the candidate after about a second, while the others answer NOT_FOUND for 5 and 30 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from mnist_operator.local import atomic_write
from mnist_operator.render import Route, RoutingState, ServingState, render_model_config, render_routing

from tests.support.frontend_process import FrontendProcess
from tests.support.tfserving_standin import StandIn

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DELAYS_S = (0.0, 5.0, 30.0)  # the three replicas
MODEL = "mnist"


class DelayedCopy:
    """The kubelet's part for one replica: its copy of the config shows each content `delay_s` after it was
    written (what the file held `delay_s` ago), so a config that lived shorter than a poll may be skipped."""

    def __init__(self, source: Path, target: Path, delay_s: float) -> None:
        self.source, self.target, self.delay_s = source, target, delay_s
        self.seen: list[tuple[float, str]] = [(time.monotonic() - delay_s, source.read_text())]
        atomic_write(target, self.seen[0][1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"kubelet-{delay_s:g}s", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            text = self.source.read_text()
            now = time.monotonic()
            if text != self.seen[-1][1]:
                self.seen.append((now, text))
            due = [t for at, t in self.seen if at <= now - self.delay_s]
            atomic_write(self.target, due[-1])  # unchanged content is not rewritten

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@dataclass
class Traffic:
    """Real digits round-robin over the frontends, each answered with feedback; every non-200 is a failure."""

    bases: list[str]
    images: np.ndarray
    labels: np.ndarray
    rate_per_s: float = 12.0
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    versions: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        sessions = [requests.Session() for _ in self.bases]
        i = 0
        started = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - started < 300:
            k, which = i % len(self.images), i % len(self.bases)
            i += 1
            base, http = self.bases[which], sessions[which]
            try:
                r = http.post(f"{base}/v1/predict", json={"instances": [self.images[k].tolist()]},
                              headers={"X-User-Id": uuid.uuid4().hex}, timeout=10)
            except requests.RequestException as exc:
                self.failures.append(f"frontend {which}: {type(exc).__name__}")
                continue
            finally:
                self.sent += 1
            if r.status_code != 200:
                self.failures.append(f"frontend {which}: HTTP {r.status_code} {r.text[:200]}")
                continue
            body = r.json()
            self.versions[body["version"]] = self.versions.get(body["version"], 0) + 1
            fb = http.post(f"{base}/v1/feedback", json={
                "request_id": body["request_id"], "index": 0, "label": int(self.labels[k]),
                "feedback_token": body["predictions"][0]["feedback_token"]}, timeout=10)
            if fb.status_code != 200:
                self.failures.append(f"frontend {which}: feedback HTTP {fb.status_code}")
            self.stop.wait(max(0.0, started + i / self.rate_per_s - time.monotonic()))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(20)


class Fleet:
    """Three replicas (stand-in + its kubelet copy + its frontend) serving `stable`, and the operator's files."""

    def __init__(self, work: Path, base_path: Path, stable: int) -> None:
        self.work, self.base_path = work, base_path.resolve()
        self.config = work / "models.config"  # the operator's ConfigMap
        self.routing = work / "routing.json"
        atomic_write(self.config, render_model_config([ServingState(MODEL, str(self.base_path), (stable,),
                                                                    {"stable": stable})]))
        atomic_write(self.routing, render_routing(RoutingState(MODEL, "single", (Route(stable, "stable", 100),)), 1))
        self.copies: list[DelayedCopy] = []
        self.replicas: list[StandIn] = []
        self.frontends: list[FrontendProcess] = []

    def start(self) -> Fleet:
        for i, delay in enumerate(DELAYS_S):
            copy = DelayedCopy(self.config, self.work / f"replica-{i}.config", delay)
            self.copies.append(copy)
            self.replicas.append(StandIn(model_config_file=copy.target, poll_seconds=0.2,
                                         allow_version_labels_for_unavailable_models=True).start())
        for i, replica in enumerate(self.replicas):
            workdir = self.work / f"frontend-{i}"
            workdir.mkdir()
            self.frontends.append(FrontendProcess(workdir, {
                "MNIST_BACKEND": "grpc", "MNIST_SERVING_GRPC": replica.grpc_target, "MNIST_MODEL_NAME": MODEL,
                "MNIST_ROUTING_FILE": str(self.routing), "MNIST_WORKERS": "1", "MNIST_ACCESS_LOG": "0"}))
        for frontend in self.frontends:
            frontend.wait_ready(timeout=120)
        return self

    def operator(self, rollout: Path) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "mnist-operator"), "local", "--rollout", str(rollout), "--routing-file", str(self.routing),
                "--serving-config", str(self.config), "--model-base-path", str(self.base_path), "--tick", "0.3",
                "--timeout", "200"]
        for frontend in self.frontends:
            argv += ["--metrics-url", f"{frontend.url}/metrics"]
        for replica in self.replicas:
            argv += ["--serving-rest", replica.rest_url]
        return subprocess.run(argv, capture_output=True, text=True, timeout=240)

    def settled_on(self, version: int, gone: int, timeout_s: float) -> bool:
        """Every replica applied the final config: `version` alone, labelled stable; `gone` unloaded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(r.labels() == {"stable": version} and r.status(version) == "AVAILABLE" and r.status(gone) == "END"
                   for r in self.replicas):
                return True
            time.sleep(0.5)
        return False

    def close(self) -> None:
        for frontend in self.frontends:
            frontend.stop()
        for replica in self.replicas:
            replica.stop()
        for copy in self.copies:
            copy.close()


def rollout_file(path: Path, candidate: int, stable: int, floor: float, gate: float) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "ml.mnist-platform.dev/v1alpha1", "kind": "ModelRollout", "metadata": {"name": path.stem},
        "spec": {"model": MODEL, "candidateVersion": candidate, "stableVersion": stable, "strategy": "canary",
                 "canary": {"steps": [50, 100], "stepDuration": "3s"},
                 "analysis": {"interval": "1s", "minRequests": 6, "minFeedback": 6, "failureLimit": 2,
                              "maxLatencyP99Ms": 5000, "maxErrorRate": 0.02, "minAccuracy": floor,
                              "inconclusiveTimeout": "60s", "routingTimeout": "20s"},
                 # The slowest replica loads the candidate 30 s after the config names it.
                 "gate": {"minOfflineAccuracy": gate, "timeout": "120s"}}}))
    return path


@dataclass
class Outcome:
    fleet: Fleet
    result: subprocess.CompletedProcess[str]
    traffic: Traffic
    settled: bool


def run_scenario(work: Path, published_models, images, labels, stable: int, candidate: int, floor: float,
                 gate: float) -> Outcome:
    fleet = Fleet(work, published_models.base_path, stable).start()
    try:
        rollout = rollout_file(work / f"v{candidate}.yaml", candidate, stable, floor, gate)
        with Traffic([frontend.url for frontend in fleet.frontends], images, labels) as traffic:
            result = fleet.operator(rollout)
            promoted = result.returncode == 0
            final, gone = (candidate, stable) if promoted else (stable, candidate)
            # Until the slowest replica has applied the final config, with traffic still flowing through it.
            settled = fleet.settled_on(final, gone, timeout_s=60)
        return Outcome(fleet, result, traffic, settled)
    finally:
        fleet.close()


def check_no_replica_missed_anything(o: Outcome, candidate: int) -> None:
    out = o.result.stdout[-4000:] + o.result.stderr
    assert o.settled, out
    assert o.traffic.failures == [], (o.traffic.failures[:10], out)
    for i, replica in enumerate(o.fleet.replicas):
        assert replica.manager.refused() == [], (i, replica.manager.refused()[:3])
        # Each replica, the 30 s one included, answered the candidate: traffic reached them all while it ran.
        assert replica.predict_count(candidate) > 0, (i, out)
    # The candidate was routed to only once the slowest replica had it (asking one replica took about 1 s).
    available = [line for line in o.result.stdout.splitlines() if "CandidateAvailable" in line]
    assert available and float(available[0].split("AVAILABLE after ")[1].split("s")[0]) >= DELAYS_S[-1] - 1, out


def test_canary_and_rollback_across_replicas_that_pick_configs_up_0_5_and_30_s_late(
        published_models, mnist_npz, tmp_path) -> None:
    with np.load(mnist_npz) as d:
        images, labels = d["x_test"][:1000], d["y_test"][:1000]
    acc = published_models.accuracy
    floor = round(min(acc[1], acc[2]) - 0.15, 2)
    (tmp_path / "canary").mkdir()
    (tmp_path / "rollback").mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        canary = pool.submit(run_scenario, tmp_path / "canary", published_models, images, labels, 1, 2, floor,
                             floor)
        # The offline gate would refuse broken v3 before any traffic; it is opened so the live analysis rolls it back.
        rollback = pool.submit(run_scenario, tmp_path / "rollback", published_models, images, labels, 2, 3,
                               round(acc[2] - 0.15, 2), 0.0)
        promoted, rolled_back = canary.result(), rollback.result()

    assert promoted.result.returncode == 0, promoted.result.stdout[-4000:] + promoted.result.stderr
    assert "Promoted" in promoted.result.stdout
    check_no_replica_missed_anything(promoted, candidate=2)
    assert json.loads(promoted.fleet.routing.read_text())["routes"] == [{"version": 2, "label": "stable",
                                                                         "weight": 100}]

    assert rolled_back.result.returncode == 1, rolled_back.result.stdout[-4000:] + rolled_back.result.stderr
    assert "RolledBack reason: LowAccuracy" in rolled_back.result.stderr
    check_no_replica_missed_anything(rolled_back, candidate=3)
    assert json.loads(rolled_back.fleet.routing.read_text())["routes"] == [{"version": 2, "label": "stable",
                                                                            "weight": 100}]
