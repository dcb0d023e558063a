"""Publishing recovery, analysis and audit events to ``ORCHESTRATOR_EVENTS``.

A recovery never waits on the bus: an event is queued and the recovery goes on. One background
task (:meth:`EventPublisher.run`) publishes the queue in order through JetStream, with an
acknowledgement, so a published event is stored. While NATS is away (restarted, partitioned) it
retries each event until stored or ``give_up_after`` passes (then the event is logged and
dropped; the recovery's facts are also in etcd and in the audit of later events). On shutdown,
:meth:`EventPublisher.drain` gives what is queued a last chance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from orchestrator_shared.bus import Subjects
from orchestrator_shared.events import AnalysisEvent, AuditEvent, RecoveryEvent
from orchestrator_shared.instance_key import InstanceKey

log = logging.getLogger(__name__)


def cluster_token(cluster: str) -> str:
    """A cluster name (its master's ``host:port``) as one subject token."""
    try:
        return InstanceKey.parse(cluster).subject_token
    except ValueError:
        return "".join(char if char.isalnum() or char in "-_" else "_" for char in cluster)


class EventPublisher:
    def __init__(self, nc: Client, subjects: Subjects, *, give_up_after: float = 30.0) -> None:
        self._js = nc.jetstream()
        self._subjects = subjects
        self._give_up_after = give_up_after
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def recovery(self, event: RecoveryEvent) -> bool:
        subject = f"{self._subjects.root}.recovery.{cluster_token(event.subject)}.{event.phase}"
        return self._enqueue(subject, event.to_json())

    async def analysis(self, event: AnalysisEvent) -> bool:
        subject = f"{self._subjects.root}.analysis.{cluster_token(event.cluster)}"
        return self._enqueue(subject, event.to_json())

    async def audit(self, event: AuditEvent) -> bool:
        subject = f"{self._subjects.root}.audit.{cluster_token(event.cluster or 'none')}"
        return self._enqueue(subject, event.to_json())

    def _enqueue(self, subject: str, body: bytes) -> bool:
        self._queue.put_nowait((subject, body))
        return True

    async def run(self) -> None:
        """Publish queued events, in order, until cancelled."""
        while True:
            subject, body = await self._queue.get()
            await self._publish(subject, body)

    async def drain(self, within: float = 5.0) -> None:
        """Publish what is still queued, for at most ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self._queue.empty():
                    await self._publish(*self._queue.get_nowait())

    async def _publish(self, subject: str, body: bytes) -> bool:
        try:
            async with asyncio.timeout(self._give_up_after):
                while True:
                    try:
                        await self._js.publish(subject, body, timeout=1.0)
                        return True
                    except (NatsError, JetStreamError) as exc:
                        log.info("publishing %s: %s; trying again", subject, exc or type(exc))
                        await asyncio.sleep(0.2)
        except TimeoutError:
            log.error("could not publish %s within %.0f s", subject, self._give_up_after)
            return False
