#!/usr/bin/env bash
# The container engine for `make images` and the image tests: `engine.sh <engine arguments>` runs them with
# docker when its daemon answers, else with podman; CONTAINER_ENGINE=docker|podman decides instead.
# `engine.sh --which` prints the engine's name. With podman, builds and runs get the flags this kind of machine
# needs (PODMAN_FLAGS, PODMAN_ULIMITS: see docs/DEVELOPMENT.md, "Images"); docker gets none.
set -euo pipefail

detect() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then
    case "$CONTAINER_ENGINE" in docker|podman) ;; *)
      echo "error: CONTAINER_ENGINE=$CONTAINER_ENGINE: docker or podman" >&2; exit 2;; esac
    command -v "$CONTAINER_ENGINE" >/dev/null || {
      echo "error: CONTAINER_ENGINE=$CONTAINER_ENGINE but $CONTAINER_ENGINE is not on PATH" >&2; exit 1; }
    echo "$CONTAINER_ENGINE"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null; then
    echo podman
  else
    echo "error: no container engine: install docker (with a running daemon) or podman (as root: make container-engine)" >&2
    exit 1
  fi
}

engine=$(detect)
if [ "${1:-}" = --which ]; then echo "$engine"; exit 0; fi
if [ "$engine" = docker ]; then
  # The Dockerfiles' RUN --mount (wheel cache, CA secret) needs BuildKit: docker before 23.0 builds with its
  # legacy builder unless told; from 23.0 on `docker build` is buildx, and this says nothing more.
  [ "${1:-}" = build ] && export DOCKER_BUILDKIT=1
  exec docker "$@"
fi

# podman: runc where it is installed (crun fails on some cgroup v1 hosts), and ulimits that a process without
# CAP_SYS_RESOURCE may set (podman's own default, nofile=1048576, is refused there).
read -r -a global <<< "${PODMAN_FLAGS-$(command -v runc >/dev/null && echo --runtime runc)}"
read -r -a ulimits <<< "${PODMAN_ULIMITS-"--ulimit nofile=4096:4096 --ulimit nproc=4096:4096"}"
case "${1:-}" in
  # Docker's image format: podman's default (OCI) has no HEALTHCHECK, and drops the frontend's.
  build) shift; exec podman "${global[@]}" build --format docker "${ulimits[@]}" "$@";;
  run|create) cmd=$1; shift; exec podman "${global[@]}" "$cmd" "${ulimits[@]}" "$@";;
  *) exec podman "${global[@]}" "$@";;
esac
