"""JSON merge patch (RFC 7386), the way the API server stores a patched `.status`.

A merge patch cannot store a null: a null value deletes its key. So the status the operator persists must hold no
null anywhere, or what comes back on the next read differs from what was decided (a `plan` with `stableVersion:
null` would never equal itself again). `without_nulls` is that one rule: decide() applies it to the status it reads
and to the status it returns, so "absent" and "null" are the same thing everywhere and a stored status round-trips
through a merge patch unchanged.
"""

from __future__ import annotations

from typing import Any


def without_nulls(value: Any) -> Any:
    """A copy of a JSON value with every null-valued object key removed (at any depth, inside lists too)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (objects recursed into, removed keys nulled); {} when equal."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = diff(before, value)
            if sub:
                patch[key] = sub
        elif key not in old or before != value:
            patch[key] = value
    patch.update({key: None for key in old if key not in new})
    return patch


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch): what the API server stores (a null deletes, objects merge, rest replaces)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out
