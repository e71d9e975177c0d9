"""Atomic publishing of model versions into `<base>/<version>/`.

Protocol (every step is atomic on a POSIX filesystem, so TF Serving, which only
looks at integer-named directories, never sees a half-written version):

1. Claim version N: create `<base>/.tmp-N.lock` and hold an exclusive flock on it
   for the whole run. The kernel drops the lock when the process dies, even on
   kill -9, which is how later runs recognise a dead owner.
2. Write everything into `<base>/.tmp-N/` (same filesystem as the target), fsync
   every file and directory.
3. rename(.tmp-N, N): atomic; fails when N already exists and is non-empty, so two
   publishers can never clobber each other. fsync the base directory.
4. Remove the lock file.

Stale `.tmp-*` directories and lock files (a dead owner's) are removed by the next
claim. A claim skips numbers that are published or held by a live publisher, so
concurrent trainers get distinct versions; an explicit version that is taken fails.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.store import TMP_PREFIX

LOCK_SUFFIX = ".lock"
_TMP_RE = re.compile(r"^\.tmp-(\d+)$")
_LOCK_RE = re.compile(r"^\.tmp-(\d+)\.lock$")
MAX_CLAIM_ATTEMPTS = 1000
LOCK_RETRY_S = 0.05


class PublishError(Exception):
    """The model store cannot be written, or the requested version is taken."""


def published_versions(base: Path) -> list[int]:
    """Integer-named version directories, sorted (what TF Serving would load)."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and p.is_dir())


def next_free_version(published: list[int], taken: set[int] | frozenset[int] = frozenset()) -> int:
    """Pure: the smallest integer above every published version that is not taken."""
    n = (max(published) if published else 0) + 1
    while n in taken:
        n += 1
    return n


def _try_lock(path: Path, create: bool = True) -> int | None:
    """Open and exclusively flock `path`; the fd, or None if a live process holds it (or, with create=False,
    if the file is gone).

    After locking, the path must still name the file we locked: a cleaner may have unlinked it meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return _try_lock(path, create)
    return fd


def clean_stale(base: Path) -> list[str]:
    """Remove temp dirs and lock files whose owner is gone; returns the names removed."""
    removed: list[str] = []
    if not base.is_dir():
        return removed
    for lock in sorted(base.glob(f"{TMP_PREFIX}*{LOCK_SUFFIX}")):
        match = _LOCK_RE.match(lock.name)
        if not match:
            continue
        # No O_CREAT here: a cleaner must never bring back a lock file its owner has just removed.
        fd = _try_lock(lock, create=False)
        if fd is None:
            continue  # a live publisher owns it, or it is gone
        try:
            tmp = base / f"{TMP_PREFIX}{match.group(1)}"
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp.name)
            lock.unlink(missing_ok=True)
            removed.append(lock.name)
        finally:
            os.close(fd)
    for tmp in sorted(base.glob(f"{TMP_PREFIX}*")):
        # A temp dir without its lock file is an orphan: the lock is created before the dir and removed after it.
        if _TMP_RE.match(tmp.name) and tmp.is_dir() and not (base / f"{tmp.name}{LOCK_SUFFIX}").exists():
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
    return removed


@dataclass
class Claim:
    """A held version number and its private temp dir."""

    base: Path
    version: int
    lock_fd: int

    @property
    def tmp_dir(self) -> Path:
        return self.base / f"{TMP_PREFIX}{self.version}"

    @property
    def lock_path(self) -> Path:
        return self.base / f"{TMP_PREFIX}{self.version}{LOCK_SUFFIX}"

    @property
    def final_dir(self) -> Path:
        return self.base / str(self.version)


def ensure_writable(base: Path) -> None:
    """Fail early (before an hour of training) when the store cannot be written."""
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = base / f"{TMP_PREFIX}probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PublishError(f"model store {base} is not writable: {exc.strerror or exc}") from exc


def claim_version(base: Path, version: int | None = None) -> Claim:
    """Hold a version number: the requested one (must be free) or the next free one."""
    ensure_writable(base)
    clean_stale(base)
    # Numbers held by live publishers count as used: versions only ever increase.
    in_progress = [int(m.group(1)) for p in base.iterdir() if (m := _LOCK_RE.match(p.name))]
    candidate = version if version is not None else next_free_version(published_versions(base) + in_progress)
    for _ in range(MAX_CLAIM_ATTEMPTS):
        if (base / str(candidate)).exists():
            if version is not None:
                raise PublishError(f"version {version} already exists in {base}")
            candidate += 1
            continue
        lock_path = base / f"{TMP_PREFIX}{candidate}{LOCK_SUFFIX}"
        try:
            fd = _try_lock(lock_path)
            if fd is None:
                # Another run's clean_stale may hold a fresh lock file for a moment while it checks it;
                # a real owner holds it for minutes. Look again before giving the number up.
                time.sleep(LOCK_RETRY_S)
                fd = _try_lock(lock_path)
        except OSError as exc:
            raise PublishError(f"cannot create {lock_path}: {exc.strerror or exc}") from exc
        if fd is None:
            if version is not None:
                raise PublishError(f"version {version} is being published by another trainer in {base}")
            candidate += 1
            continue
        claim = Claim(base, candidate, fd)
        if (base / str(candidate)).exists():  # published between our check and our lock
            release(claim)
            if version is not None:
                raise PublishError(f"version {version} already exists in {base}")
            candidate += 1
            continue
        # Leftovers of a dead owner of this number are ours to clear now that we hold its lock.
        shutil.rmtree(claim.tmp_dir, ignore_errors=True)
        claim.tmp_dir.mkdir()
        return claim
    raise PublishError(f"could not claim a version in {base} after {MAX_CLAIM_ATTEMPTS} attempts")


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up, so the rename publishes durable bytes."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(claim: Claim) -> Path:
    """fsync the temp dir and rename it to the version dir; the one atomic step that publishes."""
    try:
        fsync_tree(claim.tmp_dir)
        os.rename(claim.tmp_dir, claim.final_dir)
        _fsync_dir(claim.base)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise PublishError(f"version {claim.version} appeared in {claim.base} while we wrote it") from exc
        raise PublishError(f"cannot publish into {claim.base}: {exc.strerror or exc}") from exc
    finally:
        release(claim)
    return claim.final_dir


def release(claim: Claim) -> None:
    """Drop the claim: remove an unpublished temp dir, the lock file, and the lock."""
    if claim.lock_fd < 0:
        return
    shutil.rmtree(claim.tmp_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        claim.lock_path.unlink()
    os.close(claim.lock_fd)
    claim.lock_fd = -1


@contextlib.contextmanager
def publishing(base: Path, version: int | None = None) -> Iterator[Claim]:
    """Claim a version, let the caller fill claim.tmp_dir, then commit; on any error nothing is published."""
    claim = claim_version(base, version)
    try:
        yield claim
    except BaseException:
        release(claim)
        raise
    commit(claim)
