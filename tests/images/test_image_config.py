"""What every image promises before it runs: the chart's numeric user, an exec-form Python entrypoint (no shell),
OCI labels naming the commit it was built from, its size, and a pinned default base image."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from .containers import ARCH, CHART_USER, HOST_ARCH, REPO_ROOT, Container, inspect_image

DOCKERFILES = {"trainer": "services/trainer/Dockerfile", "frontend": "services/frontend/Dockerfile",
               "frontend-embedded": "services/frontend/Dockerfile", "operator": "operator/Dockerfile"}
ENTRYPOINTS = {"trainer": "mnist-train", "frontend": "mnist-frontend", "frontend-embedded": "mnist-frontend",
               "operator": "mnist-operator"}
# docs/BENCHMARKS.md ("Images") records the sizes; the thin images must stay under 300 MB.
THIN_LIMIT_BYTES = 300_000_000
OCI = "org.opencontainers.image."


def test_the_chart_runs_every_pod_as_the_user_the_images_are_tested_as() -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / "mnist-platform" / "values.yaml").read_text())
    pod, container = values["podSecurityContext"], values["containerSecurityContext"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == CHART_USER
    assert container["readOnlyRootFilesystem"] is True and container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_runs_as_the_numeric_non_root_user_with_an_exec_form_entrypoint(images, name) -> None:
    config = inspect_image(images[name])["Config"]
    assert config["User"] == CHART_USER
    # Exec form, a console script: nothing between the runtime and Python needs /bin/sh.
    assert config["Entrypoint"] == [ENTRYPOINTS[name]]
    first_line = Container(images[name], entrypoint="python3", args=[
        "-c", f"import shutil; print(open(shutil.which('{ENTRYPOINTS[name]}')).readline().strip())"]).run(120)
    assert first_line.returncode == 0, first_line.stderr
    assert re.fullmatch(r"#!/opt/venv/bin/python3?", first_line.stdout.strip()), first_line.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_carries_oci_labels_with_the_commit_it_was_built_from(images, built_from: str, name) -> None:
    labels = inspect_image(images[name])["Config"]["Labels"]
    assert labels[OCI + "revision"] == built_from
    assert labels[OCI + "title"].startswith("mnist-platform ")
    assert labels[OCI + "description"] and labels[OCI + "source"].startswith("https://")


def test_variants_are_recorded_in_labels(images) -> None:
    assert inspect_image(images["frontend"])["Config"]["Labels"]["dev.mnist-platform.frontend-extras"] == ""
    assert inspect_image(images["frontend-embedded"])["Config"]["Labels"][
        "dev.mnist-platform.frontend-extras"] == "[embedded]"
    assert inspect_image(images["trainer"])["Config"]["Labels"]["dev.mnist-platform.tensorflow-extras"] == ""


@pytest.mark.parametrize("name", ["frontend", "operator"])
def test_thin_image_stays_under_300_mb_without_tensorflow(images, name) -> None:
    assert inspect_image(images[name])["Size"] < THIN_LIMIT_BYTES
    probe = Container(images[name], entrypoint="python3", args=[
        "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None, u.find_spec('pip') is None)"]).run(120)
    assert probe.stdout.split() == ["True", "True"], probe.stderr


@pytest.mark.parametrize("path", sorted(set(DOCKERFILES.values())))
def test_default_base_image_is_the_official_pinned_python(path) -> None:
    """FROM ${PYTHON_IMAGE} (a mirror or the tests' own base can be passed); its default is a fixed official tag."""
    text = (REPO_ROOT / path).read_text()
    assert re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE) == ["python:3.11-slim-bookworm"]
    assert set(re.findall(r"^FROM (\S+)", text, re.MULTILINE)) <= {"${PYTHON_IMAGE}", "deps"}


@pytest.mark.parametrize("path", sorted(set(DOCKERFILES.values())))
def test_only_the_downloading_step_sees_the_ca_bundle_and_only_as_a_build_secret(path) -> None:
    """A TLS-inspecting proxy's CA reaches pip as a build secret (mounted for one step, in no layer or cache key)."""
    text = (REPO_ROOT / path).read_text()
    steps = re.findall(r"^RUN (?:.*\\\n)*.*$", text, re.MULTILINE)
    with_secret = [s for s in steps if "type=secret,id=ca-certificates" in s]
    assert len(with_secret) == 1 and "pip download" in with_secret[0], with_secret
    assert "PIP_CERT=/run/secrets/ca-certificates.crt" in with_secret[0]
    assert "ca-certificates.crt" not in text.replace(with_secret[0], ""), "no other step or layer sees it"


def make_dry_run(*args: str) -> str:
    # Not the variables of a make that runs these tests (make test-images PLATFORM=... passes them in MAKEFLAGS).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PLATFORM")}
    result = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_images_for_arm64_builds_from_an_arm64_base_with_the_ca_secret() -> None:
    out = make_dry_run("images", "PLATFORM=linux/arm64", "LOCAL_BASE=1", "IMAGES=operator",
                       "BUILD_CA_BUNDLE=/etc/hosts")
    build = next(line for line in out.splitlines() if "engine.sh build " in line)
    assert "--platform linux/arm64" in build
    assert re.search(r"--build-arg PYTHON_IMAGE=\S+:bookworm-py3\.11-arm64-[0-9a-f]{12} ", build), build
    assert "--secret id=ca-certificates,src=/etc/hosts" in build
    assert "BASE_ARCH=arm64 scripts/images/base-image.sh" in out, "the base is made for the platform"
    # Cross-building needs qemu's binfmt handler; the engine target installs it where missing.
    assert "qemu-aarch64" in make_dry_run("container-engine", "PLATFORM=linux/arm64")
    assert "qemu" not in make_dry_run("container-engine")


def test_base_image_names_its_architecture_and_refuses_an_unknown_one() -> None:
    script = REPO_ROOT / "scripts" / "images" / "base-image.sh"
    names = {arch: subprocess.run([str(script), "--name"], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "BASE_ARCH": arch}) for arch in ("amd64", "arm64", "s390x")}
    assert names["amd64"].stdout.split(":")[-1].startswith("bookworm-py3.11-amd64-")
    assert names["arm64"].stdout.split(":")[-1].startswith("bookworm-py3.11-arm64-")
    assert names["s390x"].returncode == 2 and names["s390x"].stderr.strip() == "error: BASE_ARCH=s390x: amd64 or arm64"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_is_built_for_the_platform_asked_for(images, name) -> None:
    assert inspect_image(images[name])["Architecture"] == (ARCH or HOST_ARCH)
