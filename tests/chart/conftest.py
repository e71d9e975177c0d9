"""Fixtures of the chart tests: the real helm binary and the chart rendered once per value set.

The real `helm install` test (test_chart_helm_install.py) uses the `cluster` fixture of tests/conftest.py.
"""

from __future__ import annotations

import pytest
from chartlib import VALUE_SETS, Rendered, helm_binary, render


@pytest.fixture(scope="session")
def helm() -> str:
    found = helm_binary()
    if found is None:
        pytest.fail("helm not found in .tools/bin or on PATH: run `make tools`")
    return found


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, Rendered]:
    """Every value set rendered once per session (CRDs excluded: they come from crds/)."""
    return {value_set: render(helm, value_set) for value_set in VALUE_SETS}
