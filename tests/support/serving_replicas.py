"""TF Serving replicas behind one name, as a headless Service has them, and the load that measures the spread.

Each replica is a TF Serving stand-in in a process of its own, listening on its own loopback address
(127.0.0.2, .3, ...) on ports shared by all of them, as pods of one Deployment do; a DNS server on 127.0.0.1
answers the fleet's name with the addresses of the replicas that are "ready" (`add`, `remove`). `kill()` is
SIGKILL: the connections drop as when a pod's process dies. Used by tests/frontend/test_replicas.py
and benchmarks/replicas_bench.py.

    python -m tests.support.serving_replicas --host 127.0.0.3 --grpc-port P --rest-port Q --model-base-path DIR
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import requests
from frontend.backends import BackendEvents

from tests.support.dns import DnsServer

REPO = Path(__file__).resolve().parents[2]
NAME = "serving.replicas.test"
_PREDICT_COUNT = re.compile(r'^:tensorflow:serving:standin:predict_count\{[^}]*status="OK"[^}]*\} (\S+)$', re.M)


def free_ports(host: str, count: int = 2) -> list[int]:
    """Ports free on `host` now (the replicas take the same ones on their own addresses)."""
    sockets = [socket.create_server((host, 0)) for _ in range(count)]
    try:
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Replica:
    """One stand-in process on `host`."""

    def __init__(self, host: str, grpc_port: int, rest_port: int, model_base_path: Path, versions: list[int],
                 log_path: Path) -> None:
        self.host, self.grpc_port, self.rest_port = host, grpc_port, rest_port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.serving_replicas", "--host", host, "--grpc-port", str(grpc_port),
             "--rest-port", str(rest_port), "--model-base-path", str(model_base_path),
             "--versions", ",".join(map(str, versions))],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=self._log, stderr=subprocess.STDOUT)

    def wait_listening(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.host} exited {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection((self.host, self.grpc_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"replica {self.host} did not listen in time: {self.log_path.read_text()[-2000:]}")

    def predictions(self) -> int:
        """Successful Predicts it answered (the stand-in's own counter, read from its metrics page)."""
        page = requests.get(f"http://{self.host}:{self.rest_port}/monitoring/prometheus/metrics", timeout=5).text
        return int(sum(float(value) for value in _PREDICT_COUNT.findall(page)))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Fleet:
    """`count` replicas started at once (loading takes seconds); the first `ready` of them are in DNS."""

    def __init__(self, model_base_path: Path, versions: list[int], count: int, ready: int, workdir: Path,
                 start_timeout_s: float = 240.0) -> None:
        if not 1 <= ready <= count <= 200:
            raise ValueError(f"need 1 <= ready ({ready}) <= count ({count}) <= 200")
        self.hosts = [f"127.0.0.{2 + i}" for i in range(count)]
        self.grpc_port, self.rest_port = free_ports(self.hosts[0])
        self._model_base_path, self._versions = model_base_path, versions
        self._workdir, self._start_timeout_s = workdir, start_timeout_s
        self._ready = ready
        self.replicas: dict[str, Replica] = {}
        self._in_dns: list[str] = []
        self.dns = DnsServer()

    def __enter__(self) -> Fleet:
        try:
            for host in self.hosts:
                self.replicas[host] = Replica(host, self.grpc_port, self.rest_port, self._model_base_path,
                                              self._versions, self._workdir / f"replica-{host}.log")
            deadline = time.monotonic() + self._start_timeout_s
            for replica in self.replicas.values():
                replica.wait_listening(deadline)
            self.publish(self.hosts[:self._ready])
            self.dns.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for replica in self.replicas.values():
            replica.stop()
        if self.dns._thread.is_alive():
            self.dns.__exit__(None, None, None)

    @property
    def grpc_target(self) -> str:
        return f"{NAME}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{NAME}:{self.rest_port}"

    def in_dns(self) -> list[str]:
        return list(self._in_dns)

    def publish(self, hosts: list[str]) -> None:
        """Answer the name with these addresses from now on (the ready pods of a headless Service)."""
        self._in_dns = list(hosts)
        self.dns.set(NAME, hosts)

    def predictions(self) -> dict[str, int]:
        return {host: replica.predictions() for host, replica in self.replicas.items() if replica.alive}


@dataclass
class Result:
    """What `measure` saw (shares are of the requests in the spread phase, per replica in DNS then)."""

    replicas: int
    requests: int
    shares: dict[str, float]
    failed: int
    failures: Counter = field(default_factory=Counter)
    added_first_request_s: float | None = None
    retries: Counter = field(default_factory=Counter)
    sent: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        added = "never" if self.added_first_request_s is None else f"{self.added_first_request_s:.1f} s"
        return (f"replicas {self.replicas}: share min {100 * min(self.shares.values()):.1f}% "
                f"max {100 * max(self.shares.values()):.1f}%; failed {self.failed}; "
                f"added replica first request after {added}")


class Load:
    """`threads` threads calling `predict()` until stopped; counts answers and failures."""

    def __init__(self, predict: Callable[[], object], threads: int) -> None:
        self._predict = predict
        self._lock = threading.Lock()
        self.sent = 0
        self.failures: Counter = Counter()
        self._budget = 0
        self._stop = threading.Event()
        self._more = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def send(self, count: int) -> None:
        """Let `count` more requests go, and wait until they have been answered."""
        with self._more:
            target = self.sent + self._budget + count
            self._budget += count
            self._more.notify_all()
            while self.sent < target:
                self._more.wait(0.5)

    def send_until(self, done: Callable[[], bool], timeout_s: float, step: int = 20) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.send(step)
            if done():
                return True
        return False

    def _run(self) -> None:
        while True:
            with self._more:
                while self._budget == 0 and not self._stop.is_set():
                    self._more.wait(0.5)
                if self._stop.is_set():
                    return
                self._budget -= 1
            try:
                self._predict()
                error = None
            except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind, none is fatal here
                error = f"{type(exc).__name__}: {exc}"[:200]
            with self._more:
                self.sent += 1
                if error:
                    self.failures[error] += 1
                self._more.notify_all()

    def stop(self) -> None:
        self._stop.set()
        with self._more:
            self._more.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)


def measure(fleet: Fleet, make_backend: Callable[[Fleet, BackendEvents], object], requests_count: int, *,
            threads: int = 8, added_timeout_s: float = 60.0, after_kill: int | None = None) -> Result:
    """Three phases over one backend: `requests_count` predictions over the replicas in DNS (the spread); the
    next replica added to DNS, load until it answers one (time from the DNS change); a replica SIGKILLed while
    `after_kill` more go (it stays in DNS for a second, as a pod's endpoint does until the kubelet reports it).
    `failed` counts every request that did not get an answer, in all three phases."""
    retries: Counter = Counter()
    backend = make_backend(fleet, BackendEvents(retried=lambda outcome: retries.update([outcome])))
    images = np.zeros((1, 28, 28, 1), np.float32)
    load = Load(lambda: backend.predict(images, None, 5.0), threads)
    started = time.monotonic()
    try:
        ready = fleet.in_dns()
        before = fleet.predictions()
        load.send(requests_count)
        after = fleet.predictions()
        got = {host: after[host] - before[host] for host in ready}
        shares = {host: count / requests_count for host, count in got.items()}
        added_s = None
        spare = [host for host in fleet.hosts if host not in ready and fleet.replicas[host].alive]
        if spare:
            added = spare[0]
            base = fleet.replicas[added].predictions()
            fleet.publish(ready + [added])
            t0 = time.monotonic()
            if load.send_until(lambda: fleet.replicas[added].predictions() > base, added_timeout_s):
                added_s = time.monotonic() - t0
            ready = ready + [added]
        victim = ready[0]
        kill_at = after_kill if after_kill is not None else max(requests_count // 3, 100)
        load.send(kill_at // 4)
        fleet.replicas[victim].kill()
        killed_at = time.monotonic()
        load.send(kill_at // 4)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - killed_at)))
        fleet.publish([host for host in ready if host != victim])
        load.send(kill_at - 2 * (kill_at // 4))
    finally:
        load.stop()
        backend.close()
    return Result(replicas=len(shares), requests=requests_count, shares=shares, failed=sum(load.failures.values()),
                  failures=load.failures, added_first_request_s=added_s, retries=retries,
                  sent=load.sent, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """One replica: the stand-in on --host until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.serving_replicas")
    parser.add_argument("--host", required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--versions", default="", help="comma-separated; empty: the latest")
    args = parser.parse_args(argv)
    from tests.support.tfserving_standin import StandIn

    versions = [int(v) for v in args.versions.split(",") if v] or None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with StandIn(model_base_path=args.model_base_path, versions=versions, grpc_port=args.grpc_port,
                 rest_port=args.rest_port, host=args.host, poll_seconds=5.0):
        print(f"replica {args.host} serving", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
