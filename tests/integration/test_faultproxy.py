"""The fault proxy of the harness (tests/harness/faultproxy.py) against a real TCP echo server:
each fault does what a network fault does, switched while connections are open."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness.faultproxy import Direction, FaultProxy, Mode
from tests.harness.ports import LOOPBACK
from tests.harness.process import HarnessError, open_servers

pytestmark = pytest.mark.integration


class EchoServer:
    """Echoes every byte back; remembers what it received (to tell which direction froze)."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self._connections.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += data
                conn.sendall(data)

    def stop_listening(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        self.listener.close()

    def close(self) -> None:
        self.stop_listening()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(5)
            assert not thread.is_alive()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(LOOPBACK, echo.port, name="echo", seed=1) as fault_proxy:
        yield fault_proxy
    assert fault_proxy not in open_servers()


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def nothing_arrives(sock: socket.socket, wait: float = 0.5) -> bool:
    sock.settimeout(wait)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def assert_reset(proxy: FaultProxy) -> None:
    """A new connection through ``proxy`` is reset (TCP accepted, then RST, never any data)."""

    def talk() -> None:
        with connect(proxy) as sock:
            sock.sendall(b"x")
            time.sleep(0.1)
            sock.sendall(b"x")
            sock.recv(1)

    with pytest.raises(ConnectionResetError):
        talk()


def test_it_forwards_both_ways_and_counts_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello") == b"hello"
        payload = bytes(range(256)) * 4096  # 1 MiB: many chunks, in order
        assert round_trip(sock, payload) == payload
        assert proxy.open_connections == 1
    assert proxy.accepted == 1 and proxy.mode is Mode.PASS
    assert proxy.address == f"{LOOPBACK}:{proxy.port}"


def test_latency_delays_each_direction_and_keeps_the_order(proxy: FaultProxy) -> None:
    proxy.latency(up_ms=150, down_ms=100, jitter_ms=20)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock, b"slow") == b"slow"
        elapsed = time.monotonic() - started
        assert 0.21 <= elapsed < 1.5, elapsed
        # many small writes with jitter: delayed, never reordered
        for n in range(50):
            sock.sendall(b"%03d" % n)
        expected = b"".join(b"%03d" % n for n in range(50))
        received = b""
        while len(received) < len(expected):
            received += sock.recv(4096)
        assert received == expected
        proxy.pass_through()
        started = time.monotonic()
        assert round_trip(sock, b"fast") == b"fast"
        assert time.monotonic() - started < 0.2


def test_drop_resets_new_connections_and_keeps_the_open_ones(proxy: FaultProxy) -> None:
    with connect(proxy) as open_before:
        assert round_trip(open_before, b"accepted") == b"accepted"  # before the fault
        proxy.drop()
        assert_reset(proxy)
        assert round_trip(open_before, b"still here") == b"still here"
        proxy.pass_through()
        with connect(proxy) as after:
            assert round_trip(after, b"back") == b"back"


def test_blackhole_accepts_answers_nothing_and_delivers_what_it_held_once_healed(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    with connect(proxy) as open_before:
        proxy.blackhole()
        open_before.sendall(b"held")
        with connect(proxy) as new:  # accepted, unlike a refused connection
            new.sendall(b"unanswered")
            assert nothing_arrives(new)
            assert nothing_arrives(open_before)
            assert bytes(echo.received) == b""  # nothing reached the server either
            proxy.pass_through()
            new.settimeout(2)
            open_before.settimeout(2)
            assert new.recv(100) == b"unanswered"
            assert open_before.recv(100) == b"held"


@pytest.mark.parametrize("frozen", [Direction.UP, Direction.DOWN])
def test_half_open_stops_one_direction_only(
    proxy: FaultProxy, echo: EchoServer, frozen: Direction
) -> None:
    with connect(proxy) as sock:
        proxy.half_open(frozen.value)
        sock.sendall(b"one way")
        assert nothing_arrives(sock)  # the echo does not come back either way
        # the server got it only when the client-to-server direction still flows
        assert bytes(echo.received) == (b"" if frozen is Direction.UP else b"one way")
        assert proxy.mode is Mode.HALF_OPEN
        proxy.pass_through()
        sock.settimeout(2)
        assert sock.recv(100) == b"one way"


def test_reset_rsts_the_open_connections_and_forwards_new_ones(proxy: FaultProxy) -> None:
    with connect(proxy) as first, connect(proxy) as second:
        assert round_trip(first, b"a") == b"a" and round_trip(second, b"b") == b"b"
        proxy.reset()
        for sock in (first, second):
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        with connect(proxy) as third:
            assert round_trip(third, b"c") == b"c"


def test_a_refusing_target_is_refused_through_the_proxy(echo: EchoServer) -> None:
    echo.stop_listening()  # nothing listens on the target port any more
    with FaultProxy(LOOPBACK, echo.port, name="refused") as proxy:
        assert_reset(proxy)


def test_close_stops_its_thread_and_its_port_and_refuses_controls(echo: EchoServer) -> None:
    proxy = FaultProxy(LOOPBACK, echo.port, name="closing")
    assert proxy in open_servers()
    sock = connect(proxy)
    try:
        assert round_trip(sock, b"x") == b"x"
        proxy.close()
        proxy.close()  # idempotent
        assert proxy not in open_servers()
        sock.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""  # closed (RST or FIN), nothing more
    finally:
        sock.close()
    assert not any(t.name == "faultproxy-closing" for t in threading.enumerate())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=1)
    with pytest.raises(HarnessError, match="closed"):
        proxy.blackhole()
