"""Schema version 4 (issue 10): the topology history of ``snapshot-topologies`` and the analysis
changelog of ``replication-analysis-changelog``, on SQLite, PostgreSQL and MariaDB; and the analysis
events the recovery worker publishes reaching the changelog over a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from pathlib import Path

import nats
import pytest

from orchestrator_api.store import Store, open_store
from orchestrator_api.store.consumer import StoreConsumer
from orchestrator_api.store.history import NO_PROBLEM
from orchestrator_recovery.publisher import EventPublisher
from orchestrator_shared.bus import Subjects
from orchestrator_shared.events import AnalysisEvent, AnalysisProblem
from orchestrator_shared.streams import events_stream_config
from tests import harness
from tests.integration.test_store import FLEET, NOW, k, snapshot
from tests.integration.test_store_consumer import eventually

pytestmark = pytest.mark.integration


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


async def changelog(store: Store) -> list[tuple[str, str, float]]:
    return [
        (str(c.key), c.analysis, (c.at - NOW).total_seconds())
        for c in await store.analysis_changelog()
    ]


async def test_snapshot_topologies_copies_every_master_once_per_second(store: Store) -> None:
    await store.write_batch(FLEET)
    assert await store.snapshot_topologies(at=NOW) == 4
    assert await store.snapshot_topologies(at=NOW + timedelta(milliseconds=400)) == 4
    assert len(await store.topology_history()) == 4  # the same second: nothing added
    await store.write_batch([snapshot("db3:3306", "db2:3306", checked_at=NOW)])
    await store.snapshot_topologies(at=NOW + timedelta(seconds=1))
    shop = await store.topology_history(cluster="db1:3306")
    assert [(e.key, e.master_key, (e.snapshot_at - NOW).seconds) for e in shop] == [
        (k("db1:3306"), None, 0),
        (k("db2:3306"), k("db1:3306"), 0),
        (k("db3:3306"), k("db1:3306"), 0),
        (k("db1:3306"), None, 1),
        (k("db2:3306"), k("db1:3306"), 1),
        (k("db3:3306"), k("db2:3306"), 1),  # moved below db2 in between
    ]
    assert {e.version for e in shop} == {"10.11.6-MariaDB"}
    assert [e.key for e in await store.topology_history(cluster="db9:3306")] == [k("db9:3306")] * 2


async def test_the_changelog_records_each_change_of_an_instance(store: Store) -> None:
    one, two = k("db1:3306"), k("db2:3306")
    assert await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(1)) == 1
    assert await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(1)) == 0  # again
    assert await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(2)) == 0
    changed = {one: "UnreachableMaster", two: "AllMasterReplicasNotReplicating"}
    assert await store.record_analysis("db1:3306", changed, at=at(3)) == 2
    assert (
        await store.record_analysis("db1:3306", {two: "AllMasterReplicasNotReplicating"}, at=at(4))
        == 1
    )
    assert await store.record_analysis("db1:3306", {}, at=at(5)) == 1  # db2 cleared
    assert await store.record_analysis("db1:3306", {}, at=at(6)) == 0
    # an older event delivered again after newer ones changes nothing
    assert await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(1.5)) == 0
    assert await changelog(store) == [
        ("db1:3306", "DeadMaster", 1),
        ("db1:3306", "UnreachableMaster", 3),
        ("db1:3306", NO_PROBLEM, 4),
        ("db2:3306", "AllMasterReplicasNotReplicating", 3),
        ("db2:3306", NO_PROBLEM, 5),
    ]


async def test_clusters_clear_only_their_own_instances(store: Store) -> None:
    one, nine = k("db1:3306"), k("db9:3306")
    await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(1))
    await store.record_analysis("db9:3306", {nine: "DeadMasterWithoutReplicas"}, at=at(1))
    assert await store.record_analysis("db9:3306", {}, at=at(2)) == 1
    # after a failover the old master appears under the new cluster's name with the same code:
    # its code did not change, so nothing is written
    assert await store.record_analysis("db2:3306", {one: "DeadMaster"}, at=at(3)) == 0
    assert await store.record_analysis("db1:3306", {}, at=at(4)) == 0  # no longer its problem
    assert await store.record_analysis("db2:3306", {}, at=at(5)) == 1
    assert await changelog(store) == [
        ("db1:3306", "DeadMaster", 1),
        ("db1:3306", NO_PROBLEM, 5),
        ("db9:3306", "DeadMasterWithoutReplicas", 1),
        ("db9:3306", NO_PROBLEM, 2),
    ]


async def test_purge_keeps_what_the_next_change_is_compared_with(store: Store) -> None:
    one, two = k("db1:3306"), k("db2:3306")
    await store.write_batch(FLEET)
    await store.record_analysis("db1:3306", {one: "DeadMaster", two: "UnreachableMaster"}, at=at(0))
    await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(10))  # db2 cleared
    await store.snapshot_topologies(at=at(0))
    await store.snapshot_topologies(at=at(30))
    removed = await store.purge(now=at(3600), history_before=at(20))
    assert removed >= 4 + 2  # one snapshot, db2's two changes (db1's DeadMaster is kept)
    assert await changelog(store) == [("db1:3306", "DeadMaster", 0)]
    assert {(e.snapshot_at - NOW).seconds for e in await store.topology_history()} == {30}
    # still open: the same code again is no change
    assert await store.record_analysis("db1:3306", {one: "DeadMaster"}, at=at(40)) == 0


async def test_analysis_events_from_the_worker_become_the_changelog(
    tmp_path: Path, nats_server: harness.NatsLike
) -> None:
    subjects = Subjects()
    store = await open_store("sqlite", sqlite_path=tmp_path / "store.sqlite3")
    nc = await nats.connect(nats_server.url)
    consumer = StoreConsumer(store, subjects, fetch_wait_seconds=0.2, retry_seconds=0.2)
    try:
        await nc.jetstream().add_stream(events_stream_config(subjects, retention_days=1))
        publisher = EventPublisher(nc, subjects)
        publishing = asyncio.create_task(publisher.run())
        await consumer.connect([nats_server.url])
        consuming = asyncio.create_task(consumer.run())
        problem = AnalysisProblem(instance="db1:3306", code="DeadMaster", is_actionable=True)
        for event in (
            AnalysisEvent(cluster="db1:3306", problems=(problem,), at=NOW),
            AnalysisEvent(cluster="db1:3306", problems=(), at=NOW + timedelta(seconds=2)),
        ):
            await publisher.analysis(event)
        # a malformed one is skipped; the stream goes on
        await nc.jetstream().publish(f"{subjects.root}.analysis.x", b'{"schema": 1}')
        await publisher.analysis(
            AnalysisEvent(
                cluster="db9:3306",
                problems=(AnalysisProblem(instance="db9:3306", code="DeadMasterWithoutReplicas"),),
                at=NOW + timedelta(seconds=3),
            )
        )

        async def three() -> bool:
            return len(await store.analysis_changelog()) == 3

        await eventually(three, timeout=20)
        assert await changelog(store) == [
            ("db1:3306", "DeadMaster", 0),
            ("db1:3306", NO_PROBLEM, 2),
            ("db9:3306", "DeadMasterWithoutReplicas", 3),
        ]
        assert consumer.stats.messages_skipped == 1
        for task in (publishing, consuming):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await consumer.close()
        await nc.close()
        await store.close()
