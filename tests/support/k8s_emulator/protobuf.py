"""Decode the Kubernetes protobuf envelope for the few kinds client-go sends that way.

client-go's typed clients (helm's release storage among them) send Secrets, ConfigMaps and
DeleteOptions as `application/vnd.kubernetes.protobuf`. The emulator stores JSON-shaped dicts,
so it turns those bodies back into dicts. Field numbers come from k8s.io/api/core/v1/generated.proto
and k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

MAGIC = b"k8s\x00"

Fields = dict[int, list[Any]]


class ProtobufDecodeError(ValueError):
    """The body is not a protobuf message the emulator understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufDecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def parse_fields(buf: bytes) -> Fields:
    """Split one message into {field number: [raw values]} (ints for varints, bytes otherwise)."""
    fields: Fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ProtobufDecodeError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _str(fields: Fields, number: int) -> str | None:
    values = fields.get(number)
    return values[-1].decode("utf-8") if values else None


def _int(fields: Fields, number: int) -> int | None:
    values = fields.get(number)
    if not values:
        return None
    value = values[-1]
    return value - (1 << 64) if value >= 1 << 63 else value  # int64 two's complement


def _bool(fields: Fields, number: int) -> bool | None:
    value = _int(fields, number)
    return None if value is None else bool(value)


def _map(fields: Fields, number: int, value_as_bytes: bool = False) -> dict[str, Any] | None:
    if number not in fields:
        return None
    result: dict[str, Any] = {}
    for entry in fields[number]:
        kv = parse_fields(entry)
        key = (kv.get(1) or [b""])[-1].decode("utf-8")
        raw = (kv.get(2) or [b""])[-1]
        result[key] = base64.b64encode(raw).decode("ascii") if value_as_bytes else raw.decode("utf-8")
    return result


def _time(fields: Fields, number: int) -> str | None:
    values = fields.get(number)
    if not values:
        return None
    seconds = _int(parse_fields(values[-1]), 1) or 0
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prune(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if value is not None}


def _owner_reference(buf: bytes) -> dict[str, Any]:
    f = parse_fields(buf)
    return _prune({"kind": _str(f, 1), "name": _str(f, 3), "uid": _str(f, 4), "apiVersion": _str(f, 5),
                   "controller": _bool(f, 6), "blockOwnerDeletion": _bool(f, 7)})


def _object_meta(buf: bytes) -> dict[str, Any]:
    f = parse_fields(buf)
    return _prune({
        "name": _str(f, 1), "generateName": _str(f, 2), "namespace": _str(f, 3), "uid": _str(f, 5),
        "resourceVersion": _str(f, 6), "generation": _int(f, 7), "creationTimestamp": _time(f, 8),
        "deletionTimestamp": _time(f, 9), "deletionGracePeriodSeconds": _int(f, 10),
        "labels": _map(f, 11), "annotations": _map(f, 12),
        "ownerReferences": [_owner_reference(b) for b in f[13]] if 13 in f else None,
        "finalizers": [b.decode("utf-8") for b in f[14]] if 14 in f else None,
    })


def _secret(f: Fields) -> dict[str, Any]:
    return _prune({"metadata": _object_meta(f[1][-1]) if 1 in f else {}, "data": _map(f, 2, value_as_bytes=True),
                   "type": _str(f, 3), "stringData": _map(f, 4), "immutable": _bool(f, 5)})


def _config_map(f: Fields) -> dict[str, Any]:
    return _prune({"metadata": _object_meta(f[1][-1]) if 1 in f else {}, "data": _map(f, 2),
                   "binaryData": _map(f, 3, value_as_bytes=True), "immutable": _bool(f, 4)})


def _delete_options(f: Fields) -> dict[str, Any]:
    preconditions = parse_fields(f[2][-1]) if 2 in f else None
    return _prune({
        "gracePeriodSeconds": _int(f, 1),
        "preconditions": _prune({"uid": _str(preconditions, 1), "resourceVersion": _str(preconditions, 2)})
        if preconditions is not None else None,
        "orphanDependents": _bool(f, 3), "propagationPolicy": _str(f, 4),
        "dryRun": [b.decode("utf-8") for b in f[5]] if 5 in f else None,
    })


DECODERS: dict[str, Callable[[Fields], dict[str, Any]]] = {
    "Secret": _secret,
    "ConfigMap": _config_map,
    "DeleteOptions": _delete_options,
}


def decode(body: bytes) -> dict[str, Any]:
    """Decode one enveloped object into the dict its JSON form would give."""
    if not body.startswith(MAGIC):
        raise ProtobufDecodeError("missing the k8s protobuf magic prefix")
    envelope = parse_fields(body[len(MAGIC):])
    type_meta = parse_fields(envelope[1][-1]) if 1 in envelope else {}
    api_version, kind = _str(type_meta, 1) or "", _str(type_meta, 2) or ""
    if kind not in DECODERS:
        raise ProtobufDecodeError(f"protobuf bodies of kind {kind!r} are not supported; send JSON")
    obj = DECODERS[kind](parse_fields((envelope.get(2) or [b""])[-1]))
    return {"apiVersion": api_version, "kind": kind, **obj}
