"""What an API server does with a CRD's structural schema: prune unknown fields, default, validate.

CEL rules (x-kubernetes-validations) are not evaluated; everything else a structural
openAPIV3Schema says (types, enums, ranges, patterns, required, nullable, int-or-string) is.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema

_IGNORED_KEYS = {"x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                 "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
                 "x-kubernetes-validations", "default", "example", "externalDocs", "format"}


def _keeps_unknown(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune_and_default(value: Any, schema: dict[str, Any] | None) -> Any:
    """Drop fields the schema does not declare and fill in declared defaults, recursively."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = _keeps_unknown(schema) or additional is True
        result: dict[str, Any] = {}
        for key, item in value.items():
            if key in properties:
                result[key] = prune_and_default(item, properties[key])
            elif isinstance(additional, dict):
                result[key] = prune_and_default(item, additional)
            elif keep_unknown:
                result[key] = item
        for key, sub in properties.items():
            if key not in result and isinstance(sub, dict) and "default" in sub:
                result[key] = prune_and_default(copy.deepcopy(sub["default"]), sub)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(item, schema["items"]) for item in value]
    return value


def _to_json_schema(schema: Any) -> Any:
    """Translate the OpenAPI v3 dialect of CRDs into draft-4 JSON Schema."""
    if isinstance(schema, list):
        return [_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _IGNORED_KEYS or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            result[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        else:
            result[key] = _to_json_schema(value)
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result = {"anyOf": [{"type": "integer"}, {"type": "string"}], **result}
    if schema.get("nullable") and "type" in result:
        types = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = [*types, "null"]
        if "enum" in result:
            result["enum"] = [*result["enum"], None]
    return result


def _path(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".")


def _message(error: jsonschema.ValidationError) -> tuple[str, str]:
    path = _path(error)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{path}.{missing}" if path else missing
        return field, "Required value"
    if error.validator == "enum":
        supported = ", ".join(json.dumps(v) for v in error.validator_value)
        return path, f"Unsupported value: {json.dumps(error.instance)}: supported values: {supported}"
    if error.validator == "type":
        return path, (f"Invalid value: {json.dumps(error.instance)}: {path} in body must be of type "
                      f"{error.validator_value}")
    return path, f"Invalid value: {json.dumps(error.instance)}: {error.message}"


def validate(obj: dict[str, Any], schema: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Return (field, message without the field) for each violation; metadata is the server's business, not the schema's."""
    if not isinstance(schema, dict):
        return []
    body = {key: value for key, value in obj.items() if key != "metadata"}
    translated = _to_json_schema(schema)
    translated.get("properties", {}).pop("metadata", None)
    if "required" in translated:
        translated["required"] = [name for name in translated["required"] if name != "metadata"]
    validator = jsonschema.Draft4Validator(translated)
    errors = sorted(validator.iter_errors(body), key=lambda e: (list(e.absolute_path), e.message))
    return [_message(error) for error in errors]
