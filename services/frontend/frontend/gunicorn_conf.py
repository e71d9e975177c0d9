"""gunicorn settings for the frontend, from the MNIST_* environment (frontend.config).

Used as `gunicorn -c python:frontend.gunicorn_conf` (what `mnist-frontend` and the container run) or via
services/frontend/gunicorn.conf.py. gthread workers (threads do the waiting on TF Serving) that read each request
whole before a thread takes it (frontend.gunicorn_worker: slow clients cost a buffer, not a thread); SIGTERM makes
gunicorn stop accepting, finish in-flight requests for up to MNIST_GRACEFUL_TIMEOUT_S, then exit.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import shutil
import tempfile
import time

from gunicorn import glogging

from frontend.config import load_from_env
from frontend.memory import return_big_buffers_to_the_system

_config = load_from_env()
# Before any worker is forked (they inherit it): freed image and body buffers leave the workers' memory at once.
return_big_buffers_to_the_system()

wsgi_app = "frontend.app:create_app()"
bind = [_config["BIND"]]
workers = _config["WORKERS"]
threads = _config["THREADS"]
worker_class = "frontend.gunicorn_worker.BufferedThreadWorker"
graceful_timeout = _config["GRACEFUL_TIMEOUT_S"]
# A worker silent for this long is hung (not merely busy: gthread heartbeats from its main thread).
timeout = max(30, int(_config["BACKEND_TIMEOUT_S"] * 3))
keepalive = 5
loglevel = _config["LOG_LEVEL"]
accesslog = "-" if _config["ACCESS_LOG"] else None
errorlog = "-"
# Forwarded headers are handled by the app (MNIST_TRUST_PROXY), not by gunicorn's own allow-list.
forwarded_allow_ips = "127.0.0.1"
proxy_allow_ips = "127.0.0.1"
# gunicorn >= 25 opens a management socket under $HOME by default: not wanted on a read-only, least-privilege pod
# (and two servers on one machine would fight over the same path).
control_socket_disable = True
worker_tmp_dir = os.environ.get("MNIST_WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)

# Metrics of all workers are aggregated through files in this directory (prometheus_client multiprocess mode).
# It must exist before any worker imports prometheus_client, hence here at config load in the master.
_created_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _created_metrics_dir = tempfile.mkdtemp(prefix="mnist-frontend-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_metrics_dir
else:  # a directory left by an earlier run would carry stale counters
    for _name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]):
        if _name.endswith(".db"):
            os.remove(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], _name))

# The workers record the feedback they counted in one file, so a replay to another worker counts nothing.
if not _config["FEEDBACK_CLAIMS_FILE"]:
    os.environ["MNIST_FEEDBACK_CLAIMS_FILE"] = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"],
                                                            "feedback-claims.sqlite")

# One feedback-token key for all workers of this master, unless a shared key file is configured.
if not _config["FEEDBACK_KEY_FILE"] and not os.environ.get("MNIST_FEEDBACK_KEY"):
    os.environ["MNIST_FEEDBACK_KEY"] = secrets.token_hex(32)


class JsonAccessLogger(glogging.Logger):
    """Access log lines as JSON, with the request id, model version and route the app put in the headers."""

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        headers = {k.lower(): v for k, v in (resp.headers.items() if hasattr(resp.headers, "items") else resp.headers)}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "latency_ms": round(request_time.total_seconds() * 1000, 3),
            "request_id": headers.get("x-request-id"),
            "model_version": headers.get("x-model-version"),
            "route": headers.get("x-model-route"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        try:
            self.access_log.info(json.dumps(record))
        except Exception:  # noqa: BLE001 - a log line must never break a request
            self.exception("access log failed")


logger_class = JsonAccessLogger


def post_worker_init(worker) -> None:
    """The worker has built the app, which loaded what the routing file names (the embedded backend's models).
    Those objects live as long as the worker: freezing them takes them out of the garbage collector's full
    passes. With TensorFlow in the worker that is about 330,000 objects, and a full pass over them held the
    worker for 150-220 ms (docs/BENCHMARKS.md, "Garbage-collector pauses")."""
    gc.freeze()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
