#!/usr/bin/env bash
# Builds the pinned control plane into BIN_DIR (default .tools/bin): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from tools/k8s/go.mod, kwok and kwokctl
# with their documented `go install sigs.k8s.io/kwok/cmd/...@VERSION`. Only what is missing or
# was built from other pins is built, one binary at a time (each takes GBs of memory to compile).
#
# Built binaries are also kept in a cache outside the checkout, keyed by a hash of the pins
# (MNIST_TOOLS_CACHE, default ~/.cache/mnist-platform/tools), so a fresh clone on the same
# machine (CI) copies them instead of building again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin_dir=${BIN_DIR:-$repo/.tools/bin}
mkdir -p "$bin_dir"
bin_dir=$(cd "$bin_dir" && pwd)

# shellcheck source=/dev/null
source <(grep -E '^[A-Z0-9_]+=' "$here/versions.env")
pins=$(cat "$here/versions.env" "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)
cache=${MNIST_TOOLS_CACHE:-$HOME/.cache/mnist-platform/tools}/k8s-$K8S_VERSION-$pins
stamp=$bin_dir/.k8s-pins
names=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl)

complete() { local d=$1 n; for n in "${names[@]}"; do [ -x "$d/$n" ] || return 1; done; }

if [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ] && complete "$bin_dir"; then
  exit 0
fi
if complete "$cache"; then
  for n in "${names[@]}"; do cp -f "$cache/$n" "$bin_dir/$n.tmp" && mv -f "$bin_dir/$n.tmp" "$bin_dir/$n"; done
  echo "$pins" > "$stamp"
  echo "==> Kubernetes $K8S_VERSION and kwok $KWOK_VERSION copied into $bin_dir from $cache"
  exit 0
fi

# Go's own installer puts it in /usr/local/go/bin, which a non-login shell may not have on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; fi
if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain is missing: the cluster tests and make sim-up build Kubernetes from Go modules; install Go $(sed -n 's/^go //p' "$here/go.mod") or newer and put go on PATH" >&2
  exit 1
fi
need=$(sed -n 's/^go //p' "$here/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "error: Go $have is too old to build the pinned Kubernetes (tools/k8s/go.mod needs go $need)" >&2
  exit 1
fi

echo "==> building Kubernetes $K8S_VERSION (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) and kwok $KWOK_VERSION into $bin_dir from Go modules: about 8 minutes on 2 cores the first time, under 2 with Go's build cache"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
# What `kube-apiserver --version` and /version report; helm checks the chart's kubeVersion against it.
version_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
version_flags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
version_flags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
version_flags+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
mkdir -p "$cache"
build() {  # name, then the go command that writes "$cache/<name>"
  local name=$1 start; shift
  start=$(date +%s)
  "$@"
  echo "    $name: $(( $(date +%s) - start )) s"
}
export CGO_ENABLED=0
cd "$here"
build etcd go build -trimpath -ldflags=-s -o "$cache/etcd" go.etcd.io/etcd/server/v3
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$cmd" go build -trimpath -ldflags="-s $version_flags" -o "$cache/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
cd /
for cmd in kwok kwokctl; do
  build "$cmd" env GOBIN="$cache" GOFLAGS=-trimpath go install -ldflags=-s "sigs.k8s.io/kwok/cmd/$cmd@$KWOK_VERSION"
done
for n in "${names[@]}"; do cp -f "$cache/$n" "$bin_dir/$n.tmp" && mv -f "$bin_dir/$n.tmp" "$bin_dir/$n"; done
echo "$pins" > "$stamp"
echo "==> Kubernetes $K8S_VERSION and kwok $KWOK_VERSION ready in $bin_dir"
