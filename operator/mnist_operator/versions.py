"""Facts about model versions: the model store on disk, TF Serving's model status API, ModelVersion objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from mnist_operator.config import GROUP, VERSION
from mnist_operator.observation import CandidateInfo


def store_versions(model_dir: str | Path) -> list[int]:
    """Published integer versions in <base>/<model>/ (hidden .tmp-* dirs and half-written ones ignored)."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir()
                  if p.name.isdigit() and p.is_dir() and (p / "saved_model.pb").is_file())


def unregistered(store_root: str | Path, known_names: set[str]) -> list[tuple[str, int]]:
    """(model, version) published under <root>/<model>/<version>/ with no ModelVersion of that name yet."""
    root = Path(store_root)
    if not root.is_dir():
        return []
    found = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version in store_versions(model_dir):
            if modelversion_name(model_dir.name, version) not in known_names:
                found.append((model_dir.name, version))
    return found


def store_metrics(model_dir: str | Path, version: int) -> dict[str, Any] | None:
    """assets.extra/metrics.json of one version, or None."""
    path = Path(model_dir) / str(version) / "assets.extra" / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def store_candidate_info(model_dir: str | Path, version: int) -> CandidateInfo:
    """Gate facts from the model store alone: exists = saved_model.pb present; available = the same (no TF Serving)."""
    vdir = Path(model_dir) / str(version)
    exists = (vdir / "saved_model.pb").is_file()
    metrics = store_metrics(model_dir, version) if exists else None
    acc = metrics.get("test_accuracy") if metrics else None
    return CandidateInfo(exists=exists, test_accuracy=float(acc) if isinstance(acc, int | float) else None,
                         available=exists, detail=f"model store {vdir}")


def serving_available(rest_url: str, model: str, version: int, timeout_s: float,
                      session: requests.Session | None = None) -> tuple[bool, str]:
    """TF Serving model status API: is this version AVAILABLE? Returns (available, what was seen)."""
    url = f"{rest_url.rstrip('/')}/v1/models/{model}/versions/{version}"
    try:
        resp = (session or requests).get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return False, f"TF Serving {url}: {type(exc).__name__}"
    if resp.status_code == 404:
        return False, f"TF Serving {url}: not loaded"
    try:
        states = [s.get("state") for s in resp.json().get("model_version_status", [])]
    except ValueError:
        return False, f"TF Serving {url}: HTTP {resp.status_code}, not JSON"
    return "AVAILABLE" in states, f"TF Serving {url}: {','.join(map(str, states)) or 'no status'}"


def modelversion_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def modelversion_manifest(model: str, version: int, path: str, metrics: dict[str, Any] | None,
                          namespace: str | None = None) -> dict[str, Any]:
    """The ModelVersion object for a published version (used by the operator's discovery and by the trainer)."""
    m = metrics or {}
    spec: dict[str, Any] = {"model": model, "version": version, "path": path}
    if isinstance(m.get("test_accuracy"), int | float):
        spec["testAccuracy"] = float(m["test_accuracy"])
    for src, dst in (("created", "created"), ("dataset_sha256", "datasetSha256"), ("git_commit", "gitCommit")):
        if isinstance(m.get(src), str):
            spec[dst] = m[src]
    meta: dict[str, Any] = {"name": modelversion_name(model, version),
                            "labels": {"ml.mnist-platform.dev/model": model}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": meta, "spec": spec}
