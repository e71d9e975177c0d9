"""The four ways a Kubernetes client changes an object: merge, JSON, strategic-merge and apply patches.

Pure functions over JSON-shaped data; they never mutate their inputs.
"""

from __future__ import annotations

import copy
from typing import Any

Json = Any


class PatchError(ValueError):
    """A patch that cannot be applied (the API answers 422 Invalid or 400 BadRequest)."""


class PatchTestFailed(PatchError):
    """A JSON-patch `test` operation did not hold (kopf's optimistic-concurrency check)."""


def merge_patch(target: Json, patch: Json) -> Json:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch -------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid list index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"list index {index} out of range")
    return index


def _parent(doc: Json, tokens: list[str]) -> Json:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path /{'/'.join(tokens)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
    return node


def _get(doc: Json, tokens: list[str]) -> Json:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError(f"path /{'/'.join(tokens)} does not exist")


def _remove(doc: Json, tokens: list[str]) -> Json:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"path /{'/'.join(tokens)} does not exist")


def _add(doc: Json, tokens: list[str], value: Json, replace: bool = False) -> Json:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, allow_end=False)] = value
        else:
            parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"path /{'/'.join(tokens)} does not exist")
    return doc


def json_patch(doc: Json, operations: Json) -> Json:
    """Apply an RFC 6902 patch; all operations or none."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            result = _add(result, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(result, tokens)
        elif kind == "replace":
            result = _add(result, tokens, copy.deepcopy(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(result, source) if kind == "move" else copy.deepcopy(_get(result, source))
            result = _add(result, tokens, value)
        elif kind == "test":
            try:
                actual = _get(result, tokens)
            except PatchError as exc:
                raise PatchTestFailed(f"test failed: {exc}") from None
            if actual != op.get("value"):
                raise PatchTestFailed(f"test failed: {op['path']} is {actual!r}, not {op.get('value')!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return result


# --- strategic merge patch (built-in kinds only, as on a real API server) ------------------------

# Lists merged item by item, by this key, the way k8s.io/api's patchMergeKey tags say.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "conditions": "type", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "ownerReferences": "uid", "ports": "containerPort",
}
# Lists of scalars merged as sets (patchStrategy=merge).
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if field == "ports" and any(isinstance(item, dict) and "containerPort" not in item for item in items):
        key = "port"  # Service ports merge by port, container ports by containerPort
    return key


def _merge_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [item for item in copy.deepcopy(patch) if not (isinstance(item, dict) and "$patch" in item)]
    if field in MERGE_PRIMITIVE_LISTS:
        return list(original) + [item for item in patch if item not in original]
    key = _merge_key(field, list(original) + list(patch))
    if key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original)
    for item in patch:
        position = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item.get(key)),
                        None)
        if item.get("$patch") == "delete":
            if position is not None:
                result.pop(position)
        elif position is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[position] = strategic_merge_patch(result[position], item)
    return result


def strategic_merge_patch(original: Json, patch: Json) -> Json:
    """Kubernetes' strategic merge patch for built-in kinds, covering the directives kubectl sends."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field, []) if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, list):
            result[key] = _merge_list(key, [], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


# --- server-side apply (an approximation: one field owner per apply manager, lists atomic) ------

def _drop_unapplied(live: Json, previous: Json, applied: Json) -> Json:
    """Remove what this manager applied last time and no longer applies."""
    if not isinstance(live, dict) or not isinstance(previous, dict):
        return live
    applied = applied if isinstance(applied, dict) else {}
    for key, old in previous.items():
        if key not in live:
            continue
        if key not in applied:
            del live[key]
        elif isinstance(old, dict):
            live[key] = _drop_unapplied(live[key], old, applied[key])
    return live


def _deep_merge(live: Json, applied: Json) -> Json:
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return copy.deepcopy(applied)
    for key, value in applied.items():
        live[key] = _deep_merge(live.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return live


def apply_patch(live: Json, applied: Json, previous: Json | None) -> Json:
    """The object after `applied` is server-side applied by a manager whose last apply was `previous`."""
    result = copy.deepcopy(live) if isinstance(live, dict) else {}
    if previous is not None:
        result = _drop_unapplied(result, copy.deepcopy(previous), applied)
    return _deep_merge(result, applied)
