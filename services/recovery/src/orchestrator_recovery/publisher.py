"""Publishing recovery, analysis and audit events to ``ORCHESTRATOR_EVENTS``.

A recovery never waits on the bus: an event is queued and the recovery goes on. One background
task (:meth:`EventPublisher.run`) publishes the queue in order through JetStream, with an
acknowledgement, so a published event is stored. While NATS is away (restarted, partitioned) it
retries each event until stored or ``give_up_after`` passes (then the event is logged and
dropped; the recovery's facts are also in etcd and in the audit of later events). On shutdown,
:meth:`EventPublisher.drain` gives what is queued a last chance.

The queue is bounded (``max_queued`` events, 10,000 by default): a long NATS outage must not
grow the worker's memory without end. When it is full, the **oldest** queued event is dropped
to make room for the new one (the latest events say what the fleet is like now), counted in
:attr:`EventPublisher.dropped`, and logged once at ERROR when the queue becomes full; once it
has room again one line says how many were dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from orchestrator_shared.bus import MasterChanged, Subjects
from orchestrator_shared.events import AnalysisEvent, AuditEvent, RecoveryData, RecoveryEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.master_change import MasterChangeSigner

log = logging.getLogger(__name__)


def cluster_token(cluster: str) -> str:
    """A cluster name (its master's ``host:port``) as one subject token."""
    try:
        return InstanceKey.parse(cluster).subject_token
    except ValueError:
        return "".join(char if char.isalnum() or char in "-_" else "_" for char in cluster)


DEFAULT_MAX_QUEUED = 10_000


class EventPublisher:
    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        give_up_after: float = 30.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        tally: Callable[[RecoveryEvent], None] | None = None,
        master_signer: MasterChangeSigner | None = None,
    ) -> None:
        """``tally``: told of every recovery event as it is queued (the worker's metrics:
        every phase of every recovery, automated or asked for, passes here);
        ``master_signer``: signs :meth:`promoted` notices (None: none is sent)."""
        self._nc = nc
        self._signer = master_signer
        self.masters_announced = 0
        self._js = nc.jetstream()
        self._tally = tally
        self._subjects = subjects
        self._give_up_after = give_up_after
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=max_queued)
        self.dropped = 0  # events dropped because the queue was full, since start
        self._dropping_since: int | None = None  # ``dropped`` when the queue became full

    async def recovery(self, event: RecoveryEvent) -> bool:
        if self._tally is not None:
            self._tally(event)
        subject = f"{self._subjects.root}.recovery.{cluster_token(event.subject)}.{event.phase}"
        return self._enqueue(subject, event.to_json())

    async def analysis(self, event: AnalysisEvent) -> bool:
        subject = f"{self._subjects.root}.analysis.{cluster_token(event.cluster)}"
        return self._enqueue(subject, event.to_json())

    async def audit(self, event: AuditEvent) -> bool:
        subject = f"{self._subjects.root}.audit.{cluster_token(event.cluster or 'none')}"
        return self._enqueue(subject, event.to_json())

    async def promoted(self, data: RecoveryData, *, demoted_replicates: bool = False) -> None:
        """Tell topology-api at once that ``data.successor`` is the writable master of
        ``data.cluster`` (``MasterChanged``, core NATS: not queued behind the events).

        It is what applications' next ``/api/master`` answer follows, so it goes out the
        moment the successor is writable. Best-effort: a lost or refused notice leaves the API
        to learn the change from the snapshots, as before; it never fails or delays the
        recovery. Nothing is sent without a signer (the API refuses unsigned notices), without
        a successor, or when the promotion was left to the hooks (still read-only)."""
        if self._signer is None or not data.successor or not data.promotion_applied:
            return
        message = self._signer.sign(
            MasterChanged(
                cluster=data.cluster,
                cluster_alias=data.cluster_alias,
                failed=data.failed,
                successor=data.successor,
                demoted_replicates=demoted_replicates,
                recovery_id=data.recovery_id,
                command=data.command,
                fencing_token=data.fencing_token,
                worker=data.worker,
                promoted_at=datetime.now(UTC),
            )
        )
        subject = self._subjects.master_changed(cluster_token(data.cluster))
        try:
            await self._nc.publish(subject, message.to_json())
            self.masters_announced += 1
        except (NatsError, OSError) as exc:
            log.warning("could not tell the API that %s is the master: %s", data.successor, exc)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _enqueue(self, subject: str, body: bytes) -> bool:
        """Queue an event; when the queue is full, drop the oldest first (module docstring)."""
        if self._queue.full():
            self._queue.get_nowait()
            if self._dropping_since is None:
                self._dropping_since = self.dropped
                log.error(
                    "the event queue is full (%d events, NATS unreachable?): dropping the "
                    "oldest events until it has room",
                    self._queue.maxsize,
                )
            self.dropped += 1
        self._queue.put_nowait((subject, body))
        return True

    def _note_room(self) -> None:
        """One line when a full queue has room again: how many events were lost meanwhile."""
        if self._dropping_since is not None and self._queue.qsize() < self._queue.maxsize // 2:
            log.warning(
                "the event queue has room again; %d events were dropped",
                self.dropped - self._dropping_since,
            )
            self._dropping_since = None

    async def run(self) -> None:
        """Publish queued events, in order, until cancelled."""
        while True:
            subject, body = await self._queue.get()
            await self._publish(subject, body)
            self._note_room()

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
