#!/usr/bin/env bash
# The Python base image for machines without a registry (the image tests, CI): Debian bookworm (minbase) with
# Python 3.11, made with debootstrap from the Debian mirror and imported into the container engine.
#   scripts/images/base-image.sh --name    print the image reference (its tag is a hash of this recipe)
#   scripts/images/base-image.sh           build it unless the engine already holds that reference
# The images build FROM it through their PYTHON_IMAGE build argument. It is rebuilt only when this file changes;
# as root only (debootstrap). Knobs: DEBIAN_MIRROR, BASE_IMAGE_REPO, ENGINE (default: scripts/images/engine.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: `python3 -m venv` with pip (the Dockerfiles' build stages); ca-certificates: pip over TLS.
PACKAGES=python3,python3-venv,ca-certificates
REPO=${BASE_IMAGE_REPO:-localhost/mnist-platform/python-base}
ENGINE=${ENGINE:-scripts/images/engine.sh}
# The mirror is not part of the recipe: the same packages from another mirror make the same image.
recipe_hash=$(sha256sum "$0" | cut -c1-12)
ref="$REPO:$SUITE-py3.11-$recipe_hash"

if [ "${1:-}" = --name ]; then echo "$ref"; exit 0; fi
if $ENGINE image inspect "$ref" >/dev/null 2>&1; then
  echo "==> base image $ref (cached)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is missing (as root: make container-engine)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: debootstrap needs root: run as root, or pass PYTHON_IMAGE=<a python:3.11 image>" >&2; exit 1; }

started=$(date +%s)
echo "==> base image $ref: debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR, about 2 minutes"
root=$(mktemp -d /var/tmp/mnist-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 || {
  tail -n 20 "$root.log" >&2; echo "error: debootstrap failed (full log: $root.log)" >&2; exit 1; }
rm -f "$root.log"
# What no image needs: apt's lists and caches, docs, man pages, translations (33 MB).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
# `python` as in the official image (the Dockerfiles call python3, people call python).
ln -sf python3 "$root/usr/bin/python"
tar --numeric-owner -C "$root" -c . | $ENGINE import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$ref" > "$root.log" 2>&1 || {
  cat "$root.log" >&2; echo "error: $ENGINE import failed" >&2; exit 1; }
rm -f "$root.log"
# Older recipes' images go: nothing builds FROM them any more.
for old in $($ENGINE images --format '{{.Repository}}:{{.Tag}}' "$REPO" | grep -vx "$ref"); do
  $ENGINE rmi "$old" >/dev/null 2>&1 || true
done
echo "==> base image $ref built in $(( $(date +%s) - started )) s"
