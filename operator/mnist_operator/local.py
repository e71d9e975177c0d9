"""Local mode: drive ONE rollout with the same decide() against files and a running frontend's /metrics.

No Kubernetes: the routing config and TF Serving's model config are plain files (written atomically: temp file in
the same directory, then rename), metrics are scraped from the given URLs, and the AVAILABLE gate is TF Serving's
model status API when --serving-rest is given, else the model store (the version dir holds saved_model.pb).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests
import yaml

from mnist_operator import decide as core
from mnist_operator import metrics_source, versions
from mnist_operator.config import GROUP
from mnist_operator.render import render_model_config, render_routing
from mnist_operator.spec import SpecError, parse_spec


class LocalError(Exception):
    """A mistake in the local-mode arguments or files: one line, exit code 2."""


@dataclass
class LocalOptions:
    rollout: Path
    routing_file: Path
    serving_config: Path
    metrics_urls: list[str]
    model_base_path: Path | None = None
    serving_rest: str | None = None
    tick_s: float | None = None
    timeout_s: float | None = None
    status_file: Path | None = None
    http_timeout_s: float = 2.0


def load_rollout(path: Path) -> dict[str, Any]:
    """Read one ModelRollout manifest; refuse anything else with a clear line."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise LocalError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    rollouts = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ModelRollout"]
    if len(rollouts) != 1:
        raise LocalError(f"{path} must hold exactly one ModelRollout (found {len(rollouts)})")
    obj = rollouts[0]
    if not str(obj.get("apiVersion", "")).startswith(GROUP + "/"):
        raise LocalError(f"{path}: apiVersion must be {GROUP}/v1alpha1")
    try:
        parse_spec(obj.get("spec") or {})
    except SpecError as exc:
        raise LocalError(f"{path}: invalid spec: {exc}") from exc
    return obj


def atomic_write(path: Path, text: str) -> bool:
    """Replace a file's content atomically (readers see the old or the new file, never half); False if unchanged."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def base_path_in_config(path: Path, model: str) -> Path | None:
    """The local base_path of `model` in an existing TF Serving model config file, if it is a directory here."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for block in re.split(r"\bconfig\s*\{", text)[1:]:
        name = re.search(r'\bname:\s*"((?:[^"\\]|\\.)*)"', block)
        base = re.search(r'\bbase_path:\s*"((?:[^"\\]|\\.)*)"', block)
        if name and base and json.loads(f'"{name.group(1)}"') == model:
            candidate = Path(json.loads(f'"{base.group(1)}"'))
            return candidate if candidate.is_dir() else None
    return None


def progress_line(status: dict[str, Any], steps: int) -> str:
    """One line a person can follow: stage, weights, per-version numbers of the last analysis."""
    parts = [f"{status.get('phase', '?')}/{status.get('stage', '?')}"]
    if status.get("stage") == core.CANARY:
        parts.append(f"step {int(status.get('step', 0)) + 1}/{steps}")
    parts.append(f"candidate {status.get('candidateWeight', 0)}%")
    if status.get("shadowPercent"):
        parts.append(f"shadow {status['shadowPercent']}%")
    la = status.get("lastAnalysis") or {}
    for who in ("candidate", "stable"):
        s = la.get(who)
        if s:
            acc = "n/a" if s.get("accuracy") is None else f"{s['accuracy']:.3f}"
            p99 = "n/a" if s.get("p99Ms") is None else f"{s['p99Ms']:.0f}ms"
            err = "n/a" if s.get("errorRate") is None else f"{s['errorRate']:.3f}"
            parts.append(f"v{s['version']}: {s['requests']:.0f} req err {err} p99 {p99} acc {acc}")
    if la.get("shadow"):
        ag = la["shadow"].get("agreement")
        parts.append(f"agreement {'n/a' if ag is None else f'{ag:.3f}'}")
    parts.append(f"failed checks {status.get('failedChecks', 0)}")
    return " | ".join(parts)


def run_local(opts: LocalOptions, out: TextIO = sys.stdout, clock: Any = time.time) -> int:
    """Drive the rollout to its end. 0: Promoted; 1: RolledBack or Failed; 2: bad arguments or files."""
    obj = load_rollout(opts.rollout)
    if not opts.metrics_urls:
        raise LocalError("need at least one --metrics-url")
    spec = obj.get("spec") or {}
    parsed = parse_spec(spec)
    if opts.model_base_path is None and not opts.serving_rest:
        # Where the serving config in place says the model lives (the demo writes it before starting us).
        opts.model_base_path = base_path_in_config(opts.serving_config, parsed.model)
    meta = obj.get("metadata") or {}
    key = f"{meta.get('namespace', 'default')}/{meta.get('name', 'rollout')}"
    base_path = str(opts.model_base_path.resolve()) if opts.model_base_path else f"/models/{parsed.model}"
    tick_s = opts.tick_s if opts.tick_s is not None else max(0.2, min(parsed.interval_s / 2, 1.0))
    status: dict[str, Any] | None = _read_json(opts.status_file) if opts.status_file else None
    http = requests.Session()
    started = clock()
    tty = out.isatty()
    last_progress = ""
    while True:
        now = clock()
        st = status or {}
        cand = core.CandidateInfo()
        routing_now = _read_json(opts.routing_file)
        if st.get("stage") in (None, core.WAITING, core.GATE, core.LOADING):
            cand = _version_facts(opts, parsed.model, parsed.candidate_version, http)
        versions = {}
        stable = core.stable_to_check(parsed, routing_now)
        if st.get("stage") in (None, core.WAITING, core.GATE) and stable not in (None, parsed.candidate_version):
            versions[stable] = _version_facts(opts, parsed.model, stable, http)  # checked like the candidate
        metrics = None
        if st.get("stage") in (*core.TRAFFIC_STAGES, core.LOADING, core.PROMOTING, core.ROLLING_BACK):
            metrics = metrics_source.scrape_urls({u: u for u in opts.metrics_urls}, parsed.model,
                                                 opts.http_timeout_s, http, clock)
        obs = core.Observation(rollout=key, generation=int(meta.get("generation") or 1), metrics=metrics,
                               candidate=cand, serving_base_path=base_path, current_routing=routing_now,
                               versions=versions)
        d = core.decide(spec, status, obs, now)
        if d.serving is not None:
            atomic_write(opts.serving_config, render_model_config([d.serving]))
        if d.routing is not None:
            atomic_write(opts.routing_file, render_routing(d.routing, d.routing_generation))
        status = d.status
        if opts.status_file:
            atomic_write(opts.status_file, json.dumps(status, indent=1, sort_keys=True) + "\n")
        for e in d.events:
            if tty and last_progress:
                out.write("\r\033[K")
            out.write(f"{time.strftime('%H:%M:%S', time.localtime(now))} {e.type:<7} {e.reason}: {e.message}\n")
            last_progress = ""
        line = progress_line(status, len(parsed.canary.steps))
        if line != last_progress:
            out.write(("\r\033[K" + line) if tty else line + "\n")
            last_progress = line
        out.flush()
        phase = status.get("phase")
        if phase in core.TERMINAL:
            if tty:
                out.write("\n")
            if phase == core.PROMOTED:
                out.write(f"Promoted reason: {status.get('message', '')}\n")
                return 0
            out.flush()
            sys.stderr.write(f"{phase} reason: {status.get('reason')}: {status.get('message', '')}\n")
            return 1
        if opts.timeout_s is not None and now - started > opts.timeout_s:
            sys.stderr.write(f"Timeout: rollout still {phase}/{status.get('stage')} after {opts.timeout_s:.0f}s\n")
            return 3
        time.sleep(tick_s)


def _version_facts(opts: LocalOptions, model: str, version: int, http: requests.Session) -> core.CandidateInfo:
    """Gate facts about one version: TF Serving's status API when given; else the model store; else (neither) the
    frontend's /readyz."""
    store = versions.store_candidate_info(opts.model_base_path, version) if opts.model_base_path else None
    if opts.serving_rest:
        ok, seen = versions.serving_available(opts.serving_rest, model, version, opts.http_timeout_s, http)
        exists = store.exists if store else ok
        return core.CandidateInfo(exists, store.test_accuracy if store else None, ok, seen)
    if store is not None:
        return store
    url = opts.metrics_urls[0].rsplit("/", 1)[0] + "/readyz"
    try:
        ok = http.get(url, timeout=opts.http_timeout_s).status_code == 200
    except requests.RequestException:
        ok = False
    return core.CandidateInfo(exists=ok, test_accuracy=None, available=ok,
                              detail=f"frontend {url} (no --model-base-path: offline accuracy unknown)")
