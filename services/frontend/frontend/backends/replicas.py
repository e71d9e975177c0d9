"""Every TF Serving replica behind one name: resolve it again and again, spread calls round-robin, retry elsewhere.

A headless Service's name resolves to one address per ready pod. One long-lived connection to a ClusterIP
Service pins a frontend worker to whichever pod kube-proxy chose when it connected, so the pods that the HPA adds
get nothing. Here each address gets a client of its own (`connect(address)`: a gRPC channel, a REST base URL),
calls go round-robin over them, and the name is resolved again every `resolve_every_s` on a background thread
(sooner, after a call found a replica unreachable), so an added pod gets traffic after at most that long plus
the DNS record's TTL. Clients of addresses that went away are closed once their last call has finished.

A call that fails in a way `retryable` accepts (the transport's UNAVAILABLE) is made once more, on another
replica; the one that failed is passed over for `DOWN_FOR_S`. Nothing else is retried: a deadline that ran out
is spent, and any other answer is the server's own.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from frontend.errors import BackendUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Resolve = Callable[[str, int], Sequence[str]]

# How long a replica that failed a call is passed over: about the gRPC reconnect backoff's cap, so a replica
# that comes back is tried again as soon as a channel would have reconnected to it.
DOWN_FOR_S = 1.0
# After a failure the name is resolved again, but not more often than this (a dead pod leaves DNS within seconds).
EARLY_RESOLVE_AFTER_S = 1.0
DEFAULT_RESOLVE_EVERY_S = 10.0


def parse_grpc_target(target: str) -> tuple[str, int]:
    """'host:port' or gRPC's 'dns:///host:port' -> (host, port); anything else raises ValueError."""
    rest = target
    if rest.startswith("dns:"):
        rest = rest.removeprefix("dns:")
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority:
                raise ValueError("a DNS server in the target (dns://SERVER/...) is not supported; the system "
                                 "resolver is used")
        rest = rest.lstrip("/")
    elif "://" in rest or rest.startswith(("unix:", "ipv4:", "ipv6:")):
        raise ValueError("expected host:port or dns:///host:port")
    return _host_port(rest)


def parse_rest_url(url: str) -> tuple[str, int, str]:
    """'http://host:port[/prefix]' -> (host, port, prefix); anything else raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError("TF Serving's REST API is plain HTTP; expected http://host:port")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("expected http://host:port with no query, fragment or credentials")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("expected http://host:port; there is no host")
    return parts.hostname, port, parts.path.rstrip("/")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def host_for_url(address: str) -> str:
    """An address as it goes before ':port' (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def system_resolve(host: str, port: int) -> list[str]:
    """The name's addresses from the system resolver (in a pod: the cluster DNS, which answers a headless Service's
    name with one address per ready pod). IPv4 if there is any, else IPv6: a dual-stack pod has one of each, and
    one connection per pod is what is wanted."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = [info[4][0] for info in infos if info[0] == socket.AF_INET]
    v6 = [info[4][0] for info in infos if info[0] == socket.AF_INET6]
    return list(dict.fromkeys(v4 or v6))


class _Replica(Generic[T]):
    __slots__ = ("address", "client", "users", "retired", "down_until")

    def __init__(self, address: str, client: T) -> None:
        self.address = address
        self.client = client
        self.users = 0
        self.retired = False
        self.down_until = 0.0


class Replicas(Generic[T]):
    """The replicas behind host:port, one client each, picked round-robin (see the module docstring)."""

    def __init__(self, host: str, port: int, connect: Callable[[str], T], close: Callable[[T], None], *,
                 resolve: Resolve = system_resolve, resolve_every_s: float = DEFAULT_RESOLVE_EVERY_S,
                 on_resolved: Callable[[int], None] | None = None,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.host, self.port = host, port
        self._connect, self._close, self._resolve = connect, close, resolve
        self._resolve_every_s = resolve_every_s
        self._on_resolved = on_resolved or (lambda count: None)
        self._on_retry = on_retry or (lambda outcome: None)
        self._lock = threading.Lock()
        self._replicas: list[_Replica[T]] = []
        self._cursor = 0
        self._resolved_at: float | None = None
        self._next_resolve = 0.0
        self._resolving = False
        self._last_error: str | None = None
        self._closed = False
        self._pid = os.getpid()

    @property
    def name(self) -> str:
        return f"{host_for_url(self.host)}:{self.port}"

    def addresses(self) -> list[str]:
        with self._lock:
            return [replica.address for replica in self._replicas]

    # ---- calls ----------------------------------------------------------------------------------

    def call(self, fn: Callable[[T], R], retryable: Callable[[BaseException], bool] | None = None) -> R:
        """fn(client) on the next replica; when it raises what `retryable` accepts, fn once more on another one."""
        first = self._acquire(exclude=None)
        try:
            return fn(first.client)
        except Exception as error:
            if retryable is None or not retryable(error):
                raise
            self._failed(first)
            second = self._acquire(exclude=first)
            if second is None:
                raise
            return self._retry(fn, retryable, second)
        finally:
            self._release(first)

    def _retry(self, fn: Callable[[T], R], retryable: Callable[[BaseException], bool], replica: _Replica[T]) -> R:
        try:
            result = fn(replica.client)
        except Exception as error:
            if retryable(error):
                self._failed(replica)
            self._on_retry("error")
            raise
        finally:
            self._release(replica)
        self._on_retry("ok")
        return result

    def _acquire(self, exclude: _Replica[T] | None) -> _Replica[T] | None:
        """The next replica round-robin, passing over `exclude` and, while others are up, the ones marked down.
        None only when `exclude` is given and there is no other replica."""
        if self._resolved_at is None:
            self._resolve_now()
        now = time.monotonic()
        with self._lock:
            if now >= self._next_resolve and not self._resolving and not self._closed:
                self._resolving = True
                threading.Thread(target=self._resolve_in_background, name="serving-resolve", daemon=True).start()
            replicas = [r for r in self._replicas if r is not exclude]
            if not replicas:
                if exclude is not None:
                    return None
                raise BackendUnavailable(f"{self.name} resolved to no address")
            up = [r for r in replicas if r.down_until <= now] or replicas
            start = self._cursor
            self._cursor += 1
            chosen = up[start % len(up)]
            chosen.users += 1
            return chosen

    def _release(self, replica: _Replica[T]) -> None:
        with self._lock:
            replica.users -= 1
            close = replica.retired and replica.users == 0
        if close:
            self._close_quietly(replica)

    def _failed(self, replica: _Replica[T]) -> None:
        now = time.monotonic()
        with self._lock:
            replica.down_until = now + DOWN_FOR_S
            if self._resolved_at is not None:
                self._next_resolve = min(self._next_resolve, self._resolved_at + EARLY_RESOLVE_AFTER_S)

    # ---- resolution -----------------------------------------------------------------------------

    def _resolve_now(self) -> None:
        """The first resolution, on the caller's thread: there is nothing to call before it."""
        try:
            addresses = self._lookup()
        except OSError as exc:
            raise BackendUnavailable(f"cannot resolve {self.name}: {exc}") from None
        self._apply(addresses)

    def _resolve_in_background(self) -> None:
        try:
            addresses = self._lookup()
        except OSError as exc:
            # Keep the replicas we know: a DNS hiccup must not take working pods away.
            message = f"cannot resolve {self.name} ({exc}); keeping {len(self.addresses())} known address(es)"
            if message != self._last_error:
                log.warning("%s", message)
            self._last_error = message
            with self._lock:
                self._resolving = False
                self._next_resolve = time.monotonic() + self._resolve_every_s
            return
        self._last_error = None
        self._apply(addresses)

    def _lookup(self) -> list[str]:
        addresses = list(dict.fromkeys(self._resolve(self.host, self.port)))
        if not addresses:
            raise OSError("no address")
        return addresses

    def _apply(self, addresses: list[str]) -> None:
        """Keep the clients of addresses still listed (their connections stay up), add new ones, retire the rest."""
        to_close = []
        with self._lock:
            if self._closed:
                return
            known = {replica.address: replica for replica in self._replicas}
            fresh = [known.get(address) or _Replica(address, self._connect(address)) for address in addresses]
            for replica in self._replicas:
                if replica.address not in addresses:
                    replica.retired = True
                    if replica.users == 0:
                        to_close.append(replica)
            changed = [r.address for r in fresh] != [r.address for r in self._replicas]
            self._replicas = fresh
            self._resolved_at = time.monotonic()
            self._next_resolve = self._resolved_at + self._resolve_every_s
            self._resolving = False
        for replica in to_close:
            self._close_quietly(replica)
        if changed:
            log.info("%s: %d replica(s): %s", self.name, len(addresses), ", ".join(addresses))
        self._on_resolved(len(addresses))

    # ---- lifecycle ------------------------------------------------------------------------------

    def _close_quietly(self, replica: _Replica[T]) -> None:
        try:
            self._close(replica.client)
        except Exception:  # noqa: BLE001 - closing a client that went away must not fail a request
            log.exception("closing the client of %s failed", replica.address)

    def close(self) -> None:
        """Close every client (in the process that made them: a forked child's copies are not its to close)."""
        with self._lock:
            self._closed = True
            replicas, self._replicas = self._replicas, []
        if os.getpid() == self._pid:
            for replica in replicas:
                self._close_quietly(replica)
