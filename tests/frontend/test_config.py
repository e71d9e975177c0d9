"""frontend.config: one table of settings, parsed from the environment with clear errors."""

from __future__ import annotations

import pytest
from frontend.config import ENV_SETTINGS, SETTINGS_BY_KEY, defaults, load_from_env
from frontend.errors import ConfigError

CONTRACT_VARS = {"MNIST_BACKEND", "MNIST_MODEL_NAME", "MNIST_MODEL_BASE_PATH", "MNIST_SERVING_GRPC",
                 "MNIST_SERVING_REST", "MNIST_ROUTING_FILE", "MNIST_API_KEYS_FILE", "MNIST_MAX_BATCH",
                 "MNIST_MAX_BODY_BYTES", "MNIST_BACKEND_TIMEOUT_S", "MNIST_TRUST_PROXY", "MNIST_BIND",
                 "MNIST_WORKERS", "MNIST_THREADS"}


def test_every_contract_variable_is_defined_once():
    names = [s.env for s in ENV_SETTINGS]
    assert set(names) >= CONTRACT_VARS
    assert len(names) == len(set(names)) and len(SETTINGS_BY_KEY) == len(ENV_SETTINGS)


def test_defaults_and_overrides():
    config = load_from_env({"MNIST_BACKEND": "grpc", "MNIST_MAX_BATCH": "8", "MNIST_BACKEND_TIMEOUT_S": "0.5",
                            "MNIST_ACCESS_LOG": "off", "MNIST_ROUTING_FILE": ""})
    assert config["BACKEND"] == "grpc" and config["MAX_BATCH"] == 8 and config["BACKEND_TIMEOUT_S"] == 0.5
    assert config["ACCESS_LOG"] is False and config["ROUTING_FILE"] is None
    assert load_from_env({}) == defaults()
    assert defaults()["MAX_BATCH"] == 64


@pytest.mark.parametrize("env", [{"MNIST_BACKEND": "tpu"}, {"MNIST_MAX_BATCH": "0"}, {"MNIST_MAX_BATCH": "lots"},
                                 {"MNIST_BACKEND_TIMEOUT_S": "-1"}, {"MNIST_ACCESS_LOG": "maybe"}])
def test_bad_values_name_the_variable(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_from_env(env)


def test_every_setting_is_documented(repo_root):
    doc = (repo_root / "docs" / "FRONTEND.md").read_text()
    missing = [s.env for s in ENV_SETTINGS if f"`{s.env}`" not in doc]
    assert not missing, f"docs/FRONTEND.md lacks {missing}"
