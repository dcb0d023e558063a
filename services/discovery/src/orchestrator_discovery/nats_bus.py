"""Discovery's side of the bus: JetStream streams, publishing, and the request subjects.

nats-py errors are translated into :class:`BusError` here. The connection reconnects forever;
after a reconnect the streams are ensured again (a restarted server may have lost them) and the
service is told, so it can republish the latest snapshot of every instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.bus import (
    DISCOVERY_QUEUE_GROUP,
    SNAPSHOTS_STREAM,
    DiscoveryFailure,
    DiscoveryReply,
    Subjects,
    UnreachableEvent,
)
from orchestrator_shared.errors import BusError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.streams import (
    DEFAULT_EVENTS_MAX_BYTES,
    events_stream_config,
    snapshots_stream_config,
)

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 2.0
DEFAULT_REQUEST_CONCURRENCY = 32  # discovery requests answered at once

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class NatsBus:
    """A connected NATS client with the streams discovery publishes to."""

    def __init__(
        self,
        subjects: Subjects,
        *,
        events_retention_days: int,
        events_max_bytes: int = DEFAULT_EVENTS_MAX_BYTES,
        stream_replicas: int = 1,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.subjects = subjects
        self._retention_days = events_retention_days
        self._events_max_bytes = events_max_bytes
        self._stream_replicas = stream_replicas
        self._on_reconnect = on_reconnect
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: list[Subscription] = []
        self._requests: set[asyncio.Task[None]] = set()

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self, servers: list[str], *, name: str, auth: NatsAuth = ANONYMOUS) -> None:
        async def reconnected() -> None:
            try:
                await self.ensure_streams()
            except BusError as exc:
                log.warning("after reconnect: %s", exc)
            if self._on_reconnect is not None:
                await self._on_reconnect()

        self._nc = await connect_nats(servers, name=name, on_reconnect=reconnected, auth=auth)
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
        await self.ensure_streams()

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise BusError("not connected to NATS")
        return self._js

    async def ensure_streams(self) -> None:
        js = self._jetstream()
        wanted = [
            snapshots_stream_config(self.subjects, replicas=self._stream_replicas),
            events_stream_config(
                self.subjects,
                retention_days=self._retention_days,
                max_bytes=self._events_max_bytes,
                replicas=self._stream_replicas,
            ),
        ]
        for config in wanted:
            try:
                try:
                    await js.stream_info(str(config.name))
                    await js.update_stream(config)
                except NotFoundError:
                    await js.add_stream(config)
            except (NatsError, JetStreamError) as exc:
                raise BusError(f"cannot set up stream {config.name}: {exc}") from None

    async def _publish(self, subject: str, payload: bytes) -> None:
        js = self._jetstream()
        try:
            await js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_SECONDS)
        except (TimeoutError, NatsError, JetStreamError) as exc:
            raise BusError(f"publish to {subject} failed: {exc or type(exc).__name__}") from None

    async def publish_snapshot(self, snapshot: InstanceSnapshot) -> None:
        await self._publish(self.subjects.snapshot(snapshot.instance_key), snapshot.to_json())

    async def publish_unreachable(self, event: UnreachableEvent) -> None:
        await self._publish(
            self.subjects.unreachable(InstanceKey.parse(event.key)), event.to_json()
        )

    async def purge_snapshot(self, key: InstanceKey) -> None:
        js = self._jetstream()
        try:
            await js.purge_stream(SNAPSHOTS_STREAM, subject=self.subjects.snapshot(key))
        except (NatsError, JetStreamError) as exc:
            raise BusError(f"purging the snapshot of {key} failed: {exc}") from None

    async def serve_requests(
        self, handler: RequestHandler, *, concurrency: int = DEFAULT_REQUEST_CONCURRENCY
    ) -> None:
        """Answer ``<prefix>.v1.discovery.*`` requests (queue group: one worker answers).

        nats-py runs a subscription's callbacks one after the other, so each request is
        answered in a task of its own: one target that hangs (a blackholed host) does not
        stall the discover, refresh and forget requests behind it. At most ``concurrency``
        run at once; past that the callback waits for a slot, and requests queue in the
        subscription (bounded by nats-py's pending limits).
        """
        if self._nc is None:
            raise BusError("not connected to NATS")
        slots = asyncio.Semaphore(concurrency)

        async def answer(msg: Msg) -> None:
            verb = msg.subject.rsplit(".", 1)[-1]
            try:
                reply = await handler(verb, msg.data)
                if msg.reply:
                    await msg.respond(reply)
            except NatsError as exc:
                log.warning("cannot answer a %s request: %s", verb, exc)
            except Exception as exc:  # a bug: still answered, never left to the caller's timeout
                log.exception("answering a %s request failed", verb)
                failed = DiscoveryReply(
                    ok=False,
                    verb=verb,
                    error=f"discovery failed: {exc!r}",
                    kind=DiscoveryFailure.UNAVAILABLE,
                )
                if msg.reply:
                    with contextlib.suppress(NatsError):
                        await msg.respond(failed.to_json())
            finally:
                slots.release()

        async def on_request(msg: Msg) -> None:
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(answer(msg))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

        subscription = await self._nc.subscribe(
            self.subjects.all_discovery, queue=DISCOVERY_QUEUE_GROUP, cb=on_request
        )
        self._subscriptions.append(subscription)

    async def close(self) -> None:
        """Drain subscriptions and close; idempotent."""
        nc, self._nc, self._js = self._nc, None, None
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        if nc is None or nc.is_closed:
            return
        try:
            await nc.drain()  # bounded by the connection's drain_timeout
        except (NatsError, TimeoutError):
            await nc.close()
