"""Fixtures of the emulator's own tests."""

from tests.support.k8s_emulator.fixtures import k8s_api  # noqa: F401  (a fixture, used by name)
