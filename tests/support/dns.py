"""A tiny DNS server for tests: one name, many loopback addresses, changed while it runs (a headless Service).

    with DnsServer({"serving.test": ["127.0.0.2", "127.0.0.3"]}) as dns:
        resolve = dns.resolver()                      # (host, port) -> addresses, asked over UDP like a stub resolver
        dns.set("serving.test", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])   # a pod became ready

It answers A queries (RFC 1035 wire format, TTL 0, like a record that must not be cached) and NXDOMAIN for names
it does not know; it binds 127.0.0.1 on a free port and stops with its `with` block. The frontend resolves with
the system resolver, which cannot be pointed at a test's server without root; `resolver()` is the stub the tests
hand to the backends instead, so the answers still travel as DNS over the network.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3


def _encode_name(name: str) -> bytes:
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at `offset` -> (name, offset just past it in the message)."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # a loop of pointers is a malformed message, not a reason to spin
        length = message[offset]
        if length & 0xC0 == 0xC0:
            end = offset + 2 if end is None else end
            offset = struct.unpack_from("!H", message, offset)[0] & 0x3FFF
            continue
        if length == 0:
            return ".".join(labels).lower(), (offset + 1 if end is None else end)
        labels.append(message[offset + 1:offset + 1 + length].decode("ascii"))
        offset += 1 + length
    raise ValueError("DNS name with too many labels or a pointer loop")


class DnsServer:
    """A records for a mapping of names; `set()` changes a name's addresses; `queries` counts what it answered."""

    def __init__(self, records: Mapping[str, Iterable[str]] | None = None) -> None:
        self._records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        for name, addresses in (records or {}).items():
            self.set(name, addresses)
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.address = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def set(self, name: str, addresses: Iterable[str]) -> None:
        checked = [str(ipaddress.IPv4Address(address)) for address in addresses]
        with self._lock:
            self._records[name.rstrip(".").lower()] = checked

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            try:
                self._sock.sendto(self._answer(query), client)
            except (ValueError, IndexError, struct.error):
                continue  # not a query we can parse: a real server would answer FORMERR; a test never sends one

    def _answer(self, query: bytes) -> bytes:
        ident, _flags, qdcount = struct.unpack_from("!HHH", query)
        if qdcount != 1:
            raise ValueError("one question per query")
        name, offset = _read_name(query, 12)
        qtype, qclass = struct.unpack_from("!HH", query, offset)
        question = query[12:offset + 4]
        with self._lock:
            addresses = self._records.get(name)
            self.queries += 1
        if addresses is None:
            return struct.pack("!HHHHHH", ident, 0x8180 | RCODE_NXDOMAIN, 1, 0, 0, 0) + question
        answers = [] if (qtype, qclass) != (TYPE_A, CLASS_IN) else addresses
        records = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 0, 4) + socket.inet_aton(address)
                           for address in answers)
        return struct.pack("!HHHHHH", ident, 0x8180, 1, len(answers), 0, 0) + question + records

    def resolver(self, timeout_s: float = 1.0) -> Callable[[str, int], list[str]]:
        """A stub resolver asking this server (what `socket.getaddrinfo` does with the system's DNS server)."""
        return lambda host, port: query_a(self.address, host, timeout_s)


def query_a(server: tuple[str, int], name: str, timeout_s: float = 1.0) -> list[str]:
    """The A records of `name` from a DNS server over UDP; OSError (as getaddrinfo's gaierror is) if it has none."""
    ident = secrets.randbits(16)
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", TYPE_A,
                                                                                               CLASS_IN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(query, server)
        while True:
            reply, _ = sock.recvfrom(4096)
            if struct.unpack_from("!H", reply)[0] == ident:
                break
    _, flags, qdcount, ancount = struct.unpack_from("!HHHH", reply)
    if flags & 0xF == RCODE_NXDOMAIN:
        raise OSError(f"{name}: NXDOMAIN")
    offset = 12
    for _ in range(qdcount):
        offset = _read_name(reply, offset)[1] + 4
    addresses = []
    for _ in range(ancount):
        offset = _read_name(reply, offset)[1]
        rtype, rclass, _ttl, length = struct.unpack_from("!HHIH", reply, offset)
        offset += 10
        if (rtype, rclass) == (TYPE_A, CLASS_IN) and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset:offset + 4]))
        offset += length
    if not addresses:
        raise OSError(f"{name}: no A record")
    return addresses
