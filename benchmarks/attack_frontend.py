"""Rerun the attacks of the frontend hardening work against a real gunicorn frontend on 127.0.0.1, bounded.

It starts gunicorn with the frontend's own config and worker (frontend.gunicorn_conf) and, as the app, the real
Flask app with a backend that answers at once (`instant_app()` below; no model, no network). Settings default to
the chart's (2 workers, 4 threads, 4 MiB bodies). Then, one after the other, with /healthz probed and the
workers' memory sampled all along:

- images:   small PNGs that decode big (transparent 4000x4000, 80 KB), several at once; a multipart of many large
            images; images that fill the per-request pixel budget (the longest a request may take);
- slow:     connections that send their headers, or their body, a byte at a time;
- chunked:  a malformed chunk size, a missing CRLF, a chunked body over the limit;
- feedback: two predictions sent with one X-Request-Id, each given feedback;
- minor:    gunicorn's own error pages (414, 431), /v1//predict, line-wrapped base64;
- memory:   everything that takes memory at its limit at once: every thread on a body of the maximum size with a
            picture as large as the decode budget admits, and stalled uploads filling the receive buffers.

It reports the answers per attack, the 5xx count (503 server_busy, a deliberate refusal, apart from the others),
the peak resident memory of each worker (and of the master), and whether /healthz answered throughout (every
probe, within --probe-timeout-s, by default the chart's 3 s). Exit status 1 when an unexpected 5xx came back or a probe failed. Every attack is bounded in
count and time. Not part of `make test` (tests/benchmarks/test_attack_frontend.py runs it on tiny inputs).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
EXPECTED_5XX = ("server_busy",)  # refusals by design (503, retry), not failures


class InstantBackend:
    """Answers every batch at once (digit 0): the frontend's work is all there is."""

    kind = "instant"

    def predict(self, images: np.ndarray, version: int | None, timeout_s: float):
        from frontend.backends.base import BackendResult

        count = len(images)
        return BackendResult(version or 1, np.full((count, 10), 0.1, np.float32), np.zeros(count, np.int64))

    def missing_versions(self, wanted: set[int], timeout_s: float) -> set[int]:
        return set()

    def close(self) -> None:
        pass


def instant_app():
    """gunicorn's app: `attack_frontend:instant_app()` (this file's directory on PYTHONPATH)."""
    from frontend.app import create_app

    return create_app(backend=InstantBackend())


# --- pictures --------------------------------------------------------------------------------------------------------
def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def transparent_png(side: int) -> bytes:
    """A fully transparent square: a few dozen KB of PNG, side * side * 4 bytes once decoded."""
    from PIL import Image

    return png(Image.new("RGBA", (side, side), (0, 0, 0, 0)))


def stroke_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A dark vertical stroke on light paper: a digit "1" the preprocessing accepts."""
    from PIL import Image, ImageDraw

    image = Image.new(mode, (width, height), "white")
    ImageDraw.Draw(image).line([(width // 2, height // 5), (width // 2, 4 * height // 5)], fill="black",
                               width=max(1, width // 25))
    return png(image)


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = "attack-boundary-7d1f"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"file{i}\"; filename=\"{i}.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for i, data in enumerate(files)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- the server and what watches it ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with the frontend's config and the instant app, in its own process group."""

    def __init__(self, settings: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(settings, MNIST_BIND=f"127.0.0.1:{self.port}", MNIST_BACKEND="grpc", MNIST_ACCESS_LOG="0",
                   PYTHONPATH=os.pathsep.join([str(HERE), str(REPO / "services" / "frontend"),
                                               env.get("PYTHONPATH", "")]))
        self._log = open(log, "wb")  # noqa: SIM115 - open for the server's lifetime, closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:frontend.gunicorn_conf", "attack_frontend:instant_app()"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}; see its log")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200 and len(self.workers()) > 0:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit("gunicorn did not answer /healthz within 60 s")

    def workers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


class Watch(threading.Thread):
    """Probes /healthz every `every_s` and samples each worker's resident memory, until stopped."""

    def __init__(self, server: Server, every_s: float, probe_timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.server, self.every_s, self.probe_timeout_s = server, every_s, probe_timeout_s
        self.stopping = threading.Event()
        self.probes: list[tuple[float, int | None, float]] = []  # (when, status or None, seconds)
        self.peak_rss: dict[int, int] = {}
        self.peak_master_rss = 0

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            self.sample()
            started = time.monotonic()
            try:
                status = session.get(f"{self.server.url}/healthz", timeout=self.probe_timeout_s).status_code
            except requests.RequestException:
                status, session = None, requests.Session()
            self.probes.append((started, status, time.monotonic() - started))
            self.sample()
            self.stopping.wait(self.every_s)

    def sample(self) -> None:
        try:
            master = psutil.Process(self.server.process.pid).memory_info().rss
            self.peak_master_rss = max(master, self.peak_master_rss)
        except psutil.NoSuchProcess:
            pass
        for worker in self.server.workers():
            try:
                rss = worker.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            self.peak_rss[worker.pid] = max(rss, self.peak_rss.get(worker.pid, 0))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


# --- one answer, however it came -------------------------------------------------------------------------------------
def outcome(status: int | None, body: bytes | str | dict | None, seconds: float) -> dict:
    """What the tables count: status, error code (from a JSON error body), whether the body was JSON, seconds."""
    code, is_json = None, False
    if isinstance(body, dict):
        parsed, is_json = body, True
    else:
        try:
            parsed, is_json = json.loads(body), True
        except (TypeError, ValueError):
            parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        code = parsed["error"].get("code")
    return {"status": status, "code": code, "json": is_json, "seconds": round(seconds, 3)}


def http(method: str, url: str, timeout_s: float, **kwargs) -> dict:
    started = time.monotonic()
    try:
        response = requests.request(method, url, timeout=timeout_s, **kwargs)
    except requests.RequestException as error:
        return outcome(None, type(error).__name__, time.monotonic() - started)
    return outcome(response.status_code, response.content, time.monotonic() - started)


def raw(port: int, data: bytes, timeout_s: float) -> dict:
    """Send bytes on a new connection and read the answer until the server closes it."""
    started, answer = time.monotonic(), b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        pass
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return outcome(status, body, time.monotonic() - started)


def at_once(calls: list[Callable[[], dict]]) -> list[dict]:
    results: list[dict] = [{}] * len(calls)

    def run(index: int) -> None:
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- the attacks -----------------------------------------------------------------------------------------------------
def largest_decodable_side(decode_memory: int, bytes_per_pixel: int) -> int:
    """The side of the largest square picture the worker's decode budget admits (frontend.preprocess.decode_cost)."""
    from frontend.preprocess import WORK_BYTES

    return int(((decode_memory - WORK_BYTES) / bytes_per_pixel) ** 0.5 * 0.98)


def attack_images(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    url, timeout = f"{server.url}/v1/predict", args.request_timeout_s
    bomb = transparent_png(args.bomb_side)
    body, content_type = multipart([stroke_png(args.bomb_side // 2, args.bomb_side // 2)] * args.multipart_images)
    # As large as the decode budget allows, with alpha (6 bytes a pixel while decoding): all of them at once make
    # the worker's threads take turns.
    rgba_side = largest_decodable_side(args.decode_memory, 6)
    rgba = stroke_png(rgba_side, rgba_side, "RGBA")
    # Pictures that together fill the request's pixel budget, each as large as the budget allows (RGB, 5 bytes a
    # pixel while decoding): the most work one request may ask for.
    side = largest_decodable_side(args.decode_memory, 5)
    fill = [base64.b64encode(stroke_png(side, side)).decode()] * max(1, int(args.request_pixels // (side * side)))
    png_post = {"headers": {"Content-Type": "image/png"}}
    return {
        f"{args.bombs} x transparent {args.bomb_side}x{args.bomb_side} PNG ({len(bomb) // 1024} KB) at once":
            at_once([lambda: http("POST", url, timeout, data=bomb, **png_post)] * args.bombs),
        f"{args.bombs} x RGBA {rgba_side}x{rgba_side} PNG (the decode budget) at once":
            at_once([lambda: http("POST", url, timeout, data=rgba, **png_post)] * args.bombs),
        f"multipart of {args.multipart_images} images of {args.bomb_side // 2}x{args.bomb_side // 2}":
            [http("POST", url, timeout, data=body, headers={"Content-Type": content_type})],
        f"{len(fill)} images of {side}x{side} (the request pixel budget), {args.fill_requests} requests at once":
            at_once([lambda: http("POST", url, timeout, json={"images": fill})] * args.fill_requests),
    }


def attack_slow(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    """Connections that send a byte every --slow-interval-s, for at most --slow-seconds each."""
    body = json.dumps({"instances": [[[0] * 28] * 28]}).encode()
    request = (b"POST /v1/predict HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body)
    head = request.index(b"\r\n\r\n") + 4

    def slow(body_only: bool) -> dict:
        started, answer = time.monotonic(), b""
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=args.slow_seconds + 5) as sock:
                sent = head if body_only else 0
                sock.sendall(request[:sent])
                sock.setblocking(False)
                while sent < len(request) and time.monotonic() - started < args.slow_seconds:
                    try:
                        if chunk := sock.recv(65536):
                            answer += chunk
                        else:
                            break  # closed by the server
                    except BlockingIOError:
                        pass
                    sock.send(request[sent : sent + 1])
                    sent += 1
                    time.sleep(args.slow_interval_s)
                sock.setblocking(True)
                sock.settimeout(2)
                while chunk := sock.recv(65536):
                    answer += chunk
        except OSError:
            pass
        result = outcome(int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None,
                         answer.partition(b"\r\n\r\n")[2], time.monotonic() - started)
        result["closed_by_server_after_s"] = result["seconds"]
        return result

    half = args.slow_clients // 2
    results = at_once([lambda: slow(False)] * (args.slow_clients - half) + [lambda: slow(True)] * half)
    return {f"{args.slow_clients} connections sending headers or body a byte every {args.slow_interval_s:g} s":
            results}


def attack_chunked(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    body = json.dumps({"instances": [[[0] * 28] * 28]}).encode()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    big = b" " * (args.max_body + 1) + body
    return {
        "chunk size 'zz'": [raw(server.port, head + b"zz\r\n" + body + b"\r\n0\r\n\r\n", args.request_timeout_s)],
        "chunk without its CRLF": [raw(server.port, head + b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n",
                                       args.request_timeout_s)],
        "chunked body over the limit": [raw(server.port, head + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n",
                                            args.request_timeout_s)],
    }


def attack_feedback(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    headers = {"X-Request-Id": "same-id-twice"}
    results = []
    for _ in range(2):
        answer = requests.post(f"{server.url}/v1/predict", json={"instances": [[[0] * 28] * 28]}, headers=headers,
                               timeout=args.request_timeout_s).json()
        feedback = {"request_id": answer["request_id"], "label": 0,
                    "feedback_token": answer["predictions"][0]["feedback_token"]}
        started = time.monotonic()
        reply = requests.post(f"{server.url}/v1/feedback", json=feedback, timeout=args.request_timeout_s)
        result = outcome(reply.status_code, reply.content, time.monotonic() - started)
        result["counted"] = reply.json().get("counted")
        results.append(result)
    return {"feedback on two predictions with one X-Request-Id": results}


def attack_minor(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    timeout = args.request_timeout_s
    wrapped = base64.encodebytes(stroke_png(56, 56)).decode()  # what `base64 file.png` prints: 76-column lines
    return {
        "request line of 5000 bytes": [raw(server.port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
                                           timeout)],
        "header of 9000 bytes": [raw(server.port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
                                     timeout)],
        "POST /v1//predict": [http("POST", f"{server.url}/v1//predict", timeout, json={})],
        "line-wrapped base64": [http("POST", f"{server.url}/v1/predict", timeout, json={"image": wrapped})],
    }


def attack_memory(server: Server, args: argparse.Namespace) -> dict[str, list[dict]]:
    """Everything that takes memory, at its limit at once: every thread of every worker on a body of the maximum
    size holding an image as large as the decode budget admits, and stalled uploads filling the receive buffers."""
    side = largest_decodable_side(args.decode_memory, 5)
    encoded = base64.b64encode(stroke_png(side, side)).decode()
    # The picture, then whitespace (ignored in base64) up to the body limit: the largest body there can be.
    padding = max(0, (args.max_body - len(encoded) - 64) // 2)  # "\n" is two bytes in JSON
    body = json.dumps({"image": encoded + "\n" * padding}).encode()[: args.max_body]
    if len(body) >= args.max_body:
        body = json.dumps({"image": encoded}).encode()
    stalled_body = b" " * args.max_body
    stalled_head = (b"POST /v1/predict HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(stalled_body))

    def stall() -> dict:
        """Send most of a maximum body, then nothing: held in the receive buffer until the body deadline. A moment
        after the others: the threads are busy with theirs when the buffers fill up."""
        time.sleep(0.3)
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=args.body_timeout_s + 10) as sock:
                sock.sendall(stalled_head + stalled_body[: args.max_body - 1000])
                answer = sock.recv(65536)
        except OSError:
            answer = b""
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
        return outcome(status, answer.partition(b"\r\n\r\n")[2], time.monotonic() - started)

    busy = args.workers * args.threads * 2
    stalls = args.workers * (args.receive_buffer // args.max_body + 2)
    calls = [lambda: stall()] * stalls + [lambda: http("POST", f"{server.url}/v1/predict", args.request_timeout_s,
                                                        data=body, headers={"Content-Type": "application/json"})] * busy
    results = at_once(calls)
    return {f"{stalls} uploads stalled near {args.max_body // 2**20} MiB": results[:stalls],
            f"{busy} bodies of {len(body) // 1024} KB with a {side}x{side} picture, at once": results[stalls:]}


ATTACKS = {"images": attack_images, "slow": attack_slow, "chunked": attack_chunked, "feedback": attack_feedback,
           "minor": attack_minor, "memory": attack_memory}


# --- the report ------------------------------------------------------------------------------------------------------
def summarize(results: dict[str, dict[str, list[dict]]], probes: list[tuple[float, int | None, float]],
              peak_rss: dict[int, int], probe_timeout_s: float) -> dict:
    """Counts for the report (pure): answers per attack, 5xx split into refusals by design and the rest, probes."""
    rows, fives, unexpected = [], 0, 0
    for attack, kinds in results.items():
        for kind, answers in kinds.items():
            statuses = Counter(f"{a['status']} {a['code'] or ''}".strip() if a["status"] else "no answer"
                               for a in answers)
            kind_5xx = [a for a in answers if (a["status"] or 0) >= 500]
            fives += len(kind_5xx)
            unexpected += sum(1 for a in kind_5xx if a["code"] not in EXPECTED_5XX)
            rows.append({"attack": attack, "kind": kind, "answers": dict(statuses),
                         "all_json": all(a["json"] for a in answers if a["status"]),
                         "longest_s": max((a["seconds"] for a in answers), default=0.0)})
    failed = [p for p in probes if p[1] != 200 or p[2] > probe_timeout_s]
    return {"rows": rows, "5xx": fives, "unexpected_5xx": unexpected, "probes": len(probes),
            "probes_failed": len(failed), "slowest_probe_s": round(max((p[2] for p in probes), default=0.0), 3),
            "healthz_answered_throughout": bool(probes) and not failed,
            "peak_worker_rss_mib": {str(pid): round(rss / 2**20, 1) for pid, rss in sorted(peak_rss.items())}}


def print_report(summary: dict, baseline_mib: dict[str, float], settings: dict[str, str]) -> None:
    print("\n| attack | what | answers | JSON | longest s |")
    print("| --- | --- | --- | --- | --- |")
    for row in summary["rows"]:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(row["answers"].items()))
        print(f"| {row['attack']} | {row['kind']} | {answers} | {'yes' if row['all_json'] else 'NO'} | "
              f"{row['longest_s']:.2f} |")
    print(f"\n5xx: {summary['5xx']} (unexpected, i.e. not {'/'.join(EXPECTED_5XX)}: {summary['unexpected_5xx']})")
    print(f"/healthz: {summary['probes']} probes, {summary['probes_failed']} failed or slow, slowest "
          f"{summary['slowest_probe_s']} s; answered throughout: {summary['healthz_answered_throughout']}")
    for pid, peak in summary["peak_worker_rss_mib"].items():
        print(f"worker {pid}: peak RSS {peak} MiB (after start {baseline_mib.get(pid, 0.0)} MiB)")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="which, in order: " + ",".join(ATTACKS))
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (the chart's: 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (the chart's: 4)")
    parser.add_argument("--max-body", type=int, default=4 * 1024 * 1024, help="MNIST_MAX_BODY_BYTES (chart: 4 MiB)")
    parser.add_argument("--decode-memory", type=int, default=48 * 1024 * 1024, help="MNIST_DECODE_MEMORY_BYTES")
    parser.add_argument("--request-pixels", type=int, default=32_000_000, help="MNIST_MAX_REQUEST_PIXELS")
    parser.add_argument("--receive-buffer", type=int, default=16 * 1024 * 1024, help="MNIST_RECEIVE_BUFFER_BYTES")
    parser.add_argument("--header-timeout-s", type=float, default=10.0, help="MNIST_HEADER_TIMEOUT_S")
    parser.add_argument("--body-timeout-s", type=float, default=30.0, help="MNIST_BODY_TIMEOUT_S")
    parser.add_argument("--bombs", type=int, default=8, help="transparent PNGs sent at once")
    parser.add_argument("--bomb-side", type=int, default=4000, help="their side, pixels")
    parser.add_argument("--multipart-images", type=int, default=64, help="images in the large multipart")
    parser.add_argument("--fill-requests", type=int, default=2, help="requests that fill the pixel budget, at once")
    parser.add_argument("--slow-clients", type=int, default=32, help="slow connections")
    parser.add_argument("--slow-interval-s", type=float, default=0.5, help="a byte every this many seconds")
    parser.add_argument("--slow-seconds", type=float, default=40.0, help="each slow sender stops after this")
    parser.add_argument("--request-timeout-s", type=float, default=60.0, help="client timeout of each request")
    parser.add_argument("--probe-every-s", type=float, default=0.2, help="/healthz probe interval")
    parser.add_argument("--probe-timeout-s", type=float, default=3.0,
                        help="a probe slower than this failed (the chart's probes time out after 3 s)")
    parser.add_argument("--json-out", help="also write the results here")
    args = parser.parse_args(argv)
    chosen = [name for name in args.attacks.split(",") if name]
    unknown = set(chosen) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    settings = {"MNIST_WORKERS": str(args.workers), "MNIST_THREADS": str(args.threads),
                "MNIST_MAX_BODY_BYTES": str(args.max_body), "MNIST_DECODE_MEMORY_BYTES": str(args.decode_memory),
                "MNIST_MAX_REQUEST_PIXELS": str(args.request_pixels), "MNIST_RECEIVE_BUFFER_BYTES": str(args.receive_buffer),
                "MNIST_HEADER_TIMEOUT_S": str(args.header_timeout_s), "MNIST_BODY_TIMEOUT_S": str(args.body_timeout_s)}
    with tempfile.TemporaryDirectory(prefix="attack-frontend-") as workdir:
        server = Server(settings, Path(workdir) / "gunicorn.log")
        try:
            server.wait_ready()
            time.sleep(1.0)  # every worker has built the app
            baseline = {str(w.pid): round(w.memory_info().rss / 2**20, 1) for w in server.workers()}
            watch = Watch(server, args.probe_every_s, args.probe_timeout_s)
            watch.start()
            results = {}
            for name in chosen:
                print(f"==> {name}", flush=True)
                results[name] = ATTACKS[name](server, args)
            time.sleep(1.0)
            watch.stop()
        finally:
            server.stop()
            log_tail = (Path(workdir) / "gunicorn.log").read_text(errors="replace")[-3000:]
    summary = summarize(results, watch.probes, watch.peak_rss, args.probe_timeout_s)
    print_report(summary, baseline, settings)
    master_mib = round(watch.peak_master_rss / 2**20, 1)
    pod_mib = round(master_mib + sum(summary["peak_worker_rss_mib"].values()), 1)
    print(f"master: peak RSS {master_mib} MiB; master and workers at their peaks together: {pod_mib} MiB")
    report = {"settings": settings, "baseline_worker_rss_mib": baseline, "peak_master_rss_mib": master_mib,
              "pod_peak_sum_mib": pod_mib, **summary, "results": results}
    if "Traceback" in log_tail:
        print("\ngunicorn logged a traceback:\n" + log_tail, file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 1 if summary["unexpected_5xx"] or not summary["healthz_answered_throughout"] else 0


if __name__ == "__main__":
    sys.exit(main())
