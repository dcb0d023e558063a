"""``orchestrator.v1.leader`` events: published when the leadership changes (and once at
start-up, so a consumer that starts later still learns the current state from the stream).

An event that cannot be published is kept and retried on the next observation pass; a newer
change replaces it (the stream needs the latest state, not every intermediate one).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_coordinator.observer import ElectionStatus
from orchestrator_shared.bus import EVENTS_STREAM, LeaderEvent, Subjects
from orchestrator_shared.errors import BusError
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth
from orchestrator_shared.streams import events_stream_config

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 2.0


def leader_event(status: ElectionStatus, *, reporter: str) -> LeaderEvent:
    return LeaderEvent(
        leader=status.leader,
        fencing_token=status.fencing_token,
        since=status.since,
        observed_at=status.checked_at or datetime.now(UTC),
        reporter=reporter,
    )


class LeaderEventPublisher:
    def __init__(
        self,
        subjects: Subjects,
        *,
        events_retention_days: int,
        events_max_bytes: int = 1 << 30,
        stream_replicas: int = 1,
        reporter: str,
        metrics: CoordinatorMetrics,
    ) -> None:
        self.subjects = subjects
        self._retention_days = events_retention_days
        self._events_max_bytes = events_max_bytes
        self._stream_replicas = stream_replicas
        self._reporter = reporter
        self._metrics = metrics
        self._nc: Client | None = None
        self._pending: LeaderEvent | None = None
        self._published_once = False

    async def connect(self, servers: list[str], auth: NatsAuth = ANONYMOUS) -> None:
        self._nc = await connect_nats(servers, name="orchestrator-coordinator", auth=auth)
        try:
            await self._ensure_stream()
        except BusError as exc:  # NATS may come back; publishing retries
            log.warning("%s", exc)

    @property
    def is_connected(self) -> bool:
        """Whether leader events can be published now (the coordinator's ``/ready``)."""
        return self._nc is not None and self._nc.is_connected

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await nc.drain()
            except (NatsError, OSError) as exc:
                log.debug("NATS drain: %s", exc)

    async def _ensure_stream(self) -> None:
        assert self._nc is not None
        js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
        try:
            try:
                await js.stream_info(EVENTS_STREAM)
            except NotFoundError:
                await js.add_stream(
                    events_stream_config(
                        self.subjects,
                        retention_days=self._retention_days,
                        max_bytes=self._events_max_bytes,
                        replicas=self._stream_replicas,
                    )
                )
        except (NatsError, JetStreamError) as exc:
            raise BusError(f"cannot set up stream {EVENTS_STREAM}: {exc}") from None

    async def observe(self, previous: ElectionStatus, status: ElectionStatus) -> None:
        """Queue an event when the token changed (or none was published yet); try to send."""
        if status.fencing_token != previous.fencing_token or not self._published_once:
            self._pending = leader_event(status, reporter=self._reporter)
        await self.flush()

    async def flush(self) -> None:
        event = self._pending
        if event is None or self._nc is None:
            return
        js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
        try:
            try:
                await js.publish(self.subjects.leader, event.to_json())
            except NotFoundError:  # no stream (NATS restarted without its data): make it
                await self._ensure_stream()
                await js.publish(self.subjects.leader, event.to_json())
        except (NatsError, JetStreamError, BusError) as exc:
            self._metrics.publish_failures.inc()
            log.warning("could not publish the leader event (retrying): %s", exc)
            return
        if self._pending is event:
            self._pending = None
        self._published_once = True
        self._metrics.events_published.inc()
