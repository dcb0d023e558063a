"""Free loopback ports for harness servers.

Ports are drawn at random from 20000-32767, below Linux's default ephemeral range
(32768-60999), so an outgoing connection of some other program cannot take a server's port
while the server is down between ``kill()`` and ``restart()``. A port is handed out at most once
per test session. Another program may still bind a port between the check here and the server's
own ``bind()``; the harness then sees "address already in use" in the server log and starts the
server again on fresh ports (``process.start_with_fresh_ports``).
"""

from __future__ import annotations

import random
import socket
import threading

LOOPBACK = "127.0.0.1"
PORT_RANGE = range(20000, 32768)

_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.Random()


class NoFreePortError(RuntimeError):
    """No free loopback port was found after many tries."""


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` can be bound on ``host`` right now (no listener, no lingering socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def nobody_listens(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``port`` now.

    Unlike :func:`is_port_free` this ignores connections a killed server left in TIME_WAIT (every
    server binds with SO_REUSEADDR, so they do not stop a restart); only a live listener counts.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """One port that is free now and was not handed out before in this process."""
    with _lock:
        for _ in range(200):
            port = _random.choice(PORT_RANGE)
            if port in _handed_out or not is_port_free(port, host):
                continue
            _handed_out.add(port)
            return port
    raise NoFreePortError(f"no free port on {host} in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports."""
    return [free_port(host) for _ in range(count)]
