"""A file that is re-read when it changes (routing.json, the API key file), with the last good value kept.

Cheap enough to call on every request: at most once per `check_interval_s` it stats the file, and only when
(inode, mtime, size) changed does it read and parse. Kubernetes updates a mounted ConfigMap by swapping a
symlink, which changes the inode even when mtime does not; stat() follows the link, so both are seen.
A parse failure keeps the previous value, logs once per change and calls `on_error`.
The value is swapped atomically (one attribute assignment), so readers never see half a config.

With `prepare`, a new value is made ready before anyone sees it: the routing file's `prepare` loads the model
versions it routes to, so no request waits on a model load. At start (the first read) it runs inline; later
changes are prepared on a background thread while readers keep the previous value, and a value is adopted only
if no newer version of the file was read meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from frontend.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


class ReloadingFile(Generic[T]):
    def __init__(self, path: str, parse: Callable[[bytes], T], *, check_interval_s: float = 1.0,
                 on_load: Callable[[T], None] | None = None, on_error: Callable[[str], None] | None = None,
                 prepare: Callable[[T], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._parse = parse
        self._interval = check_interval_s
        self._on_load = on_load
        self._on_error = on_error
        self._prepare = prepare
        self._clock = clock
        self._read_count = 0  # which read of the file a background preparation belongs to
        self.preparing: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.value: T | None = None
        self.last_error: str | None = None
        self.check(force=True)

    def get(self) -> T | None:
        """The current value (None until a good one was read); re-checks the file when the interval passed."""
        if self._clock() >= self._next_check:
            self.check()
        return self.value

    def check(self, force: bool = False) -> None:
        # One thread checks; the others go on with the current value instead of waiting.
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._next_check = self._clock() + self._interval
            try:
                info = os.stat(self.path)
            except OSError as exc:
                self._fail(("missing",), f"cannot read {self.path}: {exc.strerror}")
                return
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if stamp == self._stamp:
                return
            try:
                with open(self.path, "rb") as handle:
                    value = self._parse(handle.read())
            except OSError as exc:
                self._fail(stamp, f"cannot read {self.path}: {exc.strerror}")
                return
            except ConfigError as exc:
                self._fail(stamp, f"{self.path}: {exc.message}")
                return
            self._stamp = stamp
            self.last_error = None
            self._read_count += 1
            if self._prepare is None:
                self._adopt(value)
            elif force:  # the first read (or an explicit one): nobody has a value to go on with meanwhile
                self._run_prepare(value)
                self._adopt(value)
            else:
                self.preparing = threading.Thread(target=self._prepare_then_adopt, args=(value, self._read_count),
                                                  name="prepare-" + os.path.basename(self.path), daemon=True)
                self.preparing.start()
        finally:
            self._lock.release()

    def _run_prepare(self, value: T) -> None:
        try:
            self._prepare(value)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a value that could not be warmed up is still the configured one
            log.exception("preparing %s failed; using it anyway", self.path)

    def _prepare_then_adopt(self, value: T, read: int) -> None:
        self._run_prepare(value)
        with self._lock:
            if read == self._read_count:  # a newer read has its own preparation under way: it wins
                self._adopt(value)

    def _adopt(self, value: T) -> None:
        self.value = value
        if self._on_load is not None:
            self._on_load(value)

    def _fail(self, stamp: tuple, message: str) -> None:
        # Count and log each bad version of the file once, not on every check.
        if stamp == self._stamp:
            return
        self._stamp = stamp  # type: ignore[assignment]
        self.last_error = message
        log.error("%s; keeping the last good version", message)
        if self._on_error is not None:
            self._on_error(message)
