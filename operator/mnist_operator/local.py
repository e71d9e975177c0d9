"""Local mode: drive ONE rollout with the same loop as the operator (loop.tick: gather, decide, apply) against files
and a running frontend's /metrics.

No Kubernetes: the routing config and TF Serving's model config are plain files (written atomically: temp file in
the same directory, then rename), metrics are scraped from the given URLs, and the AVAILABLE gate is TF Serving's
model status API of every replica given with --serving-rest (AVAILABLE when all of them report it), else the model
store (the version dir holds saved_model.pb).
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
from mnist_operator import loop, metrics_source, replicas, versions
from mnist_operator.analysis import Snapshot
from mnist_operator.config import GROUP
from mnist_operator.render import render_model_config, render_routing
from mnist_operator.spec import MAX_VERSION, SpecError, parse_spec, shown

# A ModelRollout manifest is about 1 KiB. The pure-Python YAML parser's worst 64 KiB (2500 %TAG directives) took
# 0.95 s on the 2-core dev machine; 16 KiB keeps every file well under a second.
MAX_ROLLOUT_BYTES = 16 * 1024
# A ModelRollout nests 4 levels (document, spec, section, list); a deeper file is junk, and the composer recurses.
MAX_YAML_DEPTH = 16
# A ModelRollout has about 50 YAML nodes (every scalar, list and mapping counts, in all documents of the file). The
# pure-Python loader spends about 70 us per node: 64 KiB of `[1,1,1,...` took 2.4 s without this bound.
MAX_YAML_NODES = 1000
# routing.json and --status-file are this tool's own output (a status holds per-pod counters): generous, bounded.
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_CHARS = 500
MAX_TICK_S = 1.0  # longest sleep between two decisions without --tick (the kopf shell: MNIST_OPERATOR_MAX_TICK_S)
# Kubernetes object names: a DNS subdomain (253) for the rollout, a DNS label (63) for the namespace.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
NAME_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
NAMESPACE_RE = re.compile(_DNS_LABEL)


class LocalError(Exception):
    """A mistake in the local-mode arguments or files: one line, exit code 2."""

    def __str__(self) -> str:
        # Printed as the one line on stderr: no line breaks, bounded, whatever the input quoted in it.
        text = " ".join(super().__str__().split())
        return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


@dataclass
class LocalOptions:
    rollout: Path
    routing_file: Path
    serving_config: Path
    metrics_urls: list[str]
    model_base_path: Path | None = None
    serving_rest: list[str] | None = None  # TF Serving REST base URLs, one per replica
    tick_s: float | None = None
    timeout_s: float | None = None
    status_file: Path | None = None
    events_file: Path | None = None  # each event as a JSON line, for programs (the demo) rather than people
    http_timeout_s: float = 2.0


# libyaml (bundled with PyYAML's wheels) parses 10-50 times faster than the pure-Python parser, whose scanner is
# also quadratic on some inputs (16 KiB of "[[[[" took 0.4 s): the pure-Python one is only the fallback.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def check_yaml_events(events: Any) -> None:
    """Refuse aliases, nesting deeper than MAX_YAML_DEPTH and more than MAX_YAML_NODES nodes, from the parser's
    events, before anything builds a value (the parser is lazy: it stops reading at the first offending event).

    A ModelRollout needs none of them. A 500-byte alias bomb loads fast (the references are shared), but anything
    that walks the value afterwards (a repr in an error message) meets 9^9 strings: minutes and gigabytes. Deep
    nesting makes a recursive composer hit the interpreter's recursion limit; the node count bounds the time.
    """
    depth = nodes = 0
    for event in events:
        problem = None
        if isinstance(event, yaml.AliasEvent):
            problem = "aliases (*name) are not accepted in a rollout file"
        elif isinstance(event, _NODE_EVENTS):
            nodes += 1
            depth += not isinstance(event, yaml.ScalarEvent)
            if nodes > MAX_YAML_NODES:
                problem = f"more than {MAX_YAML_NODES} YAML nodes"
            elif depth > MAX_YAML_DEPTH:
                problem = f"nested deeper than {MAX_YAML_DEPTH} levels"
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            depth -= 1
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)


def read_bounded(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a file (reading one more to tell a larger file), never the whole of a huge one."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise LocalError(f"{path} is larger than {limit // 1024} KiB: not a file this tool reads")
    return data


def parse_yaml_documents(data: bytes, path: Path) -> list[Any]:
    """Every YAML document of a rollout file, loaded without aliases and with bounded depth."""
    try:
        check_yaml_events(yaml.parse(data, Loader=YAML_LOADER))
        return list(yaml.load_all(data, Loader=YAML_LOADER))  # noqa: S506 - the safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise LocalError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from exc
    except (ValueError, OverflowError, RecursionError) as exc:
        # The constructors raise these on hostile scalars: an integer of more than 4300 digits, 2001-02-30.
        raise LocalError(f"{path} is not valid YAML: {type(exc).__name__}: {clip(str(exc), 200)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's own words, short: the problem and where (its full message repeats the offending lines)."""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return clip(str(problem), 200) + where


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rollout_identity(obj: dict[str, Any], path: Path) -> tuple[str, int]:
    """("namespace/name", generation) from a manifest's metadata, each checked like the API server would."""
    meta = obj.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise LocalError(f"{path}: metadata must be a mapping, not {shown(meta)}")
    name, namespace = meta.get("name", "rollout"), meta.get("namespace", "default")
    if not isinstance(name, str) or len(name) > 253 or not NAME_RE.fullmatch(name):
        raise LocalError(f"{path}: metadata.name {shown(name)} is not a Kubernetes name (lower-case DNS subdomain)")
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise LocalError(f"{path}: metadata.namespace {shown(namespace)} is not a Kubernetes namespace (DNS label)")
    generation = meta.get("generation", 1)
    if isinstance(generation, bool) or not isinstance(generation, int) or not 1 <= generation <= MAX_VERSION:
        raise LocalError(f"{path}: metadata.generation {shown(generation)} is not a positive integer")
    return f"{namespace}/{name}", generation


def load_rollout(path: Path) -> dict[str, Any]:
    """Read one ModelRollout manifest; refuse anything else with one clear, short line (size, YAML, metadata, spec)."""
    docs = [d for d in parse_yaml_documents(read_bounded(path, MAX_ROLLOUT_BYTES), path) if d is not None]
    rollouts = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ModelRollout"]
    if len(rollouts) != 1:
        raise LocalError(f"{path} must hold exactly one ModelRollout (found {len(rollouts)})")
    obj = rollouts[0]
    api_version = obj.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith(GROUP + "/"):
        raise LocalError(f"{path}: apiVersion must be {GROUP}/v1alpha1")
    rollout_identity(obj, path)
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


def append_event(path: Path, stamp: str, event: Any) -> None:
    """One JSON line per event, written with one write() so that a reader taking whole lines never sees half."""
    record = {"time": stamp, "type": event.type, "reason": event.reason, "message": event.message}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, too large, not JSON or not an object."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
        doc = json.loads(data) if len(data) <= MAX_JSON_BYTES else None
    except (OSError, ValueError, RecursionError):  # RecursionError: "[[[[..." deeper than the decoder can go
        return None
    return doc if isinstance(doc, dict) else None


def read_status_file(path: Path) -> dict[str, Any] | None:
    """The status a previous run left (None when there is none yet); anything else there is a LocalError."""
    if not path.exists():
        return None
    data = read_bounded(path, MAX_JSON_BYTES)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise LocalError(f"status file {path} is not JSON: {shown(str(exc))}") from exc
    if not isinstance(doc, dict):
        raise LocalError(f"status file {path} does not hold a JSON object (a status this tool wrote)")
    return doc


def base_path_in_config(path: Path, model: str) -> Path | None:
    """The local base_path of `model` in an existing TF Serving model config file, if it is a directory here."""
    try:
        with path.open("rb") as f:
            text = f.read(MAX_JSON_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    for block in re.split(r"\bconfig\s*\{", text)[1:]:
        name = re.search(r'\bname:\s*"((?:[^"\\]|\\.)*)"', block)
        base = re.search(r'\bbase_path:\s*"((?:[^"\\]|\\.)*)"', block)
        try:
            if name and base and json.loads(f'"{name.group(1)}"') == model:
                candidate = Path(json.loads(f'"{base.group(1)}"'))
                return candidate if candidate.is_dir() else None
        except ValueError:  # an escape JSON does not know (protobuf text has \x..): not a config we wrote
            return None
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
    key, generation = rollout_identity(obj, opts.rollout)
    base_path = str(opts.model_base_path.resolve()) if opts.model_base_path else f"/models/{parsed.model}"
    # One cadence at every stage, not next_delay's faster polls: docs/DEVELOPMENT.md says why.
    tick_s = opts.tick_s if opts.tick_s is not None else core.steady_delay(parsed.interval_s, MAX_TICK_S)
    status: dict[str, Any] | None = read_status_file(opts.status_file) if opts.status_file else None
    status_unchecked = status is not None  # a status from a file is input until decide() has used it once
    http = requests.Session()
    started = clock()
    tty = out.isatty()
    last_progress = ""
    shell = LocalShell(opts, http, clock, base_path)

    def checked_decide(spec_: dict[str, Any], before: dict[str, Any] | None, obs: core.Observation,
                       now_: float) -> core.Decision:
        try:
            return core.decide(spec_, before, obs, now_)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            if not status_unchecked:
                raise
            raise LocalError(f"status file {opts.status_file} is not a status this tool wrote "
                             f"({type(exc).__name__}: {shown(str(exc))}); nothing written") from exc

    while True:
        now = clock()
        d = loop.tick(shell, loop.Rollout(key=key, spec=spec, status=status, generation=generation), now,
                      decide=checked_decide)
        status_unchecked = False
        status = d.status
        for e in d.events:
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            if tty and last_progress:
                out.write("\r\033[K")
            out.write(f"{stamp} {e.type:<7} {e.reason}: {e.message}\n")
            if opts.events_file:
                append_event(opts.events_file, stamp, e)
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


@dataclass
class LocalShell:
    """The local shell's adapter for loop.tick: facts from files, the given URLs and the model store; decisions into
    the two files (atomically) and --status-file."""

    opts: LocalOptions
    http: requests.Session
    clock: Any
    serving_base_path: str

    def other_rollouts(self, model: str) -> list[tuple[str, str, str | None]]:
        return []  # one rollout: nothing to wait for

    def routing(self, model: str) -> dict[str, Any] | None:
        return _read_json(self.opts.routing_file)

    def version_facts(self, model: str, wanted: list[int]) -> dict[int, core.CandidateInfo]:
        return {v: _version_facts(self.opts, model, v, self.http) for v in wanted}

    def metrics(self, model: str) -> Snapshot:
        return metrics_source.scrape_urls({u: u for u in self.opts.metrics_urls}, model, self.opts.http_timeout_s,
                                          self.http, self.clock)

    def base_path(self, model: str) -> str:
        return self.serving_base_path

    def apply(self, before: dict[str, Any], decision: core.Decision) -> None:
        if decision.serving is not None:
            atomic_write(self.opts.serving_config, render_model_config([decision.serving]))
        if decision.routing is not None:
            atomic_write(self.opts.routing_file, render_routing(decision.routing, decision.routing_generation))
        if self.opts.status_file:
            atomic_write(self.opts.status_file, json.dumps(decision.status, indent=1, sort_keys=True) + "\n")


def _version_facts(opts: LocalOptions, model: str, version: int, http: requests.Session) -> core.CandidateInfo:
    """Gate facts about one version: TF Serving's status API on every replica when given; else the model store;
    else (neither) the frontend's /readyz."""
    store = versions.store_candidate_info(opts.model_base_path, version) if opts.model_base_path else None
    if opts.serving_rest:
        ok, seen = replicas.version_on_every_replica(opts.serving_rest, model, version, opts.http_timeout_s, http)
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
