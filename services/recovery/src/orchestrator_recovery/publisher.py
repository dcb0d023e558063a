"""Publishing recovery, analysis and audit events to ``ORCHESTRATOR_EVENTS``.

Events go through JetStream with an acknowledgement, so a published event is stored. While NATS
is away (restarted, partitioned) a publication is retried until it is stored or ``give_up_after``
passes: a recovery never waits on the bus longer than that, and an event that could not be
stored in time is logged (it is also in the audit of the recovery's record in etcd).
"""

from __future__ import annotations

import asyncio
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
    def __init__(self, nc: Client, subjects: Subjects, *, give_up_after: float = 10.0) -> None:
        self._js = nc.jetstream()
        self._subjects = subjects
        self._give_up_after = give_up_after

    async def recovery(self, event: RecoveryEvent) -> bool:
        subject = f"{self._subjects.root}.recovery.{cluster_token(event.subject)}.{event.phase}"
        return await self._publish(subject, event.to_json())

    async def analysis(self, event: AnalysisEvent) -> bool:
        subject = f"{self._subjects.root}.analysis.{cluster_token(event.cluster)}"
        return await self._publish(subject, event.to_json())

    async def audit(self, event: AuditEvent) -> bool:
        subject = f"{self._subjects.root}.audit.{cluster_token(event.cluster or 'none')}"
        return await self._publish(subject, event.to_json())

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
