"""The store's bus consumer against a real nats-server (and PostgreSQL and MariaDB for the
outage tests): snapshots and events published by discovery's publisher end up in the store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest

from orchestrator_api.store import Downtime, Store, StoreError, open_store
from orchestrator_api.store.consumer import StoreConsumer
from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_shared.bus import SNAPSHOTS_STREAM, Subjects, UnreachableEvent
from orchestrator_shared.events import RecoveryData, RecoveryEvent, RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from tests import harness
from tests.integration.test_store import FLEET, NOW, snapshot

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> float:
    """Wait until ``check()`` holds; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@asynccontextmanager
async def publisher(url: str) -> AsyncIterator[NatsBus]:
    bus = NatsBus(SUBJECTS, events_retention_days=1)
    await bus.connect([url], name="test-publisher")
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def consuming(store: Store, url: str) -> AsyncIterator[StoreConsumer]:
    consumer = StoreConsumer(
        store, SUBJECTS, fetch_wait_seconds=0.2, retry_seconds=0.2, idle_check_seconds=0.5
    )
    await consumer.connect([url], name="test-store-consumer")
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store("sqlite", sqlite_path=tmp_path / "store.sqlite3")
    try:
        yield opened
    finally:
        await opened.close()


def has(store: Store, *keys: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        known = {str(node.key) for node in await store.all_instances()}
        return known.issuperset(keys)

    return check


@asynccontextmanager
async def recovering(
    store: Store, url: str
) -> AsyncIterator[tuple[NatsBus, Callable[[RecoveryPhase, RecoveryData], Awaitable[None]]]]:
    """A consumer running with FLEET stored (db1 and db2 seen): the bus for more snapshots, and
    how to publish a recovery event as the worker does."""
    raw = await nats.connect(url)
    js = raw.jetstream()

    async def publish_recovery(phase: RecoveryPhase, data: RecoveryData) -> None:
        event = RecoveryEvent.of(phase, data, source="test")
        await js.publish(f"{SUBJECTS.root}.recovery.{data.cluster}.{phase}", event.to_json())

    try:
        async with publisher(url) as bus, consuming(store, url):
            for snap in FLEET:
                await bus.publish_snapshot(snap)
            await eventually(has(store, "db1:3306", "db2:3306"))
            yield bus, publish_recovery
    finally:
        await raw.close()


async def test_published_snapshots_appear_in_the_store(
    store: Store, nats_server: harness.NatsLike
) -> None:
    async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
        for snap in FLEET:
            await bus.publish_snapshot(snap)
        took = await eventually(has(store, "db1:3306", "db2:3306", "db3:3306", "db9:3306"))
        assert took < 2.0
        assert await store.resolve_cluster("shop") == "db1:3306"
        assert consumer.stats.snapshots_written == len(FLEET)

        # A newer snapshot of the same instance replaces the stored one.
        await bus.publish_snapshot(snapshot("db2:3306", checked_at=NOW + timedelta(seconds=5)))

        async def promoted() -> bool:
            node = await store.get_instance(InstanceKey.parse("db2:3306"))
            return node is not None and node.depth == 0

        await eventually(promoted)


async def test_a_bad_message_is_skipped_and_later_ones_still_arrive(
    store: Store, nats_server: harness.NatsLike
) -> None:
    raw = await nats.connect(nats_server.url)
    try:
        async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
            js = raw.jetstream()
            # One message per subject stays in the snapshot stream: two subjects.
            await js.publish(SUBJECTS.snapshot(InstanceKey.parse("bad1:1")), b"not json")
            await js.publish(
                SUBJECTS.snapshot(InstanceKey.parse("bad2:1")),
                b'{"schema": 1, "key": "no such key::"}',
            )
            await js.publish(SUBJECTS.unreachable(InstanceKey.parse("bad:3306")), b"[]")
            await bus.publish_snapshot(FLEET[0])
            await eventually(has(store, "db1:3306"))

            async def all_skipped() -> bool:
                return consumer.stats.messages_skipped == 3

            await eventually(all_skipped)
            assert [str(node.key) for node in await store.all_instances()] == ["db1:3306"]
    finally:
        await raw.close()


async def test_a_message_the_database_refuses_is_skipped(
    postgres_db: harness.PostgresDatabase, nats_server: harness.NatsLike
) -> None:
    store = await open_store("postgres", postgres_dsn=postgres_db.dsn)
    try:
        async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
            # PostgreSQL text cannot hold NUL; the alias is stored in a column of its own.
            await bus.publish_snapshot(snapshot("db1:3306", alias="bad\x00alias"))
            for snap in FLEET[1:]:
                await bus.publish_snapshot(snap)
            await eventually(has(store, "db2:3306", "db3:3306", "db9:3306"))

            async def skipped() -> bool:
                return consumer.stats.messages_skipped == 1

            await eventually(skipped)
            assert await store.get_instance(InstanceKey.parse("db1:3306")) is None
    finally:
        await store.close()


async def test_a_snapshot_mariadb_cannot_store_is_skipped(
    mariadb_db: harness.MariadbDatabase, nats_server: harness.NatsLike
) -> None:
    store = await open_store("mysql", mysql=mariadb_db.backend())
    try:
        async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
            # instance keys are VARCHAR(255) on MySQL: a longer one is refused, not cut short
            await bus.publish_snapshot(snapshot(f"{'h' * 300}:3306"))
            for snap in FLEET:
                await bus.publish_snapshot(snap)
            await eventually(has(store, "db1:3306", "db2:3306", "db3:3306", "db9:3306"))

            async def skipped() -> bool:
                return consumer.stats.messages_skipped == 1

            await eventually(skipped)
            assert len(await store.all_instances()) == len(FLEET)
    finally:
        await store.close()


async def test_unreachable_and_audit_events_become_audit_entries(
    store: Store, nats_server: harness.NatsLike
) -> None:
    raw = await nats.connect(nats_server.url)
    try:
        async with publisher(nats_server.url) as bus, consuming(store, nats_server.url):
            for snap in FLEET:
                await bus.publish_snapshot(snap)
            await eventually(has(store, "db1:3306", "db2:3306", "db3:3306", "db9:3306"))
            await bus.publish_unreachable(
                UnreachableEvent(
                    key="db1:3306",
                    detected_at=NOW,
                    last_seen_at=NOW,
                    error="connection refused",
                    reporter="discovery-1",
                )
            )
            await raw.jetstream().publish(
                f"{SUBJECTS.root}.audit.db9:3306",
                b'{"schema": 1, "type": "begin-downtime", "key": "db9:3306",'
                b' "cluster": "db9:3306", "message": "upgrade", "user": "alice"}',
            )

            async def two_entries() -> bool:
                return len(await store.audit_log()) == 2

            await eventually(two_entries)
            entries = {entry.type: entry for entry in await store.audit_log()}
            unreachable = entries["unreachable"]
            assert (unreachable.key, unreachable.cluster, unreachable.user) == (
                InstanceKey.parse("db1:3306"),
                "db1:3306",
                "discovery-1",
            )
            assert "connection refused" in unreachable.message
            downtime = entries["begin-downtime"]
            assert (downtime.cluster, downtime.message, downtime.user) == (
                "db9:3306",
                "upgrade",
                "alice",
            )
    finally:
        await raw.close()


async def test_recovery_events_become_history_detections_alias_and_downtime(
    store: Store, nats_server: harness.NatsLike
) -> None:
    data = RecoveryData(
        recovery_id="r-1",
        cluster="db1:3306",
        cluster_alias="shop",
        analysis="DeadMaster",
        failed="db1:3306",
        fencing_token=41,
        worker="worker-a",
        started_at=NOW,
    )
    completed = data.model_copy(
        update={
            "successor": "db2:3306",
            "repointed": ("db3:3306",),
            "lost": {"db4:3306": "no GTID"},
            "ended_at": NOW + timedelta(seconds=1),
        }
    )
    async with recovering(store, nats_server.url) as (bus, publish_recovery):
        await store.set_cluster_alias("db1:3306", "shop-override")
        for phase, body in [
            (RecoveryPhase.DETECTED, data),
            (RecoveryPhase.STARTED, data),
            (RecoveryPhase.COMPLETED, completed),
        ]:
            await publish_recovery(phase, body)

        async def done() -> bool:
            found = await store.recoveries()
            return bool(found) and not found[0].is_active

        await eventually(done)
        [record] = await store.recoveries()
        assert record.uid == "r-1" and record.is_successful and record.fencing_token == 41
        assert record.successor_key == InstanceKey.parse("db2:3306")
        assert record.lost_replicas == (InstanceKey.parse("db4:3306"),)
        [detection] = await store.failure_detections()
        assert (detection.analysis_code, detection.key) == (
            "DeadMaster",
            InstanceKey.parse("db1:3306"),
        )

        # the operator's alias follows the master (applied after the recovery's row: wait);
        # the lost replica and the failed master are downtimed
        async def alias_moved() -> bool:
            setting = (await store.view()).settings.get("db2:3306")
            return setting is not None and setting.alias_override == "shop-override"

        async def both_downtimed() -> bool:  # the last thing the event does
            return len(await store.downtimes(now=datetime.now(UTC))) == 2

        await eventually(alias_moved)
        await eventually(both_downtimed)
        view = await store.view()
        assert view.settings["db2:3306"].alias_override == "shop-override"
        assert view.settings["db1:3306"].alias_override == ""
        downtimes = await store.downtimes(now=datetime.now(UTC))
        assert [(str(d.key), d.reason) for d in downtimes] == [
            ("db1:3306", "lost-in-recovery"),
            ("db4:3306", "lost-in-recovery"),
        ]
        # the succession is recorded with the alias the cluster had
        [succession] = await store.successions()
        assert (succession.cluster, str(succession.successor), succession.alias) == (
            "db1:3306",
            "db2:3306",
            "shop-override",
        )
        # one step per event, in order
        steps = await store.recovery_steps("r-1")
        assert [step.message.split(":")[0] for step in steps] == [
            "detected",
            "started",
            "completed",
        ]
        assert "successor db2:3306" in steps[-1].message
        assert "db4:3306 (no GTID)" in steps[-1].message

        # once discovery shows db2 as master, the old name and the alias name its cluster
        await bus.publish_snapshot(snapshot("db2:3306", checked_at=NOW + timedelta(seconds=5)))
        await bus.publish_snapshot(
            snapshot("db3:3306", "db2:3306", checked_at=NOW + timedelta(seconds=5))
        )

        async def renamed() -> bool:
            return await store.resolve_cluster("db1:3306") == "db2:3306"

        await eventually(renamed)
        assert await store.resolve_cluster("shop-override") == "db2:3306"
        assert (await store.cluster("db1:3306")) is not None  # the dead master, alone


async def test_a_graceful_takeover_moves_the_name_but_does_not_downtime_the_old_master(
    store: Store, nats_server: harness.NatsLike
) -> None:
    done = RecoveryData(
        recovery_id="t-1",
        cluster="db1:3306",
        cluster_alias="shop",
        analysis="DeadMaster",
        failed="db1:3306",
        successor="db2:3306",
        repointed=("db3:3306",),
        command="graceful-master-takeover-auto",
        started_at=NOW,
        ended_at=NOW + timedelta(seconds=1),
    )
    async with recovering(store, nats_server.url) as (bus, publish_recovery):
        await publish_recovery(RecoveryPhase.COMPLETED, done)

        async def recorded() -> bool:
            return bool(await store.successions())

        await eventually(recorded)
        [succession] = await store.successions()
        assert (str(succession.successor), succession.alias, succession.command) == (
            "db2:3306",
            "shop",
            "graceful-master-takeover-auto",
        )
        assert await store.downtimes(now=datetime.now(UTC)) == []
        # discovery then sees the old master replicating from the new one
        later = NOW + timedelta(seconds=5)
        await bus.publish_snapshot(snapshot("db2:3306", checked_at=later, alias="shop"))
        await bus.publish_snapshot(snapshot("db1:3306", "db2:3306", checked_at=later))
        await bus.publish_snapshot(snapshot("db3:3306", "db2:3306", checked_at=later))

        async def moved() -> bool:
            return await store.resolve_cluster("db1:3306") == "db2:3306"

        await eventually(moved)
        assert await store.resolve_cluster("shop") == "db2:3306"
        assert [c.name for c in await store.clusters()] == ["db2:3306", "db9:3306"]


async def test_the_consumer_resumes_after_nats_restarts(
    store: Store, nats_server: harness.NatsLike
) -> None:
    async with publisher(nats_server.url) as bus, consuming(store, nats_server.url):
        await bus.publish_snapshot(FLEET[0])
        await eventually(has(store, "db1:3306"))

        await asyncio.to_thread(nats_server.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(nats_server.restart)

        async def published() -> bool:
            try:
                await bus.publish_snapshot(FLEET[3])
            except Exception:
                return False
            return True

        await eventually(published, timeout=15)
        await eventually(has(store, "db9:3306"), timeout=15)


async def test_a_durable_consumer_lost_by_the_server_is_created_again(
    store: Store, nats_server: harness.NatsLike
) -> None:
    raw = await nats.connect(nats_server.url)
    try:
        async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
            await bus.publish_snapshot(FLEET[0])
            await eventually(has(store, "db1:3306"))
            await raw.jetstream().delete_consumer(
                SNAPSHOTS_STREAM, "orchestrator-topology-api-snapshots"
            )

            async def resubscribed() -> bool:
                return consumer.stats.resubscribes > 0

            await eventually(resubscribed)
            await bus.publish_snapshot(FLEET[3])
            await eventually(has(store, "db9:3306"))
    finally:
        await raw.close()


async def test_a_postgres_outage_fails_writes_then_they_resume(
    postgres_cluster: harness.PostgresLike, nats_server: harness.NatsLike
) -> None:
    store = await open_store("postgres", postgres_dsn=postgres_cluster.dsn)
    try:
        await writes_fail_then_resume(store, postgres_cluster, nats_server)
    finally:
        await store.close()


async def test_a_mariadb_outage_fails_writes_then_they_resume(
    mariadb_server: harness.MariadbLike, nats_server: harness.NatsLike
) -> None:
    with harness.MariadbDatabase(host=mariadb_server.host, port=mariadb_server.port) as database:
        store = await open_store("mysql", mysql=database.backend(read_timeout=3.0))
        try:
            await writes_fail_then_resume(store, mariadb_server, nats_server)
        finally:
            await store.close()


async def writes_fail_then_resume(
    store: Store, database: harness.Server, nats_server: harness.NatsLike
) -> None:
    """The database server killed: writes fail and the consumer retries; once it is back,
    what was published meanwhile is written."""
    async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
        await bus.publish_snapshot(FLEET[0])
        await eventually(has(store, "db1:3306"))

        await asyncio.to_thread(database.kill)
        with pytest.raises(StoreError):
            await store.write_batch(FLEET[1:2])
        await bus.publish_snapshot(FLEET[3])

        async def failed() -> bool:
            return consumer.stats.failed_writes > 0

        await eventually(failed)

        await asyncio.to_thread(database.restart)
        await eventually(has(store, "db1:3306", "db9:3306"), timeout=15)


async def test_an_intermediate_master_recovery_renames_nothing_and_downtimes_only_the_lost(
    store: Store, nats_server: harness.NatsLike
) -> None:
    """The cluster keeps its master: no succession, the failed intermediate master is not
    downtimed, and a downtime an operator gave the master (the moved replicas' new master)
    stays."""
    done = RecoveryData(
        recovery_id="im-1",
        cluster="db1:3306",
        cluster_alias="shop",
        analysis="DeadIntermediateMaster",
        failed="db2:3306",
        successor="db1:3306",
        repointed=("db3:3306",),
        lost={"db4:3306": "cannot follow"},
        started_at=NOW,
        ended_at=NOW + timedelta(seconds=1),
    )
    async with recovering(store, nats_server.url) as (_, publish_recovery):
        operator = Downtime(
            InstanceKey.parse("db1:3306"),
            "ops",
            "maintenance",
            datetime.now(UTC),
            datetime.now(UTC) + timedelta(hours=1),
        )
        await store.begin_downtime(operator)
        await publish_recovery(RecoveryPhase.COMPLETED, done)

        async def lost_downtimed() -> bool:  # the last thing the event does
            found = await store.downtimes(now=datetime.now(UTC))
            return any(str(d.key) == "db4:3306" for d in found)

        await eventually(lost_downtimed)
        assert await store.successions() == []
        downtimes = await store.downtimes(now=datetime.now(UTC))
        assert [(str(d.key), d.reason) for d in downtimes] == [
            ("db1:3306", "maintenance"),
            ("db4:3306", "lost-in-recovery"),
        ]


async def test_a_galera_relocation_without_successor_downtimes_its_lost_replicas(
    store: Store, nats_server: harness.NatsLike
) -> None:
    """A relocation names no successor (the replicas of a failed Galera node went to several
    peers): what it lost is downtimed all the same, and nothing is renamed."""
    done = RecoveryData(
        recovery_id="g-1",
        cluster="db1:3306",
        analysis="DeadMaster",
        failed="db2:3306",
        repointed=("db3:3306",),
        lost={"db4:3306": "no Galera node holds its GTIDs"},
        galera=True,
        started_at=NOW,
        ended_at=NOW + timedelta(seconds=1),
    )
    async with recovering(store, nats_server.url) as (_, publish_recovery):
        await publish_recovery(RecoveryPhase.COMPLETED, done)

        async def lost_downtimed() -> bool:  # the last thing the event does
            return bool(await store.downtimes(now=datetime.now(UTC)))

        await eventually(lost_downtimed)
        downtimes = await store.downtimes(now=datetime.now(UTC))
        assert [(str(d.key), d.reason) for d in downtimes] == [("db4:3306", "lost-in-recovery")]
        assert await store.successions() == []
        [record] = await store.recoveries()
        assert record.is_successful and record.successor_key is None


async def test_a_snapshot_from_the_future_does_not_pin_stale_state(
    store: Store, nats_server: harness.NatsLike
) -> None:
    """A discovery clock an hour ahead (or a forged time): its snapshot is taken as probed
    when the stream stored it, so the honest one published after it still wins; the skew is
    measured (issue 13 §5)."""
    now = datetime.now(UTC)
    ahead = snapshot("db1:3306", checked_at=now + timedelta(hours=1), version="10.11.5-MariaDB")
    honest = snapshot("db1:3306", checked_at=now + timedelta(seconds=1), version="10.11.6-MariaDB")
    async with publisher(nats_server.url) as bus, consuming(store, nats_server.url) as consumer:
        await bus.publish_snapshot(ahead)
        await eventually(has(store, "db1:3306"))
        assert consumer.stats.clock_skew_seconds > 3500
        stored = await store.get_instance(InstanceKey.parse("db1:3306"))
        assert stored is not None and stored.snapshot.probe.checked_at < now + timedelta(minutes=1)

        await asyncio.sleep(1.1)  # the honest probe comes after the stream stored the other
        await bus.publish_snapshot(honest)

        async def honest_one_stored() -> bool:
            node = await store.get_instance(InstanceKey.parse("db1:3306"))
            return node is not None and node.snapshot.version == "10.11.6-MariaDB"

        await eventually(honest_one_stored)
        assert abs(consumer.stats.clock_skew_seconds) < 5
