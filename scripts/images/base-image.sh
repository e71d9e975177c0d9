#!/usr/bin/env bash
# The Python base image for machines without a registry (the image tests, CI): Debian bookworm (minbase) with
# Python 3.11, made with debootstrap from the Debian mirror and imported into the container engine.
#   scripts/images/base-image.sh --name    print the image reference (its tag is a hash of this recipe)
#   scripts/images/base-image.sh           build it unless the engine already holds that reference
# The images build FROM it through their PYTHON_IMAGE build argument. It is rebuilt only when this file changes;
# as root only (debootstrap). Knobs: BASE_ARCH (a Debian architecture, default this machine's: arm64 on an amd64
# machine runs the packages' scripts under qemu-user-static, `make images PLATFORM=linux/arm64`), DEBIAN_MIRROR,
# BASE_IMAGE_REPO, ENGINE (default: scripts/images/engine.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: `python3 -m venv` with pip (the Dockerfiles' build stages); ca-certificates: pip over TLS.
PACKAGES=python3,python3-venv,ca-certificates
REPO=${BASE_IMAGE_REPO:-localhost/mnist-platform/python-base}
ENGINE=${ENGINE:-scripts/images/engine.sh}
host_arch() {
  case "$(uname -m)" in x86_64) echo amd64;; aarch64|arm64) echo arm64;; *) uname -m;; esac
}
ARCH=${BASE_ARCH:-$(host_arch)}
# qemu's name for the architecture: what binfmt_misc registers for running foreign binaries.
case "$ARCH" in
  amd64) qemu_arch=x86_64;; arm64) qemu_arch=aarch64;;
  *) echo "error: BASE_ARCH=$ARCH: amd64 or arm64" >&2; exit 2;;
esac
# The mirror is not part of the recipe: the same packages from another mirror make the same image.
recipe_hash=$(sha256sum "$0" | cut -c1-12)
ref="$REPO:$SUITE-py3.11-$ARCH-$recipe_hash"

if [ "${1:-}" = --name ]; then echo "$ref"; exit 0; fi
if $ENGINE image inspect "$ref" >/dev/null 2>&1; then
  echo "==> base image $ref (cached)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is missing (as root: make container-engine)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root: run as root, or pass PYTHON_IMAGE=<a python:3.11 image>" >&2; exit 1; }
# A foreign architecture's packages run their install scripts through the kernel's binfmt_misc handler for qemu
# (registered with the F flag by Debian's qemu-user-static, so it works inside the build's containers too).
if [ "$ARCH" != "$(host_arch)" ] && ! grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$qemu_arch" 2>/dev/null; then
  echo "error: BASE_ARCH=$ARCH on $(host_arch) needs qemu-$qemu_arch registered in binfmt_misc (as root: apt-get install qemu-user-static)" >&2
  exit 1
fi

started=$(date +%s)
echo "==> base image $ref: debootstrap $SUITE for $ARCH (minbase + $PACKAGES) from $MIRROR, about 2 minutes$(
  [ "$ARCH" = "$(host_arch)" ] || echo ", 10 under qemu")"
root=$(mktemp -d /var/tmp/mnist-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 || {
  tail -n 20 "$root.log" >&2; echo "error: debootstrap failed (full log: $root.log)" >&2; exit 1; }
rm -f "$root.log"
# What no image needs: apt's lists and caches, docs, man pages, translations (33 MB).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
# `python` as in the official image (the Dockerfiles call python3, people call python).
ln -sf python3 "$root/usr/bin/python"
# The image's architecture is recorded, so `build --platform linux/$ARCH` finds it as the base for that platform.
if $ENGINE --version 2>/dev/null | grep -qi podman; then arch_flag=(--arch "$ARCH"); else arch_flag=(--platform "linux/$ARCH"); fi
tar --numeric-owner -C "$root" -c . | $ENGINE import "${arch_flag[@]}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$ref" > "$root.log" 2>&1 || {
  cat "$root.log" >&2; echo "error: $ENGINE import failed" >&2; exit 1; }
rm -f "$root.log"
# Older recipes' images of this architecture go (and, for this machine's, those from before the tag named the
# architecture): nothing builds FROM them any more.
legacy=$([ "$ARCH" = "$(host_arch)" ] && echo "?")
for old in $($ENGINE images --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -vx "$ref" \
             | grep -E ":$SUITE-py3\.11-($ARCH-)$legacy[0-9a-f]{12}\$"); do
  $ENGINE rmi "$old" >/dev/null 2>&1 || true
done
echo "==> base image $ref built in $(( $(date +%s) - started )) s"
