"""frontend.claims: feedback counted once per pod, whichever worker (process) or thread receives it; expiry, the
size bound, and the fall-back to the worker's own memory when the file cannot be used."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

from frontend import claims as claims_module
from frontend.claims import SharedClaims


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def no_fallback(request_id: str, index: int) -> bool:
    raise AssertionError("the shared file should have answered")


def test_two_workers_on_one_file_count_each_feedback_once(tmp_path):
    path = str(tmp_path / "claims.sqlite")
    first = SharedClaims(path, ttl_s=60, max_entries=100, fallback=no_fallback)
    second = SharedClaims(path, ttl_s=60, max_entries=100, fallback=no_fallback)
    assert first.claim("r1", 0) is True
    assert second.claim("r1", 0) is False and first.claim("r1", 0) is False
    assert second.claim("r1", 1) is True and second.claim("r2", 0) is True
    assert len(first) == 3


def test_threads_of_one_worker_claim_each_key_once(tmp_path):
    shared = SharedClaims(str(tmp_path / "claims.sqlite"), ttl_s=60, max_entries=1000, fallback=no_fallback)
    keys = [(f"r{i % 50}", 0) for i in range(400)]  # each key 8 times
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda key: shared.claim(*key), keys))
    assert sum(results) == 50


def test_threads_opening_a_new_file_at_the_same_moment_all_use_it(tmp_path):
    # The switch to write-ahead logging does not wait for a lock: without a retry, some of the threads that
    # open a fresh file together fell back to memory (2-3 in 60 rounds here), which CI once hit.
    fell_back = []
    for round_ in range(60):
        shared = SharedClaims(str(tmp_path / f"claims-{round_}.sqlite"), ttl_s=60, max_entries=100,
                              fallback=lambda request_id, index: fell_back.append(request_id) or True)
        together = threading.Barrier(16)

        def claim(key: int, shared=shared, together=together) -> bool:
            together.wait()
            return shared.claim(f"r{key % 4}", 0)

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert sum(pool.map(claim, range(16))) == 4
    assert fell_back == []


def _claim_all(path: str, count: int, out) -> None:
    shared = SharedClaims(path, ttl_s=60, max_entries=10_000, fallback=no_fallback)
    out.put(sum(shared.claim(f"request-{i}", 0) for i in range(count)))


def test_worker_processes_racing_on_the_same_feedback_count_it_once(tmp_path):
    path = str(tmp_path / "claims.sqlite")
    context = multiprocessing.get_context("spawn")  # as separate as gunicorn's workers
    out = context.Queue()
    workers = [context.Process(target=_claim_all, args=(path, 200, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    counted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert sum(counted) == 200 and all(worker.exitcode == 0 for worker in workers)


def test_expired_and_surplus_claims_are_trimmed(tmp_path, monkeypatch):
    monkeypatch.setattr(claims_module, "TRIM_EVERY", 5)
    clock = Clock()
    shared = SharedClaims(str(tmp_path / "claims.sqlite"), ttl_s=100, max_entries=3, fallback=no_fallback,
                          clock=clock)
    for i in range(4):
        clock.now += 1
        shared.claim(f"old-{i}", 0)
    clock.now += 100 + claims_module.CLOCK_SKEW_S + 10  # the four are past the token lifetime
    shared.claim("new-0", 0)  # the fifth claim trims: the expired ones go
    assert len(shared) == 1
    for i in range(1, 6):
        clock.now += 1
        shared.claim(f"new-{i}", 0)  # the fifth of these trims again: of six, the newest three stay
    assert len(shared) == 3
    assert shared.claim("new-5", 0) is False and shared.claim("new-3", 0) is False
    assert shared.claim("new-0", 0) is True  # the oldest went


def test_an_unusable_file_falls_back_to_the_workers_memory_and_logs_once(tmp_path, caplog):
    answered = []

    def fallback(request_id: str, index: int) -> bool:
        answered.append((request_id, index))
        return True

    errors = []
    shared = SharedClaims(str(tmp_path / "absent-dir" / "claims.sqlite"), ttl_s=60, max_entries=10,
                          fallback=fallback, on_error=lambda: errors.append(1))
    with caplog.at_level(logging.WARNING, logger="frontend.claims"):
        assert shared.claim("r1", 0) is True and shared.claim("r2", 3) is True
    assert answered == [("r1", 0), ("r2", 3)] and len(errors) == 2  # each fall-back is reported (a metric)
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1
    (tmp_path / "absent-dir").mkdir()
    with caplog.at_level(logging.WARNING, logger="frontend.claims"):
        assert shared.claim("r1", 0) is True and shared.claim("r1", 0) is False  # the file works again
    assert len(errors) == 2
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_failed_trim_keeps_the_claim_it_followed(tmp_path, monkeypatch):
    monkeypatch.setattr(claims_module, "TRIM_EVERY", 1)  # every claim trims
    shared = SharedClaims(str(tmp_path / "claims.sqlite"), ttl_s=60, max_entries=10, fallback=no_fallback)
    assert shared.claim("r1", 0) is True

    def broken_trim() -> None:
        raise claims_module.sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(shared, "_trim_now_and_then", broken_trim)
    assert shared.claim("r1", 0) is False  # the repeat is still refused (no fall-back to the worker's memory)
    assert shared.claim("r2", 0) is True
