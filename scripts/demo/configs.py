"""The two files the operator drives: routing.json (read by the frontend) and the TF Serving model config.

The demo writes their starting state (everything on the stable version) before anything starts;
after that only the operator writes them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .progress import Route


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def single_routing(model: str, version: int, generation: int = 1) -> dict[str, Any]:
    """Routing config (as frontend.routing.parse_routing reads it) sending all traffic to one version."""
    return {
        "model": model,
        "strategy": "single",
        "routes": [{"version": version, "label": "stable", "weight": 100}],
        "sticky_header": None,
        "shadow": None,
        "rollout": None,
        "generation": generation,
    }


def serving_config(model: str, base_path: Path, versions: list[int], labels: dict[str, int]) -> str:
    """TF Serving ModelServerConfig text protobuf for one model with specific versions and labels."""
    lines = [
        "model_config_list {",
        "  config {",
        f'    name: "{model}"',
        f'    base_path: "{base_path}"',
        '    model_platform: "tensorflow"',
        "    model_version_policy {",
        "      specific {",
        *[f"        versions: {v}" for v in versions],
        "      }",
        "    }",
        *[f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()],
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_initial_state(routing_path: Path, serving_path: Path, model: str, base_path: Path, stable: int) -> None:
    """Everything on `stable`: the state a rollout starts from.

    The serving config loads `stable` but labels nothing yet: TF Serving refuses, at start, a label for a version
    it has not loaded (load first, label second); the frontend routes by exact version and needs no label.
    """
    atomic_write(routing_path, json.dumps(single_routing(model, stable), indent=2) + "\n")
    atomic_write(serving_path, serving_config(model, base_path, [stable], {}))


def read_routes(routing_path: Path) -> list[Route]:
    """The routes of the routing file now; [] while it is missing or being replaced."""
    try:
        doc = json.loads(routing_path.read_text())
    except (OSError, ValueError):
        return []
    return [Route(int(r["version"]), str(r.get("label", "")), int(r["weight"])) for r in doc.get("routes", [])]
