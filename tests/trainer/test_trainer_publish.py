"""Atomic publishing: version numbering, concurrent publishers, killed publishers, stale temp cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainer.publish import (
    PublishError,
    claim_version,
    clean_stale,
    next_free_version,
    published_versions,
    publishing,
    release,
)

PUBLISHER = Path(__file__).with_name("publisher_proc.py")


def start_publisher(base: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PUBLISHER), str(base), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_every_version_complete(base: Path) -> None:
    for version in published_versions(base):
        vdir = base / str(version)
        files = int((vdir / "COMPLETE").read_text())
        assert sorted(p.name for p in vdir.iterdir()) == sorted(["COMPLETE", *(f"part-{i}" for i in range(files))])


def test_next_free_version_is_one_above_the_highest_and_skips_taken():
    assert next_free_version([]) == 1
    assert next_free_version([1, 2, 7]) == 8
    assert next_free_version([1, 2], taken={3, 4}) == 5


def test_published_versions_ignores_temp_dirs_and_non_integers(tmp_path):
    for name in ("1", "10", "2", ".tmp-3", "latest", "4a"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    assert published_versions(tmp_path) == [1, 2, 10]


def test_publish_renames_the_temp_dir_into_the_next_version(tmp_path):
    base = tmp_path / "mnist"
    for expected in (1, 2):
        with publishing(base) as claim:
            assert claim.tmp_dir.name == f".tmp-{expected}"
            (claim.tmp_dir / "saved_model.pb").write_bytes(b"pb")
        assert (base / str(expected) / "saved_model.pb").read_bytes() == b"pb"
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]


def test_error_inside_publishing_publishes_nothing_and_leaves_no_temp(tmp_path):
    with pytest.raises(RuntimeError), publishing(tmp_path) as claim:
        (claim.tmp_dir / "half").write_bytes(b"half")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


def test_explicit_version_that_exists_is_refused(tmp_path):
    (tmp_path / "4").mkdir()
    with pytest.raises(PublishError, match="version 4 already exists"):
        claim_version(tmp_path, 4)


def test_explicit_version_held_by_a_live_publisher_is_refused(tmp_path):
    claim = claim_version(tmp_path, 2)
    try:
        with pytest.raises(PublishError, match="being published by another trainer"):
            claim_version(tmp_path, 2)
        # Without an explicit number the second claimant simply takes the next one.
        other = claim_version(tmp_path)
        assert other.version == 3
        release(other)
    finally:
        release(claim)


def test_unwritable_store_is_refused_clearly(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PublishError, match="not writable"):
            claim_version(tmp_path / "mnist")
    finally:
        tmp_path.chmod(0o700)


def test_store_path_that_is_a_file_is_refused_clearly(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("not a directory")
    with pytest.raises(PublishError, match="not writable"):
        claim_version(blocker / "mnist")


def test_concurrent_publishers_get_distinct_versions_and_never_clobber(tmp_path):
    procs = [start_publisher(tmp_path, "--files", "4", "--delay", "0.02") for _ in range(6)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outputs
    published = sorted(int(out.split()[-1]) for out, _ in outputs)
    # Distinct numbers above nothing else; normally exactly 1..6 (a number may be skipped, never shared).
    assert len(set(published)) == 6 and published[0] == 1
    assert published_versions(tmp_path) == published
    assert_every_version_complete(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_concurrent_publishers_of_one_explicit_version_one_wins_the_other_fails(tmp_path):
    procs = [start_publisher(tmp_path, "--version", "7", "--hold", "0.5") for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 5], results
    loser_err = next(err for code, _, err in results if code == 5)
    assert "version 7" in loser_err and len(loser_err.strip().splitlines()) == 1
    assert published_versions(tmp_path) == [7]
    assert_every_version_complete(tmp_path)


def test_killed_publisher_leaves_no_version_and_its_temp_is_cleaned_by_the_next_run(tmp_path):
    proc = start_publisher(tmp_path, "--files", "200", "--delay", "0.01")
    assert proc.stdout.readline().strip() == "claimed 1"
    time.sleep(0.3)  # mid-write
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert published_versions(tmp_path) == []
    assert (tmp_path / ".tmp-1").is_dir() and any((tmp_path / ".tmp-1").iterdir())
    # The next publisher recognises the dead owner (its flock vanished with it), cleans up and reuses 1.
    with publishing(tmp_path) as claim:
        assert claim.version == 1
        (claim.tmp_dir / "COMPLETE").write_text("0")
    assert published_versions(tmp_path) == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
    assert_every_version_complete(tmp_path)


def test_publishers_killed_at_random_moments_never_leave_a_partial_version(tmp_path):
    # Kill each publisher after a different delay: before, during and after the write.
    for delay in (0.05, 0.15, 0.25, 0.35, 0.5, 0.7):
        proc = start_publisher(tmp_path, "--files", "10", "--delay", "0.03")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert_every_version_complete(tmp_path)
    clean_stale(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []
    assert_every_version_complete(tmp_path)


def test_clean_stale_keeps_a_live_publishers_temp_dir(tmp_path):
    proc = start_publisher(tmp_path, "--hold", "30")
    try:
        assert proc.stdout.readline().strip() == "claimed 1"
        assert clean_stale(tmp_path) == []
        assert (tmp_path / ".tmp-1").is_dir()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert clean_stale(tmp_path) == [".tmp-1", ".tmp-1.lock"]


def test_clean_stale_removes_an_orphan_temp_dir_without_lock(tmp_path):
    (tmp_path / ".tmp-9").mkdir()
    (tmp_path / ".tmp-9" / "variables").mkdir()
    assert clean_stale(tmp_path) == [".tmp-9"]
    assert list(tmp_path.iterdir()) == []
