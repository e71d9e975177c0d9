#!/usr/bin/env bash
# Check what the cluster path needs (docker with a running daemon, kind, kubectl, helm; with GPU set, nvkind) and
# say exactly what is missing and where to get it. Exit 0 when all are there, 1 otherwise (every problem listed).
#   HELM=/path/to/helm [GPU=1 NVKIND=nvkind] k8s/check-tools.sh
set -u
missing=0
need() {  # need NAME COMMAND HINT
  if [ -z "$2" ] || ! command -v "$2" >/dev/null 2>&1; then
    echo "missing: $1 - $3" >&2
    missing=1
    return 1
  fi
  echo "found:   $1 ($(command -v "$2"))"
}
need docker docker "install Docker Engine or Docker Desktop: https://docs.docker.com/engine/install/" &&
  { docker info >/dev/null 2>&1 ||
    { echo "missing: a running docker daemon - 'docker info' fails: start Docker (or add yourself to the docker group)" >&2; missing=1; }; }
need kind kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (e.g. go install sigs.k8s.io/kind@v0.29.0)"
need kubectl kubectl "https://kubernetes.io/docs/tasks/tools/#kubectl"
need helm "${HELM:-helm}" "run 'make tools' (pinned helm in .tools/bin) or https://helm.sh/docs/intro/install/"
if [ -n "${GPU:-}" ]; then
  need nvkind "${NVKIND:-nvkind}" "go install github.com/NVIDIA/nvkind/cmd/nvkind@latest (and the NVIDIA Container Toolkit set up for docker: docs/KIND.md, \"With a GPU\")"
fi
if [ "$missing" -ne 0 ]; then
  echo "install what is missing above, then run the command again" >&2
  exit 1
fi
echo "all tools found"
