"""ModelServerConfig handling, pure: parse the text proto, validate it, decide which versions to serve.

Mirrors tensorflow_model_server: `--model_name/--model_base_path` build a one-model config with the
default version policy (latest 1); `--model_config_file` holds a text ModelServerConfig.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from .errors import ServingError, invalid_argument

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig


def parse_config_text(text: str) -> ModelServerConfig:
    """Parse a text-format ModelServerConfig; INVALID_ARGUMENT on syntax errors."""
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise invalid_argument(f"Failed to parse ModelServerConfig text proto: {exc}") from None
    return config


def read_config_file(path: Path) -> ModelServerConfig:
    """Read and parse a --model_config_file; OSError or ServingError on failure."""
    return parse_config_text(Path(path).read_text(encoding="utf-8"))


def single_model_config(name: str, base_path: str | os.PathLike[str],
                        versions: Iterable[int] | None = None) -> ModelServerConfig:
    """The config --model_name/--model_base_path builds; `versions` adds a specific version policy."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = "tensorflow"
    if versions is not None:
        model.model_version_policy.specific.versions.extend(sorted(int(v) for v in versions))
    return config


def validate(config: ModelServerConfig) -> None:
    """The checks ServerCore::ReloadConfig makes before touching anything (same messages)."""
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest."
            " Only ModelConfigList is currently supported")
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in seen:
            raise invalid_argument(f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not model.base_path.startswith("/") and "://" not in model.base_path:
            raise invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}")
        if model.model_platform not in ("", "tensorflow"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Model {model.name} has unsupported platform {model.model_platform}")


def remap_path(base_path: str, path_map: Mapping[str, os.PathLike[str] | str] | None) -> Path:
    """Map a config base_path (e.g. the cluster's /models/mnist) onto a local directory by longest prefix."""
    if path_map:
        for prefix in sorted(path_map, key=len, reverse=True):
            stripped = prefix.rstrip("/")
            if base_path == stripped or base_path.startswith(stripped + "/"):
                return Path(path_map[prefix]) / base_path[len(stripped):].lstrip("/")
    return Path(base_path)


def parse_version_dir(name: str) -> int | None:
    """The version a child directory stands for, or None (e.g. `.tmp-*`, `latest`)."""
    if not name.isdigit():
        return None
    return int(name)


def versions_on_disk(base_path: Path) -> dict[int, Path]:
    """Integer version directories under a model base path; ServingError if the path is missing."""
    if not base_path.is_dir():
        raise invalid_argument(f"Could not find base path {base_path} for servable")
    found: dict[int, Path] = {}
    for child in base_path.iterdir():
        version = parse_version_dir(child.name)
        if version is not None and child.is_dir():
            found[version] = child
    return found


def aspired_versions(model: ModelConfig, on_disk: Iterable[int]) -> set[int]:
    """Which of the versions present on disk the model's version policy asks to serve."""
    available = sorted(set(on_disk))
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(available)
    if kind == "specific":
        return set(available) & set(policy.specific.versions)
    num_versions = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    return set(available[-num_versions:]) if available else set()


def missing_specific_versions(model: ModelConfig, on_disk: Iterable[int]) -> list[int]:
    """Versions a specific policy names that have no directory (TF Serving warns and skips them)."""
    policy = model.model_version_policy
    if policy.WhichOneof("policy_choice") != "specific":
        return []
    present = set(on_disk)
    return sorted(v for v in policy.specific.versions if v not in present)
