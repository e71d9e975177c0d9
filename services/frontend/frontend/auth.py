"""API keys: the hashed key file (pure parsing) and the constant-time check of a presented key."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from frontend.errors import ConfigError, Forbidden, Unauthorized

_LINE = re.compile(r"^sha256:([0-9a-f]{64})(?:\s+(\S.*))?$")


@dataclass(frozen=True)
class ApiKey:
    digest: bytes
    name: str


def hash_key(key: str) -> str:
    """The line to put in the key file for a plain key (without the optional name)."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_key_file(text: bytes | str) -> tuple[ApiKey, ...]:
    """`sha256:<64 lowercase hex> [name]` per line; blank lines and # comments ignored; anything else is an error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("API key file is not UTF-8") from None
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            # Never echo the line: it might be a plain key pasted by mistake.
            raise ConfigError(f"API key file line {number}: expected 'sha256:<64 lowercase hex> [name]'")
        keys.append(ApiKey(digest=bytes.fromhex(match.group(1)), name=(match.group(2) or f"line{number}").strip()))
    if not keys:
        raise ConfigError("API key file holds no key")
    return tuple(keys)


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


def check_key(keys: tuple[ApiKey, ...], presented: str | None) -> ApiKey:
    """The matching key, compared in constant time against every entry; 401 without a key, 403 with a wrong one."""
    if presented is None:
        raise Unauthorized("an API key is required: send X-API-Key or Authorization: Bearer")
    digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found = None
    for key in keys:  # no early exit: the time taken does not tell which entry matched
        if hmac.compare_digest(digest, key.digest):
            found = key
    if found is None:
        raise Forbidden("the API key is not valid")
    return found
