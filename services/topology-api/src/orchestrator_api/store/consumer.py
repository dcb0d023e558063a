"""Fills the store from the bus: durable JetStream pull consumers, batched writes.

Two loops, one per stream:

* ``ORCHESTRATOR_SNAPSHOTS``: every snapshot of a batch is written in one transaction
  (:meth:`Store.write_batch`), then the batch is acked. When the write fails
  (:class:`StoreError`) and the database does not answer either (PostgreSQL is down), the
  batch is held and written again once the database answers (its messages kept ours with
  "in progress" acks meanwhile): nothing is lost, and no delivery is spent on the outage.
  When the database answers but refused the batch, or the write failed in any other way (a
  value the driver cannot take, a bug), the batch is written message by message and a message
  refused twice is refused for good.
* ``ORCHESTRATOR_EVENTS``: ``unreachable`` and ``audit`` events become audit entries;
  recovery events become failure detections and recovery history
  (:mod:`orchestrator_api.store.recoveries`); analysis events become the analysis changelog
  (:meth:`Store.record_analysis`, one event after the other); leader events are acknowledged
  and left to :mod:`orchestrator_api.leadership`.

A refused message (one that is not what its subject says, one that cannot be applied) is
terminated, so it never comes back, kept as a dead letter with the reason
(:mod:`orchestrator_shared.dead_letters`), logged and counted: one bad message never stops the
others, and never puts the API into a crash loop. Each durable consumer also has a
``max_deliver`` bound, for a message that would kill the process before it is refused.

After each written batch, the store's view gets its upkeep (:mod:`.upkeep`): new cluster
alias conflicts are reported, lost instances back at work lose their downtime; then the
consumer publishes ``orchestrator.v1.store.changed`` (core NATS, :class:`StoreChanged`: the
clusters and instances just committed), so that every API process, not only the one that
wrote this batch, can tell its live-stream clients (:mod:`orchestrator_api.live`).

The consumers are durable and named after the store (:func:`durable_prefix`), so a restarted
API resumes where it stopped, replicas sharing one PostgreSQL or MySQL database share the
names (each message is written by one of them), and each SQLite file gets every message. NATS
outages are ridden out: the client reconnects forever, and any other JetStream error rebuilds
the subscription (creating the streams and consumers again if the server lost them).

Acks are sent after the write, so a message may be written twice (a crash between the two):
snapshot writes are idempotent, an audit entry may then appear twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_api.store import Store
from orchestrator_api.store.models import AuditEntry
from orchestrator_api.store.recoveries import apply_recovery_events
from orchestrator_api.store.upkeep import ViewUpkeep
from orchestrator_shared.bus import StoreChanged, Subjects, UnreachableEvent
from orchestrator_shared.clock_skew import (
    REPORTED_SKEW_SECONDS,
    aware,
    bounded_by_arrival,
    skew_seconds,
)
from orchestrator_shared.dead_letters import ensure_dead_letters_stream, keep_dead_letter, one_line
from orchestrator_shared.errors import BusError, StoreError
from orchestrator_shared.events import AnalysisEvent, AuditEvent, RecoveryEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.streams import (
    DEFAULT_EVENTS_MAX_BYTES,
    events_stream_config,
    snapshots_stream_config,
)

log = logging.getLogger(__name__)

DRAIN_WAIT_SECONDS = 0.02  # at most, for the messages the server said were waiting


def _pending_after(message: Msg) -> int:
    """How many messages the consumer still had after ``message`` when it was delivered (in
    its metadata); 0 when that cannot be read."""
    try:
        return int(message.metadata.num_pending or 0)
    except (NatsError, ValueError, TypeError, IndexError):  # not a JetStream reply subject
        return 0


BatchWriter = Callable[[Sequence[Msg]], Awaitable[None]]
_Item = TypeVar("_Item")

# an analysis event as the store records it: cluster, instance -> code, when
_ClusterProblems = tuple[str, dict[InstanceKey, str], datetime]

DEFAULT_DURABLE_PREFIX = "orchestrator-topology-api"
_WRITER = f"{socket.gethostname()}:{os.getpid()}"
JETSTREAM_TIMEOUT_SECONDS = 2.0
# deliveries of one message before JetStream gives up on it: for a message that kills the
# process before it can be refused (refusals terminate at once; an outage spends none)
MAX_DELIVER = 10
DEAD_LETTER_SERVICE = "topology-api"
SKEW_REPORT_INTERVAL_SECONDS = 60.0  # one clock-skew warning a minute at most


@dataclass(slots=True)
class ConsumerStats:
    """Counters for metrics and tests."""

    snapshots_written: int = 0
    events_written: int = 0
    messages_skipped: int = 0  # refused: terminated and kept as dead letters
    failed_writes: int = 0
    resubscribes: int = 0
    loop_failures: int = 0  # unexpected errors in a consumer loop (it carries on)
    clock_skew_seconds: float = 0.0  # the last snapshot's probe time minus the stream's stamp


def durable_prefix(store_identity: str) -> str:
    """The durable consumers' names follow the store: processes writing one database share
    them (each message is written once), processes with databases of their own (SQLite files)
    each get every message. A store made before identities existed keeps the old names."""
    if not store_identity:
        return DEFAULT_DURABLE_PREFIX
    return f"{DEFAULT_DURABLE_PREFIX}-{store_identity}"


class ConsumerMetrics(Collector):
    """The consumer's counters on the API's ``/metrics``."""

    def __init__(self, stats: ConsumerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._stats
        for name, help_text, value in (
            ("snapshots_written", "Snapshots written to the store", stats.snapshots_written),
            ("events_written", "Events written to the store", stats.events_written),
            (
                "bus_messages_refused",
                "Messages refused for good (terminated, kept as dead letters)",
                stats.messages_skipped,
            ),
            (
                "consumer_failures",
                "Unexpected errors in a consumer loop (it carried on)",
                stats.loop_failures,
            ),
        ):
            yield CounterMetricFamily(f"orchestrator_api_{name}", help_text, value=value)
        yield GaugeMetricFamily(
            "orchestrator_api_snapshot_clock_skew_seconds",
            "The last snapshot's probe time minus when NATS stored it (discovery's clock ahead "
            "of the NATS server's when positive)",
            value=stats.clock_skew_seconds,
        )


class StoreConsumer:
    """Durable pull consumers on the snapshot and event streams, writing into ``store``."""

    def __init__(
        self,
        store: Store,
        subjects: Subjects,
        *,
        durable_prefix: str = DEFAULT_DURABLE_PREFIX,
        batch_size: int = 256,
        fetch_wait_seconds: float = 0.5,
        retry_seconds: float = 1.0,
        ack_wait_seconds: float = 30.0,
        events_retention_days: int = 7,
        events_max_bytes: int = DEFAULT_EVENTS_MAX_BYTES,
        stream_replicas: int = 1,
        idle_check_seconds: float = 10.0,
        lost_downtime: timedelta = timedelta(days=1),
    ) -> None:
        self._store = store
        self._subjects = subjects
        self._durable_prefix = durable_prefix
        self._batch_size = batch_size
        self._fetch_wait = fetch_wait_seconds
        self._retry = retry_seconds
        self._ack_wait = ack_wait_seconds
        self._retention_days = events_retention_days
        self._events_max_bytes = events_max_bytes
        self._stream_replicas = stream_replicas
        self._idle_check = idle_check_seconds
        self._lost_downtime = lost_downtime
        self._nc: Client | None = None
        self.stats = ConsumerStats()
        self._upkeep = ViewUpkeep(store)
        self._skew_reported_until = 0.0

    async def connect(
        self,
        servers: Sequence[str],
        *,
        name: str = DEFAULT_DURABLE_PREFIX,
        auth: NatsAuth = ANONYMOUS,
    ) -> None:
        self._nc = await connect_nats(servers, name=name, auth=auth)
        await ensure_dead_letters_stream(self._nc, self._subjects, replicas=self._stream_replicas)

    @property
    def is_connected(self) -> bool:
        """Whether the consumer's NATS connection is up now (the API's ``/ready``): while it
        reconnects, the store falls behind what discovery reports."""
        return self._nc is not None and self._nc.is_connected

    async def run(self) -> None:
        """Consume both streams until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(
                self._consume(
                    snapshots_stream_config(self._subjects, replicas=self._stream_replicas),
                    f"{self._durable_prefix}-snapshots",
                    self._write_snapshots,
                )
            )
            group.create_task(
                self._consume(
                    events_stream_config(
                        self._subjects,
                        retention_days=self._retention_days,
                        max_bytes=self._events_max_bytes,
                        replicas=self._stream_replicas,
                    ),
                    f"{self._durable_prefix}-events",
                    self._write_events,
                )
            )

    async def close(self) -> None:
        """Close the NATS connection; idempotent. Cancel :meth:`run` first."""
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(NatsError, TimeoutError):
            async with asyncio.timeout(5):
                await nc.close()

    # --- the loop --------------------------------------------------------------------------
    def _jetstream(self) -> JetStreamContext:
        if self._nc is None:
            raise BusError("not connected to NATS")
        return self._nc.jetstream(timeout=JETSTREAM_TIMEOUT_SECONDS)

    async def _subscribe(
        self, stream: StreamConfig, durable: str
    ) -> JetStreamContext.PullSubscription:
        js = self._jetstream()
        name = str(stream.name)
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(stream)
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=self._batch_size * 4,
            max_deliver=MAX_DELIVER,
        )
        try:
            info = await js.consumer_info(name, durable)
        except NotFoundError:
            await js.add_consumer(name, config)
        else:
            if info.config.max_deliver != MAX_DELIVER:  # made by an older version: update it
                try:
                    await js.add_consumer(name, config)
                except JetStreamError as exc:
                    log.warning("consumer %s keeps its max_deliver: %s", durable, exc)
        return await js.pull_subscribe_bind(durable=durable, stream=name)

    async def _consume(
        self,
        stream: StreamConfig,
        durable: str,
        write: BatchWriter,
    ) -> None:
        while True:
            subscription: JetStreamContext.PullSubscription | None = None
            try:
                subscription = await self._subscribe(stream, durable)
                log.info("consuming %s as %s", stream.name, durable)
                idle_since = time.monotonic()
                while True:
                    try:
                        # One message as soon as there is one (a fetch of N waits for N, or
                        # for the timeout), then whatever else is already there.
                        messages = await subscription.fetch(1, timeout=self._fetch_wait)
                    except TimeoutError:
                        if time.monotonic() - idle_since > self._idle_check:
                            # Quiet for long: is the consumer still there? A server that
                            # lost its state answers fetches with silence, not an error.
                            await self._jetstream().consumer_info(str(stream.name), durable)
                            idle_since = time.monotonic()
                        continue
                    idle_since = time.monotonic()
                    waiting = min(_pending_after(messages[-1]), self._batch_size - 1)
                    if waiting > 0:
                        # only as many as the server says wait: a fetch of more than are
                        # there would wait out its whole timeout for the rest
                        with contextlib.suppress(TimeoutError):
                            messages += await subscription.fetch(
                                waiting, timeout=DRAIN_WAIT_SECONDS
                            )
                    await write(messages)
            except (NatsError, JetStreamError, BusError) as exc:
                self.stats.resubscribes += 1
                log.warning("consumer %s: %s; subscribing again", durable, exc or type(exc))
                await asyncio.sleep(self._retry)
            except Exception:
                # a bug outside the per-message handling: logged, counted, and the loop goes
                # on (the batch comes back after ack_wait, at most MAX_DELIVER times)
                self.stats.loop_failures += 1
                log.exception("consumer %s failed unexpectedly; subscribing again", durable)
                await asyncio.sleep(self._retry)
            finally:
                if subscription is not None:
                    with contextlib.suppress(NatsError, JetStreamError):
                        await subscription.unsubscribe()

    # --- batches ---------------------------------------------------------------------------
    async def _parse(
        self, messages: Sequence[Msg], parse: Callable[[bytes], _Item]
    ) -> list[tuple[Msg, _Item]]:
        """Each message with what ``parse`` reads in it; one it cannot read is refused."""
        parsed: list[tuple[Msg, _Item]] = []
        for msg in messages:
            try:
                parsed.append((msg, parse(msg.data)))
            except Exception as exc:  # whatever a malformed message makes the parser raise
                await self._skip(msg, exc)
        return parsed

    async def _write_snapshots(self, messages: Sequence[Msg]) -> None:
        parsed = [
            (msg, self._on_the_streams_clock(msg, snapshot))
            for msg, snapshot in await self._parse(messages, InstanceSnapshot.from_json)
        ]
        written = await self._write(parsed, self._store.write_batch)
        self.stats.snapshots_written += written
        if written:
            await self._upkeep.check()
            await self._announce([snapshot.instance_key for _, snapshot in parsed])

    def _on_the_streams_clock(self, msg: Msg, snapshot: InstanceSnapshot) -> InstanceSnapshot:
        """The snapshot's times bounded by when the stream stored it (a discovery clock
        ahead, or a forged future time, must not pin stale state); the skew recorded."""
        try:
            stored_at = msg.metadata.timestamp
        except (NatsError, ValueError, IndexError):
            return snapshot  # not a JetStream message (never on this consumer)
        skew = skew_seconds(snapshot, stored_at)
        self.stats.clock_skew_seconds = skew
        if abs(skew) > REPORTED_SKEW_SECONDS and time.monotonic() >= self._skew_reported_until:
            self._skew_reported_until = time.monotonic() + SKEW_REPORT_INTERVAL_SECONDS
            log.warning(
                "clock skew: %s was probed %+.1f s from when NATS stored it (discovery's and "
                "the NATS server's clocks differ; keep them in sync with NTP)",
                snapshot.key,
                skew,
            )
        return bounded_by_arrival(snapshot, stored_at)

    async def _announce(self, keys: Sequence[InstanceKey]) -> None:
        """Tell every API process that these snapshots are committed (best-effort: a lost
        notice only delays a browser's refetch until the next one)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            view = await self._store.view()
        except StoreError:
            return
        clusters = {node.cluster_name for key in keys if (node := view.instance(key)) is not None}
        notice = StoreChanged(
            clusters=tuple(sorted(name for name in clusters if name)),
            instances=tuple(sorted({str(key) for key in keys})),
            writer=_WRITER,
        )
        try:
            await nc.publish(self._subjects.store_changed, notice.to_json())
        except NatsError as exc:
            log.debug("store.changed not sent: %s", exc)

    async def _write_events(self, messages: Sequence[Msg]) -> None:
        recovery_prefix = f"{self._subjects.root}.recovery."
        recoveries = [msg for msg in messages if msg.subject.startswith(recovery_prefix)]
        if recoveries:
            await self._write_recoveries(recoveries)
        analysis_prefix = f"{self._subjects.root}.analysis."
        analyses = [msg for msg in messages if msg.subject.startswith(analysis_prefix)]
        if analyses:
            await self._write_analyses(analyses)
        parsed: list[tuple[Msg, AuditEntry]] = []
        ignored: list[Msg] = []
        clusters = None
        for msg in messages:
            if msg.subject.startswith((recovery_prefix, analysis_prefix)):
                continue
            try:
                entry = self._audit_entry_of(msg)
            except Exception as exc:  # whatever a malformed message makes the parser raise
                await self._skip(msg, exc)
                continue
            if entry is None:
                ignored.append(msg)
                continue
            if not entry.cluster and entry.key is not None:
                if clusters is None:
                    clusters = await self._clusters_of_instances()
                entry = replace(entry, cluster=clusters.get(entry.key, ""))
            parsed.append((msg, entry))
        await _settle(msg.ack() for msg in ignored)
        written = await self._write(parsed, self._store.append_audit)
        self.stats.events_written += written

    async def _write_recoveries(self, messages: Sequence[Msg]) -> None:
        parsed = await self._parse(messages, RecoveryEvent.model_validate_json)

        async def apply(events: Sequence[RecoveryEvent]) -> None:
            await apply_recovery_events(self._store, events, lost_downtime=self._lost_downtime)

        written = await self._write(parsed, apply)
        self.stats.events_written += written
        if written:
            await self._upkeep.check()

    async def _write_analyses(self, messages: Sequence[Msg]) -> None:
        parsed = await self._parse(messages, _cluster_problems)

        async def record(events: Sequence[_ClusterProblems]) -> None:
            for cluster, problems, at in events:  # in order: each compared with the previous
                await self._store.record_analysis(cluster, problems, at=at)

        self.stats.events_written += await self._write(parsed, record)

    async def _write(
        self,
        parsed: Sequence[tuple[Msg, _Item]],
        write: Callable[[Sequence[_Item]], Awaitable[None]],
    ) -> int:
        """Write a batch in one transaction and ack it; how many items were written.

        When the write fails although the database answers, something in the batch is what
        it refuses (a value the database cannot hold): the items are then written one by
        one and the refused ones skipped, so that one message never blocks the stream.
        """
        if not parsed:
            return 0
        try:
            await write([item for _, item in parsed])
        except StoreError as exc:
            if not await self._store_answers():
                await self._wait_for_store([msg for msg, _ in parsed], exc)
                return await self._write(parsed, write)
            return await self._write_one_by_one(parsed, write)
        except Exception as exc:  # a value the driver cannot take, a bug: find the message
            log.warning("a batch of %d failed (%s); writing them one by one", len(parsed), exc)
            return await self._write_one_by_one(parsed, write)
        await _settle(msg.ack() for msg, _ in parsed)
        return len(parsed)

    async def _write_one_by_one(
        self,
        parsed: Sequence[tuple[Msg, _Item]],
        write: Callable[[Sequence[_Item]], Awaitable[None]],
    ) -> int:
        """Each item gets two attempts; one refused twice while the database answers is
        refused for good, as is one whose write fails any other way. If the database stops
        answering, the rest waits for it."""
        written = 0
        for position, (msg, item) in enumerate(parsed):
            for attempt in (1, 2):
                try:
                    await write([item])
                except StoreError as exc:
                    if not await self._store_answers():
                        rest = parsed[position:]
                        await self._wait_for_store([m for m, _ in rest], exc)
                        return written + await self._write_one_by_one(rest, write)
                    if attempt == 1:
                        await asyncio.sleep(self._retry / 4)
                        continue
                    await self._skip(msg, exc)
                except Exception as exc:  # not the database's refusal: the message's fault
                    await self._skip(msg, exc)
                else:
                    written += 1
                    await _settle([msg.ack()])
                break
        return written

    async def _store_answers(self) -> bool:
        try:
            await self._store.ping()
        except StoreError:
            return False
        return True

    def _audit_entry_of(self, msg: Msg) -> AuditEntry | None:
        """The audit entry an event becomes, or None for events the store does not keep."""
        root = self._subjects.root
        if msg.subject.startswith(f"{root}.unreachable."):
            event = UnreachableEvent.model_validate_json(msg.data)
            return AuditEntry(
                at=aware(event.detected_at),
                type="unreachable",
                key=InstanceKey.parse(event.key),
                message=f"unreachable: {event.error}" if event.error else "unreachable",
                user=event.reporter or "discovery",
            )
        if msg.subject.startswith(f"{root}.audit."):
            audit = AuditEvent.model_validate_json(msg.data)
            return AuditEntry(
                at=aware(audit.at) if audit.at is not None else datetime.now(UTC),
                type=audit.type,
                key=InstanceKey.parse(audit.key) if audit.key else None,
                cluster=audit.cluster,
                message=audit.message,
                user=audit.user,
            )
        return None

    async def _clusters_of_instances(self) -> dict[InstanceKey, str]:
        try:
            return dict((await self._store.topology()).cluster_of_instance)
        except StoreError:
            return {}

    async def _skip(self, msg: Msg, problem: Exception) -> None:
        """Refuse ``msg`` for good: terminated, kept as a dead letter, logged, counted."""
        self.stats.messages_skipped += 1
        reason = one_line(problem)
        log.error("refused a message on %s: %s", msg.subject, reason)
        await _settle([msg.term()])
        await keep_dead_letter(
            self._nc,
            self._subjects,
            service=DEAD_LETTER_SERVICE,
            subject=msg.subject,
            data=msg.data,
            reason=reason,
        )

    async def _wait_for_store(self, messages: Sequence[Msg], problem: StoreError) -> None:
        """Hold ``messages`` until the database answers again, telling JetStream they are
        still being worked on (a nak would spend one of their MAX_DELIVER deliveries)."""
        self.stats.failed_writes += 1
        log.warning("store write failed, %d messages wait for it: %s", len(messages), problem)
        while True:
            await _settle(msg.in_progress() for msg in messages)
            await asyncio.sleep(self._retry)
            if await self._store_answers():
                return


def _cluster_problems(data: bytes) -> _ClusterProblems:
    event = AnalysisEvent.model_validate_json(data)
    problems = {InstanceKey.parse(p.instance): p.code for p in event.problems}
    return event.cluster, problems, aware(event.at)


async def _settle(acks: Iterable[Awaitable[None]]) -> None:
    """Send acks/naks/terms; a lost one only means a redelivery, so failures are logged."""
    for ack in acks:
        try:
            await ack
        except NatsError as exc:
            log.debug("ack not sent: %s", exc)
