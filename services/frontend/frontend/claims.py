"""Which feedback has been counted: one claim per (prediction id, index), shared by the workers of one pod.

gunicorn's workers are separate processes, each with its own memory. An SQLite file that all of them open (in
the pod's writable /tmp, next to the metrics files) makes feedback replayed to another worker of the same pod
count nothing. Pods do not share the file: feedback replayed to another pod is counted there too (see
docs/FRONTEND.md, "Feedback across workers and pods").

If the file cannot be used (a full disk, say), a claim falls back to the worker's own memory, and that is
logged. A feedback request never fails on it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

# Rows are written by position, so a file made by the previous release (column `request_id`) is still usable.
SCHEMA = ("CREATE TABLE IF NOT EXISTS claims (prediction TEXT NOT NULL, idx INTEGER NOT NULL, at REAL NOT NULL, "
          "PRIMARY KEY (prediction, idx)) WITHOUT ROWID",
          "CREATE INDEX IF NOT EXISTS claims_by_time ON claims (at)")
CLOCK_SKEW_S = 60.0  # tokens are accepted this long past their TTL (feedback.verify), so claims live as long
TRIM_EVERY = 500  # claims between two trims of expired and surplus rows
BUSY_TIMEOUT_S = 5.0  # how long a claim waits for another writer before it falls back


def _use_wal(db: sqlite3.Connection) -> None:
    """Write-ahead logging, so that writers do not block readers while several processes write.

    The switch takes an exclusive lock, and SQLite does not wait for it (the busy timeout does not apply): when
    several workers or threads open the new file at the same moment, all but one fail at once. So it is retried
    for as long as an ordinary write would wait. The mode is kept in the file: later connections find it set.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class Claims(Protocol):
    """One count per (prediction id, index): True the first time, False for a repeat. The per-worker
    `feedback.AnswerStore` is one; `SharedClaims` is the pod-wide one."""

    def claim(self, prediction: str, index: int) -> bool: ...


class SharedClaims:
    """`claim(prediction, index)`: True the first time any worker using `path` claims it, False after that."""

    def __init__(self, path: str, ttl_s: float, max_entries: int, fallback: Callable[[str, int], bool],
                 clock: Callable[[], float] = time.time, on_error: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self._on_error = on_error  # called for each claim that fell back (the frontend counts it in a metric)
        self._ttl = ttl_s
        self._max = max_entries
        self._fallback = fallback
        self._clock = clock
        self._local = threading.local()  # sqlite3 connections are not shared between threads
        self._lock = threading.Lock()
        self._since_trim = 0
        self._failing = False

    def claim(self, prediction: str, index: int) -> bool:
        try:
            with self._connection() as db:  # one transaction
                claimed = db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?, ?)",
                                     (prediction, index, self._clock())).rowcount == 1
        except sqlite3.Error as error:
            self._log_failure(error)
            self._on_error()
            return self._fallback(prediction, index)
        if self._failing:
            self._failing = False
            log.warning("feedback claims file %s works again", self.path)
        try:  # the claim stands whatever happens here: a failed trim is retried at the next one
            self._trim_now_and_then()
        except sqlite3.Error as error:
            log.warning("trimming feedback claims file %s failed (%s); the next trim tries again", self.path, error)
        return claimed

    def __len__(self) -> int:
        return self._connection().execute("SELECT count(*) FROM claims").fetchone()[0]

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():  # a connection must not cross a fork
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _use_wal(db)
            db.execute("PRAGMA synchronous=OFF")  # a pod's scratch data: losing it in a crash is harmless
            for statement in SCHEMA:
                db.execute(statement)
            db.isolation_level = "DEFERRED"  # `with db:` commits or rolls back
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def _trim_now_and_then(self) -> None:
        """Expired claims can go: their tokens no longer verify. Past `max_entries`, the oldest go (as in the
        per-worker store)."""
        with self._lock:
            self._since_trim += 1
            if self._since_trim < TRIM_EVERY:
                return
            self._since_trim = 0
        with self._connection() as db:
            db.execute("DELETE FROM claims WHERE at < ?", (self._clock() - self._ttl - CLOCK_SKEW_S,))
            db.execute("DELETE FROM claims WHERE at < (SELECT at FROM claims ORDER BY at DESC LIMIT 1 OFFSET ?)",
                       (self._max - 1,))

    def _log_failure(self, error: sqlite3.Error) -> None:
        if not self._failing:
            self._failing = True
            log.warning("feedback claims file %s is unusable (%s): each worker counts feedback on its own "
                        "until it works again", self.path, error)
