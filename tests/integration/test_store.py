"""The store's contract, run against every backend: SQLite in a temporary file, PostgreSQL and
MariaDB (the MySQL backend) in a fresh database. Each test states one behaviour the API relies
on."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator_api.store import (
    AuditEntry,
    Candidate,
    Downtime,
    FailureDetection,
    PromotionRule,
    RecoveryFilter,
    RecoveryRecord,
    RecoveryStep,
    Store,
    StoreError,
    Succession,
    open_store,
)
from orchestrator_api.store.schema import LATEST_VERSION
from orchestrator_api.store.sql import VIEW_RECHECK_SECONDS
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    ThreadState,
)
from tests.harness.mariadb import MariadbDatabase
from tests.harness.postgres import PostgresDatabase

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

Opener = Callable[[], Awaitable[Store]]


def snapshot(
    key: str,
    master: str | None = None,
    *,
    checked_at: datetime = NOW,
    ok: bool = True,
    alias: str = "",
    version: str = "10.11.6-MariaDB",
) -> InstanceSnapshot:
    """A snapshot of ``key``, replicating from ``master`` when given."""
    channels = ()
    if master is not None:
        channels = (
            ReplicationChannel(
                master_key=master,
                io_running="Yes",
                sql_running="Yes",
                io_thread=ThreadState.RUNNING,
                sql_thread=ThreadState.RUNNING,
                using_gtid="Slave_Pos",
            ),
        )
    return InstanceSnapshot(
        key=key,
        probe=ProbeFacts(
            ok=ok,
            checked_at=checked_at,
            attempted_at=checked_at,
            last_seen_at=checked_at if ok else None,
        ),
        server_id=InstanceKey.parse(key).port,
        version=version,
        read_only=master is not None,
        log_bin=True,
        channels=channels,
        suggested_cluster_alias=alias,
    )


def k(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


# One cluster "db1:3306" (alias "shop") with two replicas, one standalone "db9:3306".
FLEET = (
    snapshot("db1:3306", alias="shop"),
    snapshot("db2:3306", "db1:3306"),
    snapshot("db3:3306", "db1:3306"),
    snapshot("db9:3306"),
)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a store on this test's database (every call: one more client of the same one)."""
    if request.param == "sqlite":
        path = tmp_path / "orchestrator.sqlite3"

        async def open_sqlite() -> Store:
            return await open_store("sqlite", sqlite_path=path)

        return open_sqlite
    if request.param == "mysql":
        mariadb: MariadbDatabase = request.getfixturevalue("mariadb_db")

        async def open_mysql() -> Store:
            return await open_store("mysql", mysql=mariadb.backend())

        return open_mysql
    database: PostgresDatabase = request.getfixturevalue("postgres_db")

    async def open_postgres() -> Store:
        return await open_store("postgres", postgres_dsn=database.dsn)

    return open_postgres


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[Store]:
    opened = await opener()
    try:
        yield opened
    finally:
        await opened.close()


# --- schema -------------------------------------------------------------------------------


async def test_opening_again_and_concurrently_migrates_once(opener: Opener) -> None:
    stores = await asyncio.gather(*(opener() for _ in range(3)))
    try:
        again = await opener()
        stores.append(again)
        await stores[0].write_batch(FLEET[:1])
        assert await again.get_instance(k("db1:3306")) is not None
        assert (await again.global_recoveries()).enabled
    finally:
        for opened in stores:
            await opened.close()
    assert LATEST_VERSION >= 1


async def test_closing_twice_is_harmless_and_use_after_close_is_a_store_error(
    store: Store,
) -> None:
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        await store.write_batch(FLEET)


async def test_a_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.sqlite3"
    await (await open_store("sqlite", sqlite_path=path)).close()
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, LATEST_VERSION + 1))
        connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (999,))
    with pytest.raises(StoreError, match="newer"):
        await open_store("sqlite", sqlite_path=path)


async def test_unknown_backend_and_missing_dsn_are_store_errors() -> None:
    with pytest.raises(StoreError, match="BackendDB"):
        await open_store("oracle")
    with pytest.raises(StoreError, match="PostgreSQLDSN"):
        await open_store("postgres")
    with pytest.raises(StoreError, match="MySQLOrchestratorHost"):
        await open_store("mysql")


# --- instances and clusters ---------------------------------------------------------------


async def test_written_snapshots_are_read_back_with_their_cluster(store: Store) -> None:
    await store.write_batch(FLEET)
    await store.ping()

    replica = await store.get_instance(k("db2:3306"))
    assert replica is not None
    assert replica.snapshot == FLEET[1]
    assert (replica.cluster_name, replica.depth) == ("db1:3306", 1)
    master = await store.get_instance(k("db1:3306"))
    assert master is not None
    assert master.replicas == (k("db2:3306"), k("db3:3306"))
    assert await store.get_instance(k("nope:3306")) is None

    assert [node.key for node in await store.all_instances()] == [
        k("db1:3306"),
        k("db2:3306"),
        k("db3:3306"),
        k("db9:3306"),
    ]
    members = await store.cluster_instances("db1:3306")
    assert [str(node.key) for node in members] == ["db1:3306", "db2:3306", "db3:3306"]
    assert await store.cluster_instances("unknown:3306") == []
    assert set((await store.topology()).clusters) == {"db1:3306", "db9:3306"}


async def test_clusters_are_named_after_the_master_with_suggested_alias(store: Store) -> None:
    await store.write_batch(FLEET)
    summaries = {summary.name: summary for summary in await store.clusters()}
    assert set(summaries) == {"db1:3306", "db9:3306"}
    shop = summaries["db1:3306"]
    assert (shop.alias, shop.domain, shop.master, shop.count_instances) == (
        "shop",
        "",
        k("db1:3306"),
        3,
    )
    assert summaries["db9:3306"].alias == "db9:3306"
    assert await store.cluster("db9:3306") == summaries["db9:3306"]
    assert await store.cluster("nope:1") is None


async def test_alias_override_and_domain(store: Store) -> None:
    await store.write_batch(FLEET)
    await store.set_cluster_alias("db1:3306", "webshop")
    await store.set_cluster_domain("db1:3306", "shop.example.com")
    summary = await store.cluster("db1:3306")
    assert summary is not None
    assert (summary.alias, summary.domain) == ("webshop", "shop.example.com")
    assert await store.cluster_by_alias("webshop") == "db1:3306"
    assert await store.cluster_by_alias("shop") is None

    await store.set_cluster_alias("db1:3306", "")
    assert await store.cluster_by_alias("shop") == "db1:3306"


async def test_cluster_hints_resolve_by_name_alias_and_instance(store: Store) -> None:
    await store.write_batch(FLEET)
    assert await store.resolve_cluster("db1:3306") == "db1:3306"
    assert await store.resolve_cluster("shop") == "db1:3306"
    assert await store.resolve_cluster("db3:3306") == "db1:3306"
    assert await store.resolve_cluster("db3") == "db1:3306"
    assert await store.resolve_cluster("db9") == "db9:3306"
    assert await store.resolve_cluster("db4:3306") is None
    assert await store.resolve_cluster("no such thing!") is None


async def test_search_matches_keys_and_clusters(store: Store) -> None:
    await store.write_batch(FLEET)
    assert [str(node.key) for node in await store.search("DB9")] == ["db9:3306"]
    assert len(await store.search("shop")) == 3
    assert await store.search("zzz") == []
    assert await store.search(" ") == []


async def test_latest_snapshot_wins_and_an_older_one_is_ignored(store: Store) -> None:
    later = NOW + timedelta(seconds=5)
    await store.write_batch([snapshot("db1:3306", checked_at=later, ok=False)])
    await store.write_batch([snapshot("db1:3306", checked_at=NOW)])
    node = await store.get_instance(k("db1:3306"))
    assert node is not None
    assert not node.snapshot.probe.ok
    # Within one batch too, the newest probe wins whatever the order.
    await store.write_batch(
        [snapshot("db2:3306", checked_at=later, alias="b"), snapshot("db2:3306", alias="a")]
    )
    node = await store.get_instance(k("db2:3306"))
    assert node is not None
    assert node.snapshot.suggested_cluster_alias == "b"


async def test_a_replica_moving_to_another_master_moves_its_cluster(store: Store) -> None:
    await store.write_batch(FLEET)
    await store.write_batch([snapshot("db3:3306", "db9:3306", checked_at=NOW + timedelta(1))])
    moved = await store.get_instance(k("db3:3306"))
    assert moved is not None
    assert moved.cluster_name == "db9:3306"
    assert [s.count_instances for s in await store.clusters()] == [2, 2]


async def test_another_client_sees_writes_and_forgets(store: Store, opener: Opener) -> None:
    """Another process's writes show within VIEW_RECHECK_SECONDS (its own at once)."""
    other = await opener()

    async def settled() -> None:
        await asyncio.sleep(VIEW_RECHECK_SECONDS)

    try:
        assert await other.all_instances() == []
        await store.write_batch(FLEET)
        await settled()
        assert len(await other.all_instances()) == 4
        await store.forget_instance(k("db9:3306"))
        await settled()
        assert len(await other.all_instances()) == 3
        await store.set_cluster_alias("db1:3306", "renamed")
        await settled()
        assert await other.resolve_cluster("renamed") == "db1:3306"
        await store.begin_downtime(
            Downtime(k("db2:3306"), "alice", "upgrade", NOW, NOW + timedelta(hours=1))
        )
        await settled()
        assert (await other.view()).downtime_of(k("db2:3306"), now=NOW) is not None
    finally:
        await other.close()


async def test_forget_instance_and_cluster(store: Store) -> None:
    await store.write_batch(FLEET)
    assert await store.forget_instance(k("db9:3306"))
    assert not await store.forget_instance(k("db9:3306"))
    assert await store.get_instance(k("db9:3306")) is None
    assert await store.forget_cluster("db1:3306") == 3
    assert await store.all_instances() == []
    assert await store.clusters() == []
    # A snapshot probed before the forget (still on its way through the bus) does not undo it.
    await store.write_batch(FLEET[3:])
    assert await store.clusters() == []
    # A forgotten instance comes back with its next snapshot.
    await store.write_batch([snapshot("db9:3306", checked_at=datetime.now(UTC))])
    assert [s.name for s in await store.clusters()] == ["db9:3306"]


# --- downtime and candidates --------------------------------------------------------------


async def test_downtime_begin_end_and_expiry(store: Store) -> None:
    first = Downtime(k("db2:3306"), "alice", "upgrade", NOW, NOW + timedelta(minutes=10))
    second = Downtime(k("db3:3306"), "bob", "disk", NOW, NOW + timedelta(hours=1))
    await store.begin_downtime(first)
    await store.begin_downtime(second)
    assert await store.downtimes(now=NOW) == [first, second]
    assert await store.downtimes(now=NOW + timedelta(minutes=30)) == [second]

    extended = Downtime(k("db2:3306"), "carol", "longer", NOW, NOW + timedelta(hours=2))
    await store.begin_downtime(extended)
    assert await store.downtimes(now=NOW + timedelta(minutes=90)) == [extended]

    view = await store.view()
    assert view.downtime_of(k("db2:3306"), now=NOW) == extended
    assert view.downtime_of(k("db2:3306"), now=NOW + timedelta(hours=3)) is None

    assert await store.end_downtime(k("db2:3306"))
    assert not await store.end_downtime(k("db2:3306"))
    assert await store.downtimes(now=NOW) == [second]
    assert (await store.view()).downtime_of(k("db2:3306"), now=NOW) is None


async def test_candidates_register_list_and_expire(store: Store) -> None:
    prefer = Candidate(k("db2:3306"), PromotionRule.PREFER, NOW, NOW + timedelta(hours=1))
    never = Candidate(k("db3:3306"), PromotionRule.MUST_NOT, NOW, NOW + timedelta(minutes=5))
    await store.register_candidate(prefer)
    await store.register_candidate(never)
    assert await store.candidates(now=NOW) == [prefer, never]
    assert await store.candidates(now=NOW + timedelta(minutes=10)) == [prefer]

    changed = Candidate(k("db2:3306"), PromotionRule.PREFER_NOT, NOW, NOW + timedelta(hours=2))
    await store.register_candidate(changed)
    assert await store.candidates(now=NOW + timedelta(minutes=10)) == [changed]
    view = await store.view()
    assert view.candidate_of(k("db2:3306"), now=NOW) == changed
    assert view.candidate_of(k("db3:3306"), now=NOW + timedelta(minutes=10)) is None
    assert view.candidate_of(k("db9:3306"), now=NOW) is None


# --- audit, detections, recoveries --------------------------------------------------------


async def test_audit_log_is_newest_first_filtered_and_paged(store: Store) -> None:
    entries = [
        AuditEntry(
            at=NOW + timedelta(seconds=i),
            type="forget" if i % 2 else "begin-downtime",
            message=f"entry {i}",
            key=k(f"db{i % 3 + 1}:3306"),
            cluster="db1:3306" if i < 6 else "db9:3306",
            user="alice",
        )
        for i in range(8)
    ]
    await store.append_audit(entries[:5])
    await store.write_batch(FLEET, entries[5:])  # with snapshots, in the same transaction

    everything = await store.audit_log(limit=100)
    assert [entry.message for entry in everything] == [f"entry {i}" for i in range(7, -1, -1)]
    assert everything[0].id > everything[1].id > 0
    assert everything[-1] == replace(entries[0], id=everything[-1].id)

    page = await store.audit_log(limit=3, offset=3)
    assert [entry.message for entry in page] == ["entry 4", "entry 3", "entry 2"]
    by_key = await store.audit_log(key=k("db1:3306"))
    assert [entry.message for entry in by_key] == ["entry 6", "entry 3", "entry 0"]
    by_cluster = await store.audit_log(cluster="db9:3306", type="forget")
    assert [entry.message for entry in by_cluster] == ["entry 7"]
    keyless = AuditEntry(at=NOW, type="global", message="recoveries disabled")
    await store.append_audit([keyless])
    assert (await store.audit_log(limit=1))[0].key is None


async def test_failure_detections_recorded_and_filtered(store: Store) -> None:
    first = FailureDetection(
        key=k("db1:3306"),
        cluster="db1:3306",
        cluster_alias="shop",
        analysis_code="DeadMaster",
        detected_at=NOW,
        processing_node="recovery-1",
        analysis='{"Analysis": "DeadMaster"}',
    )
    second = FailureDetection(
        key=k("db9:3306"),
        cluster="db9:3306",
        analysis_code="UnreachableMaster",
        detected_at=NOW + timedelta(seconds=1),
        is_actionable=False,
    )
    first_id = await store.record_failure_detection(first)
    second_id = await store.record_failure_detection(second)
    assert second_id > first_id

    listed = await store.failure_detections()
    assert [d.id for d in listed] == [second_id, first_id]
    assert listed[1] == replace(first, id=first_id)
    assert [d.id for d in await store.failure_detections(cluster_alias="shop")] == [first_id]
    assert [d.id for d in await store.failure_detections(cluster="db9:3306")] == [second_id]
    assert [d.id for d in await store.failure_detections(id=first_id)] == [first_id]
    assert [d.id for d in await store.failure_detections(limit=1, offset=1)] == [first_id]


async def test_recoveries_upsert_by_uid_filter_and_acknowledge(store: Store) -> None:
    started = RecoveryRecord(
        uid="r-1",
        key=k("db1:3306"),
        cluster="db1:3306",
        cluster_alias="shop",
        analysis_code="DeadMaster",
        started_at=NOW,
        type="MasterRecovery",
        recovery_type="MasterRecoveryGTID",
        processing_node="recovery-1",
        fencing_token=42,
    )
    first_id = await store.record_recovery(started)
    completed = replace(
        started,
        ended_at=NOW + timedelta(seconds=2),
        is_active=False,
        is_successful=True,
        successor_key=k("db2:3306"),
        lost_replicas=(k("db3:3306"),),
        participating_instances=(k("db1:3306"), k("db2:3306")),
        all_errors=("db3:3306: could not repoint",),
    )
    assert await store.record_recovery(completed) == first_id
    other = RecoveryRecord(
        uid="r-2",
        key=k("db9:3306"),
        cluster="db9:3306",
        analysis_code="DeadMaster",
        started_at=NOW + timedelta(minutes=1),
    )
    second_id = await store.record_recovery(other)

    listed = await store.recoveries()
    assert [r.uid for r in listed] == ["r-2", "r-1"]
    assert listed[1] == replace(completed, id=first_id)
    assert [r.id for r in await store.recoveries(RecoveryFilter(cluster_alias="shop"))] == [
        first_id
    ]
    assert [r.uid for r in await store.recoveries(RecoveryFilter(id=second_id))] == ["r-2"]
    assert [r.uid for r in await store.recoveries(RecoveryFilter(uid="r-1"))] == ["r-1"]
    assert [r.uid for r in await store.recoveries(RecoveryFilter(key=k("db9:3306")))] == ["r-2"]
    assert [r.uid for r in await store.recoveries(RecoveryFilter(limit=1, offset=1))] == ["r-1"]

    acked = await store.acknowledge_recoveries(
        RecoveryFilter(cluster="db1:3306"), by="alice", comment="checked", at=NOW
    )
    assert acked == 1
    unacked = await store.recoveries(RecoveryFilter(unacknowledged_only=True))
    assert [r.uid for r in unacked] == ["r-2"]
    done = (await store.recoveries(RecoveryFilter(uid="r-1")))[0]
    assert (done.acknowledged, done.acknowledged_by, done.acknowledged_at) == (True, "alice", NOW)
    assert done.acknowledged_comment == "checked"
    assert (
        await store.acknowledge_recoveries(RecoveryFilter(), by="bob", comment="all", at=NOW) == 1
    )


async def test_global_recoveries_switch(store: Store) -> None:
    initial = await store.global_recoveries()
    assert (initial.enabled, initial.changed_at, initial.changed_by) == (True, None, "")
    await store.set_global_recoveries(False, by="alice", at=NOW)
    disabled = await store.global_recoveries()
    assert (disabled.enabled, disabled.changed_at, disabled.changed_by) == (False, NOW, "alice")
    await store.set_global_recoveries(True, by="bob", at=NOW)
    assert (await store.global_recoveries()).enabled


async def test_purge_removes_expired_rows_and_old_history(store: Store) -> None:
    await store.begin_downtime(Downtime(k("db2:3306"), "a", "r", NOW, NOW + timedelta(1)))
    await store.begin_downtime(Downtime(k("db3:3306"), "a", "r", NOW, NOW + timedelta(3)))
    await store.register_candidate(
        Candidate(k("db2:3306"), PromotionRule.PREFER, NOW, NOW + timedelta(1))
    )
    await store.append_audit([AuditEntry(at=NOW, type="t", message="old")])
    await store.append_audit([AuditEntry(at=NOW + timedelta(10), type="t", message="new")])
    await store.record_recovery(
        RecoveryRecord(
            uid="old", key=k("db1:3306"), cluster="c", analysis_code="x", started_at=NOW,
            is_active=False,
        )
    )  # fmt: skip
    await store.record_failure_detection(
        FailureDetection(k("db1:3306"), "c", "DeadMaster", detected_at=NOW)
    )
    later = NOW + timedelta(days=2)
    removed = await store.purge(now=later, history_before=NOW + timedelta(days=5))
    assert removed == 5
    assert [d.key for d in await store.downtimes(now=later)] == [k("db3:3306")]
    assert await store.candidates(now=NOW) == []
    assert [entry.message for entry in await store.audit_log()] == ["new"]
    assert await store.recoveries() == []
    assert await store.failure_detections() == []


async def test_successions_keep_the_latest_per_name_and_steps_their_order(store: Store) -> None:
    await store.write_batch(FLEET)
    first = Succession("db1:3306", k("db2:3306"), at=NOW, alias="shop", recovery_uid="r1")
    later = Succession(
        "db1:3306", k("db3:3306"), at=NOW + timedelta(1), alias="shop", recovery_uid="r2"
    )
    await store.record_succession(first)
    await store.record_succession(later)
    await store.record_succession(first)  # a redelivered older one changes nothing
    assert await store.successions() == [later]
    assert (await store.view()).successions == {"db1:3306": later}
    for n in range(3):
        await store.record_recovery_step(RecoveryStep("r2", NOW + timedelta(seconds=n), f"s{n}"))
    await store.record_recovery_step(RecoveryStep("r1", NOW + timedelta(days=9), "other"))
    steps = await store.recovery_steps("r2")
    assert [(s.message, s.at) for s in steps] == [
        (f"s{n}", NOW + timedelta(seconds=n)) for n in range(3)
    ]
    assert await store.recovery_steps("nosuch") == []
    # steps go with old history; successions stay (an old name resolves for as long as used)
    await store.purge(now=NOW, history_before=NOW + timedelta(days=5))
    assert await store.recovery_steps("r2") == []
    assert [s.message for s in await store.recovery_steps("r1")] == ["other"]
    assert await store.successions() == [later]
