"""Port checks done before anything starts, so a busy port is one clear line, not a crashed server."""

from __future__ import annotations

import socket
import time


class PortInUseError(RuntimeError):
    """The port the demo wants to serve on is taken."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port and a server could bind it now.

    The bind test uses SO_REUSEADDR, as gunicorn and gRPC bind: connections of a server stopped a moment ago,
    still in TIME_WAIT, do not make the port busy for them (a plain bind would say it is).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, host: str = "127.0.0.1", what: str = "the demo") -> None:
    """Raise PortInUseError with a message a newcomer can act on."""
    if not port_is_free(port, host):
        raise PortInUseError(
            f"port {port} on {host} is already in use, so {what} cannot start there; "
            f"stop what holds it (`ss -ltnp 'sport = :{port}'` shows it) or pick another port with DEMO_PORT=NNNN"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (for internal servers such as TF Serving's gRPC)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 60.0, alive=None) -> bool:
    """Wait until something accepts connections on host:port; stop early if alive() turns False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False
