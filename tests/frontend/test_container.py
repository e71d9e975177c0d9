"""services/frontend/Dockerfile and packaging: multi-stage, non-root, healthcheck, and no TensorFlow by default."""

from __future__ import annotations

import re
import tomllib


def test_dockerfile_is_multi_stage_non_root_with_healthcheck(repo_root):
    text = (repo_root / "services" / "frontend" / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    users = re.findall(r"(?m)^USER (\S+)", final)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"(?m)^HEALTHCHECK ", final) and "/healthz" in final
    assert not re.search(r"gcc|g\+\+|build-essential|apt-get install", final)
    assert re.search(r"(?m)^ENTRYPOINT \[\"mnist-frontend\"\]", final)


def test_default_install_has_no_tensorflow(repo_root):
    project = tomllib.loads((repo_root / "services" / "frontend" / "pyproject.toml").read_text())["project"]
    assert not any(dep.lower().startswith(("tensorflow", "keras")) for dep in project["dependencies"])
    assert any(dep.startswith("tensorflow") for dep in project["optional-dependencies"]["embedded"])
    assert project["scripts"] == {"mnist-frontend": "frontend.cli:main", "mnist-client": "frontend.client:main"}
