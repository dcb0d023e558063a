"""The live stream's hub: what ``GET /api/stream`` sends (server-sent events), fed from NATS.

One :class:`LiveHub` per API process holds core subscriptions (not the durable consumers:
every process hears every message) on ``orchestrator.v1.store.changed`` (published by the
process that committed a batch of snapshots, :mod:`orchestrator_api.store.consumer`) and on
the recovery, analysis and audit event subjects, and fans each message out to its
:class:`Listener` s, one per open stream:

* ``changed`` notices are merged and sent at most once per ``coalesce`` seconds
  (``{"Clusters": [...], "Instances": [...]}``): the first at once, the next ones gathered
  until the interval has passed;
* ``recovery`` / ``analysis`` / ``audit`` events are passed on as they came (their JSON);
* a listener holds at most ``capacity`` frames: a client that does not read them (a slow or
  stalled browser) is dropped, its stream ended, instead of slowing the hub or the consumer.
  The browser's ``EventSource`` reconnects (``retry: 1000``) and refetches.

Nothing here awaits while fanning out: a message costs one append per listener.
:meth:`LiveHub.close` ends every stream, so the server's shutdown does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import ValidationError

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.bus import StoreChanged, Subjects
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
COALESCE_SECONDS = 0.1
CLIENT_CAPACITY = 256  # frames a client may have waiting before it is dropped
RETRY_FRAME = b"retry: 1000\n\n"
KEEPALIVE_FRAME = b": keep-alive\n\n"


def sse_frame(event: str, data: str) -> bytes:
    """One server-sent event; a ``data:`` line per line of ``data``."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


class Listener:
    """One open stream: the frames waiting for it, at most ``capacity``."""

    def __init__(self, capacity: int = CLIENT_CAPACITY) -> None:
        self._capacity = capacity
        self._frames: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = False  # closed because it fell behind

    def offer(self, frame: bytes) -> None:
        """Queue ``frame``; never waits. A full listener is dropped instead."""
        if self.closed:
            return
        if len(self._frames) >= self._capacity:
            self.dropped = True
            self.close()
            return
        self._frames.append(frame)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._wake.set()

    async def next(self, wait: float) -> list[bytes] | None:
        """The frames waiting, at most ``wait`` seconds from now (``[]`` when none came);
        None once the listener is closed."""
        if not self._frames and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
        self._wake.clear()
        if self.closed:
            return None
        frames = list(self._frames)
        self._frames.clear()
        return frames


class ChangedNotices:
    """``changed`` notices merged until the next send (pure; the hub times the sends)."""

    def __init__(self) -> None:
        self._clusters: set[str] = set()
        self._instances: set[str] = set()

    def add(self, clusters: Iterable[str], instances: Iterable[str]) -> None:
        self._clusters.update(clusters)
        self._instances.update(instances)

    @property
    def pending(self) -> bool:
        return bool(self._clusters or self._instances)

    def take(self) -> str:
        """The merged notice as the stream's JSON, and start again empty."""
        body = {"Clusters": sorted(self._clusters), "Instances": sorted(self._instances)}
        self._clusters.clear()
        self._instances.clear()
        return json.dumps(body, separators=(",", ":"))


class LiveHub:
    """Core NATS subscriptions fanned out to the open streams of this process."""

    def __init__(
        self,
        subjects: Subjects,
        *,
        coalesce: float = COALESCE_SECONDS,
        capacity: int = CLIENT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subjects = subjects
        self._coalesce = coalesce
        self._capacity = capacity
        self._clock = clock
        self._listeners: set[Listener] = set()
        self._changed = ChangedNotices()
        self._last_changed = float("-inf")
        self._flush: asyncio.TimerHandle | None = None
        self._nc: Client | None = None
        self._subscriptions: list[Subscription] = []
        self._closed = False
        self.dropped = 0  # listeners dropped for falling behind, since start

    async def connect(self, servers: Sequence[str], auth: NatsAuth = ANONYMOUS) -> None:
        self._nc = await connect_nats(servers, name="orchestrator-topology-api-live", auth=auth)
        root = self._subjects.root
        kinds = {
            self._subjects.store_changed: "changed",
            f"{root}.recovery.>": "recovery",
            f"{root}.analysis.>": "analysis",
            f"{root}.audit.>": "audit",
        }
        for subject in self._subjects.live_events:
            self._subscriptions.append(
                await self._nc.subscribe(subject, cb=self._handler(kinds[subject]))
            )

    def _handler(self, kind: str) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            self.receive(kind, msg.data)

        return on_message

    # --- listeners ---------------------------------------------------------------------------
    def listen(self) -> Listener:
        listener = Listener(self._capacity)
        if self._closed:
            listener.close()
        else:
            self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        listener.close()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    # --- messages ----------------------------------------------------------------------------
    def receive(self, kind: str, data: bytes) -> None:
        """One message from the bus (``kind``: changed, recovery, analysis, audit)."""
        if kind == "changed":
            try:
                notice = StoreChanged.model_validate_json(data)
            except ValidationError:
                log.warning("ignoring a malformed store.changed message")
                return
            self._changed.add(notice.clusters, notice.instances)
            self._schedule()
            return
        try:
            text = json.dumps(json.loads(data), separators=(",", ":"))
        except ValueError:
            log.warning("ignoring a malformed %s event on the live stream", kind)
            return
        self.send(sse_frame(kind, text))

    def send(self, frame: bytes) -> None:
        for listener in list(self._listeners):
            listener.offer(frame)
            if listener.dropped:
                self._listeners.discard(listener)
                self.dropped += 1
                log.info("a live-stream client fell behind and was dropped")

    def _schedule(self) -> None:
        if self._flush is not None or self._closed:
            return  # a send is due: it takes this notice too
        wait = self._last_changed + self._coalesce - self._clock()
        loop = asyncio.get_running_loop()
        self._flush = loop.call_later(max(wait, 0.0), self._send_changed)

    def _send_changed(self) -> None:
        self._flush = None
        if not self._changed.pending:
            return
        self._last_changed = self._clock()
        self.send(sse_frame("changed", self._changed.take()))

    async def close(self) -> None:
        """End every stream and leave NATS; idempotent."""
        self.end_streams()
        nc, self._nc = self._nc, None
        subscriptions, self._subscriptions = self._subscriptions, []
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(NatsError, TimeoutError):
            async with asyncio.timeout(5):
                for subscription in subscriptions:
                    await subscription.unsubscribe()
                await nc.close()

    def end_streams(self) -> None:
        """End every open stream now (the server is shutting down); new ones end at once."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for listener in list(self._listeners):
            self.forget(listener)
