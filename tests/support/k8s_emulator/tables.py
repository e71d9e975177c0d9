"""Server-side printing (`Accept: ...;as=Table`): what `kubectl get` shows, from a CRD's printer columns."""

from __future__ import annotations

import datetime
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import ServedResource

_FILTER_RE = re.compile(r"^\?\(@\.(?P<key>[\w.-]+)\s*==\s*[\"'](?P<value>[^\"']*)[\"']\)$")


def _tokens(path: str) -> list[str]:
    """Split a simple JSONPath (`.a.b[0].c[?(@.type=="Ready")].status`) into steps."""
    steps: list[str] = []
    for match in re.finditer(r"\.([\w-]+)|\[([^\]]*)\]", path.strip().lstrip("{").rstrip("}")):
        steps.append(match.group(1) if match.group(1) is not None else "[" + match.group(2) + "]")
    return steps


def evaluate(obj: Any, path: str) -> Any:
    """The value at a printer-column JSONPath, or None when any step is missing."""
    node = obj
    for step in _tokens(path):
        if step.startswith("["):
            inner = step[1:-1]
            if isinstance(node, list) and inner.lstrip("-").isdigit():
                index = int(inner)
                node = node[index] if -len(node) <= index < len(node) else None
            elif isinstance(node, list) and (match := _FILTER_RE.match(inner)):
                node = next((item for item in node if isinstance(item, dict)
                             and str(evaluate(item, "." + match["key"])) == match["value"]), None)
            else:
                return None
        else:
            node = node.get(step) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def human_age(timestamp: str | None) -> str:
    """Kubernetes' short duration format (`5s`, `3m`, `2h`, `4d`), as the server prints dates."""
    if not timestamp:
        return "<unknown>"
    created = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((datetime.datetime.now(tz=datetime.UTC) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "date":
        return human_age(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def table(served: ServedResource, items: list[dict[str, Any]], resource_version: int) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table: Name, the CRD's printer columns (or Age), one row per object."""
    columns = list(served.printer_columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": c.get("priority", 0)} for c in columns]
    rows = [{"cells": [item["metadata"]["name"]] + [_cell(evaluate(item, c["jsonPath"]), c.get("type", "string"))
                                                    for c in columns],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"]}}
            for item in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(resource_version)}, "columnDefinitions": definitions, "rows": rows}
