"""A TCP fault proxy: put it between a service and a server to break the network on purpose.

A ``FaultProxy`` listens on a free loopback port and forwards every connection to its target.
Services take ``host:port`` settings, so a test gives them ``proxy.address`` instead of the
server's, then switches faults at run time, from the test's thread::

    pass_through()          forward both ways, no delay (the start state; heals every fault)
    latency(up, down, jitter)  delay each chunk by ms per direction (order kept)
    drop()                  new connections are reset at once; the open ones go on
    blackhole()             accept, forward nothing, never answer (unlike a refused connection):
                            the open connections freeze too; what was sent is held, not lost,
                            and delivered when the fault heals (TCP over a healed partition)
    half_open(direction)    stop forwarding one direction ("up": client to server,
                            "down": server to client); the other keeps flowing
    reset()                 RST every open connection (both sides); new ones are forwarded

The proxy runs its own asyncio loop in a thread, so it keeps working while the test blocks
(a synchronous driver call, ``time.sleep``) and beside services run as subprocesses. Each
control returns once the loop applied it: nothing is forwarded against the new mode after.

It registers with the harness like a server (``process.register``), so the session's safety net
closes it and reports it when a test forgot; ``close()`` stops the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import HarnessError, register, unregister

T = TypeVar("T")

CHUNK = 64 * 1024
CONTROL_TIMEOUT_S = 5.0


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    BLACKHOLE = "blackhole"
    HALF_OPEN = "half-open"


class Direction(enum.Enum):
    UP = "up"  # client -> target
    DOWN = "down"  # target -> client


@dataclass(frozen=True)
class Latency:
    """Delay per direction in ms; each chunk gets ``± jitter_ms`` at random (never below 0)."""

    up_ms: float = 0.0
    down_ms: float = 0.0
    jitter_ms: float = 0.0

    def delay(self, direction: Direction, rng: random.Random) -> float:
        base = self.up_ms if direction is Direction.UP else self.down_ms
        jitter = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, base + jitter) / 1000.0


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close at once with a TCP RST (SO_LINGER 0), as a crashed host or a firewall would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, the target side once connected."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client, self.target):
            if writer is not None:
                _abort_with_rst(writer)
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A loopback TCP proxy to ``target_host:target_port`` with switchable faults (see module)."""

    def __init__(
        self, target_host: str, target_port: int, *, name: str = "proxy", seed: int | None = None
    ) -> None:
        self.name = name
        self.target = (target_host, target_port)
        self.host = LOOPBACK
        self._mode = Mode.PASS
        self._frozen: set[Direction] = set()
        self._latency = Latency()
        self._rng = random.Random(seed)
        self._links: set[_Link] = set()
        self._accepted = 0
        self._changed: asyncio.Condition | None = None
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"faultproxy-{name}", daemon=True
        )
        self._closed = False
        self._thread.start()
        register(self)
        try:
            self.port = self._call(self._listen)
        except BaseException:
            self.close()
            raise

    # --- what a test reads ---------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` to give a service instead of the target's."""
        return f"{self.host}:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._links)

    @property
    def accepted(self) -> int:
        """Connections accepted since the start (dropped and blackholed ones included)."""
        return self._accepted

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._mode.value
        return (
            f"<FaultProxy {self.name} {self.address} -> {self.target[0]}:{self.target[1]} {state}>"
        )

    # --- controls -----------------------------------------------------------------------

    def pass_through(self) -> None:
        """Heal: forward both ways, no delay; what a blackhole or half-open held is delivered."""
        self._set(Mode.PASS, set(), Latency())

    def latency(self, up_ms: float = 0.0, down_ms: float = 0.0, *, jitter_ms: float = 0.0) -> None:
        self._set(Mode.PASS, set(), Latency(up_ms, down_ms, jitter_ms))

    def drop(self) -> None:
        self._set(Mode.DROP, set(), self._latency)

    def blackhole(self) -> None:
        self._set(Mode.BLACKHOLE, {Direction.UP, Direction.DOWN}, self._latency)

    def half_open(self, direction: Direction | str) -> None:
        """Stop forwarding ``direction`` only (``"up"``: what the client sends never arrives)."""
        self._set(Mode.HALF_OPEN, {Direction(direction)}, self._latency)

    def reset(self) -> None:
        """RST every open connection; new ones are forwarded as before."""
        self._require_open()

        async def reset_all() -> None:
            for link in list(self._links):
                link.reset()
            self._links.clear()

        self._call(reset_all)

    def close(self) -> None:
        """Stop listening, RST every connection, stop the loop and join its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._loop.is_running():
                with contextlib.suppress(Exception):
                    self._call(self._shut_down)
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            if self._thread.is_alive():
                raise HarnessError(f"{self!r}: its thread did not stop")
            self._loop.close()
        finally:
            unregister(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the loop side ------------------------------------------------------------------

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the proxy's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(CONTROL_TIMEOUT_S)

    def _require_open(self) -> None:
        if self._closed:
            raise HarnessError(f"{self!r} is closed")

    def _set(self, mode: Mode, frozen: set[Direction], latency: Latency) -> None:
        self._require_open()

        async def apply() -> None:
            self._mode, self._frozen, self._latency = mode, frozen, latency
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()

        self._call(apply)

    async def _listen(self) -> int:
        self._changed = asyncio.Condition()
        for _ in range(20):
            port = free_port()
            try:
                self._server = await asyncio.start_server(self._serve, LOOPBACK, port)
            except OSError:
                continue  # taken since free_port() looked: another one
            return port
        raise HarnessError(f"proxy {self.name}: no free port to listen on")

    async def _shut_down(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        self._links.clear()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_flowing(self, direction: Direction) -> None:
        """Until ``direction`` may forward (not frozen by a blackhole or half-open)."""
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: direction not in self._frozen)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio's stream callback logs a cancelled handler as an error: end quietly instead
        with contextlib.suppress(asyncio.CancelledError):
            await self._forward(reader, writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        if self._mode is Mode.DROP:
            _abort_with_rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            # a blackholed host never answers the greeting: hold the client until healed
            await self._wait_flowing(Direction.UP)
            try:
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort_with_rst(writer)  # the target refuses: so does the proxy
                return
            link.target = target_writer
            if link not in self._links:  # reset while connecting
                link.reset()
                return
            link.tasks = [
                asyncio.create_task(self._pump(reader, target_writer, Direction.UP, link)),
                asyncio.create_task(self._pump(target_reader, writer, Direction.DOWN, link)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for side in (writer, link.target):
                if side is not None:
                    side.transport.abort()

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: Direction,
        link: _Link,
    ) -> None:
        """Forward one direction: a reader fills a queue of (due time, chunk), a writer empties
        it at the due times, so latency delays each chunk without slowing the stream down."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            due = 0.0
            while True:
                data = await source.read(CHUNK)
                due = max(due, time.monotonic() + self._latency.delay(direction, self._rng))
                await queue.put((due, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._wait_flowing(direction)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.write_eof()  # the half-close goes through, like the data
                    return
                sink.write(data)
                await sink.drain()

        reading = asyncio.create_task(read())
        try:
            await write()
            await reading
        except (OSError, asyncio.IncompleteReadError):
            link.reset()
        finally:
            reading.cancel()
