"""The remaining instance and replication control operations (issue 6, part 2):
``stop-replica-nice``, ``reset-replica``, ``detach-``/``reattach-replica-master-host``,
``skip-query``, ``delay-replication``, ``purge-binary-logs``, ``locate-gtid-errant``,
``gtid-errant-reset-master`` and ``gtid-errant-inject-empty``.

The handlers run against a real 4-node MariaDB sandbox (node 0 the master, 1..3 its replicas,
``gtid_strict_mode`` on) and each test checks what the servers say afterwards; a refused
operation changes nothing. Then the routes and the CLI run over a real nats-server, answered by
the real :class:`CommandResponder` wired with ``instance_operations``.

One sandbox serves the module; the ``clean`` fixture checks it as built before each test
(replicas running below node 0, no delay, no errant GTID) and puts it back after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_cli.sandbox.config import change_master_sql
from orchestrator_recovery.operations import errant as operations_errant
from orchestrator_recovery.operations.instance import instance_operations
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from orchestrator_shared.gtid import MariaGtidPosition
from tests.harness.ports import free_port
from tests.integration.api_support import (
    ACCESS,
    Recorder,
    path,
    replica_row,
    serve_cli,
    star_api,
)
from tests.integration.api_support import SandboxApi as Api
from tests.integration.test_instance_operations import threads

pytestmark = pytest.mark.integration

MASTER = 0


def status(sandbox: Sandbox, index: int) -> dict[str, Any]:
    return replica_row(sandbox, index)


def value(sandbox: Sandbox, index: int, sql: str) -> str:
    return str(sandbox.execute(index, sql)[0][0])


def binlog_pos(sandbox: Sandbox, index: int) -> MariaGtidPosition:
    return MariaGtidPosition.parse(value(sandbox, index, "SELECT @@global.gtid_binlog_pos"))


def slave_pos(sandbox: Sandbox, index: int) -> str:
    return value(sandbox, index, "SELECT @@global.gtid_slave_pos")


def binary_logs(sandbox: Sandbox, index: int) -> list[str]:
    return [str(row[0]) for row in sandbox.execute(index, "SHOW BINARY LOGS")]


def as_built(sandbox: Sandbox) -> list[tuple[str, int, str, str, int]]:
    """Per replica: its master host and port, its threads, its delay."""
    shown = []
    for index in range(1, 4):
        row = status(sandbox, index)
        shown.append(
            (
                str(row.get("Master_Host")),
                int(row.get("Master_Port") or 0),
                str(row.get("Slave_IO_Running")),
                str(row.get("Slave_SQL_Running")),
                int(row.get("SQL_Delay") or 0),
            )
        )
    return shown


def built(sandbox: Sandbox) -> list[tuple[str, int, str, str, int]]:
    return [("127.0.0.1", sandbox.node(MASTER).port, "Yes", "Yes", 0)] * 3


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


async def caught_up(sandbox: Sandbox) -> None:
    master = binlog_pos(sandbox, MASTER)

    def applied(index: int) -> Callable[[], bool]:
        return lambda: MariaGtidPosition.parse(slave_pos(sandbox, index)).contains(master)

    for index in range(1, 4):
        await eventually(applied(index), f"node {index} applies {master}")


def no_errant(sandbox: Sandbox) -> bool:
    master = binlog_pos(sandbox, MASTER)
    return all(master.contains(binlog_pos(sandbox, i)) for i in range(1, 4))


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The sandbox as built before the test, and put back (then checked) after it."""
    await eventually(lambda: as_built(sandbox) == built(sandbox), "sandbox as built")
    assert no_errant(sandbox)
    yield sandbox
    for index in range(1, 4):
        row = status(sandbox, index)
        sandbox.execute(index, "STOP SLAVE")
        sandbox.execute(index, "SET GLOBAL sql_slave_skip_counter = 0")
        if (row.get("Master_Host"), row.get("Master_Port")) != (
            "127.0.0.1",
            sandbox.node(MASTER).port,
        ):
            sandbox.execute(index, change_master_sql(sandbox.node(MASTER).port))
        sandbox.execute(index, "CHANGE MASTER TO master_delay = 0")
        sandbox.execute(index, "START SLAVE")
    await eventually(lambda: as_built(sandbox) == built(sandbox), "sandbox put back")
    await caught_up(sandbox)


def handlers(recorder: Recorder, **kwargs: Any) -> Any:
    return instance_operations(
        access=ACCESS, guard=recorder.guard, audit=recorder.audit, worker_id="w-test", **kwargs
    )


def request(operation: str, sandbox: Sandbox, index: int, **arguments: str) -> CommandRequest:
    return CommandRequest(
        operation=operation,
        instance=sandbox.node(index).key,
        cluster=sandbox.node(MASTER).key,
        arguments=arguments,
        requested_by="alice",
    )


async def run(recorder: Recorder, operation: str, sandbox: Sandbox, index: int, **args: str) -> Any:
    return await handlers(recorder)[operation](request(operation, sandbox, index, **args))


# --- stop-replica-nice ------------------------------------------------------------------------


async def test_stop_replica_nice_applies_the_relay_log_then_stops(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    for n in range(20):
        sandbox.execute(MASTER, f"INSERT INTO sandbox.t (note) VALUES ('nice {n}')")
    reply = await run(recorder, "stop-replica-nice", sandbox, 1)
    key = sandbox.node(1).key
    assert reply.ok and reply.message == f"Replica stopped nicely: {key}"
    row = status(sandbox, 1)
    assert (row["Slave_IO_Running"], row["Slave_SQL_Running"]) == ("No", "No")
    received = MariaGtidPosition.parse(str(row["Gtid_IO_Pos"]))
    assert MariaGtidPosition.parse(slave_pos(sandbox, 1)).contains(received)
    assert reply.details["ReplicationIOThreadState"] == 0
    assert recorder.guards == 2  # STOP SLAVE IO_THREAD, then STOP SLAVE
    assert [(e.type, e.ok, e.user) for e in recorder.audits] == [
        ("stop-replica-nice", True, "alice")
    ]

    again = await run(recorder, "stop-replica-nice", sandbox, 1)  # nothing left to stop
    assert again.ok and recorder.guards == 2
    with pytest.raises(OperationRefused, match="instance is not a replica"):
        await run(recorder, "stop-replica-nice", sandbox, MASTER)


async def test_stop_replica_nice_that_cannot_catch_up_puts_the_threads_back(
    clean: Sandbox,
) -> None:
    sandbox, recorder = clean, Recorder([])
    node = sandbox.node(2)
    with NodeSession(node.key, unix_socket=node.socket) as blocker:
        blocker.rows("LOCK TABLES sandbox.t WRITE")  # the SQL thread waits on it
        sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('blocked')")
        await asyncio.sleep(0.3)
        operations = handlers(recorder, nice_wait=1.0)
        with pytest.raises(
            OperationRefused, match=r"did not apply the relay log within 1s.*undone"
        ):
            await operations["stop-replica-nice"](request("stop-replica-nice", sandbox, 2))
        assert threads(sandbox, 2) == ("Yes", "Yes")  # the IO thread was started again
        blocker.rows("UNLOCK TABLES")
    assert [(e.type, e.ok) for e in recorder.audits] == [("stop-replica-nice", False)]


# --- reset-replica ----------------------------------------------------------------------------


async def test_reset_replica_forgets_the_master_and_audits_it(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    position = slave_pos(sandbox, 3)
    reply = await run(recorder, "reset-replica", sandbox, 3)
    assert reply.ok and reply.message == f"Replica reset on {sandbox.node(3).key}"
    assert status(sandbox, 3) == {}
    assert reply.details["MasterKey"] == {"Hostname": "", "Port": 0}
    assert reply.details["ReplicationIOThreadState"] == -1
    assert slave_pos(sandbox, 3) == position  # what it applied stays known
    audit = recorder.audits[0]
    assert (audit.type, audit.ok) == ("reset-replica", True)
    assert f"it replicated from {sandbox.node(MASTER).key}" in audit.message
    assert f"gtid_slave_pos {position}" in audit.message
    with pytest.raises(OperationRefused, match="instance is not a replica"):
        await run(recorder, "reset-replica", sandbox, 3)  # nothing left to reset
    assert len(recorder.audits) == 1


# --- detach / reattach ------------------------------------------------------------------------


async def test_detach_and_reattach_master_host(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    master = sandbox.node(MASTER)
    detached = await run(recorder, "detach-replica-master-host", sandbox, 1)
    assert detached.message == f"Replica detached: {sandbox.node(1).key}"
    row = status(sandbox, 1)
    assert (row["Master_Host"], row["Master_Port"]) == ("//127.0.0.1", master.port)
    assert (row["Slave_IO_Running"], row["Slave_SQL_Running"], row["Using_Gtid"]) == (
        "No",
        "No",
        "Slave_Pos",
    )
    assert detached.details["MasterKey"] == {"Hostname": "//127.0.0.1", "Port": master.port}
    assert detached.details["IsDetachedMaster"] is True

    with pytest.raises(OperationRefused, match="instance already detached"):
        await run(recorder, "detach-replica-master-host", sandbox, 1)
    with pytest.raises(OperationRefused, match="does not seem to be detached"):
        await run(recorder, "reattach-replica-master-host", sandbox, 2)
    assert status(sandbox, 1)["Master_Host"] == "//127.0.0.1"

    sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('while detached')")
    reattached = await run(recorder, "reattach-replica-master-host", sandbox, 1)
    assert reattached.message == f"Replica reattached: {sandbox.node(1).key}"
    row = status(sandbox, 1)
    assert (row["Master_Host"], row["Using_Gtid"]) == ("127.0.0.1", "Slave_Pos")
    assert reattached.details["IsDetachedMaster"] is False
    await caught_up(sandbox)  # it resumes from its GTID position
    assert threads(sandbox, 1) == ("Yes", "Yes")
    assert [(e.type, e.ok) for e in recorder.audits] == [
        ("detach-replica-master-host", True),
        ("reattach-replica-master-host", True),
    ]
    assert f"into //127.0.0.1:{master.port}" in recorder.audits[0].message


async def test_detach_and_reattach_keep_file_positions(clean: Sandbox) -> None:
    """A file:pos replica keeps its executed coordinates through CHANGE MASTER (else it would
    start over from the master's first binary log)."""
    sandbox, recorder = clean, Recorder([])
    sandbox.execute(2, "STOP SLAVE")
    sandbox.execute(2, "CHANGE MASTER TO master_use_gtid = no")
    sandbox.execute(2, "START SLAVE")
    try:
        sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('file:pos 1')")
        await caught_up(sandbox)
        executed = (
            status(sandbox, 2)["Relay_Master_Log_File"],
            status(sandbox, 2)["Exec_Master_Log_Pos"],
        )
        await run(recorder, "detach-replica-master-host", sandbox, 2)
        row = status(sandbox, 2)
        assert (row["Master_Host"], row["Using_Gtid"]) == ("//127.0.0.1", "No")
        assert (row["Relay_Master_Log_File"], row["Exec_Master_Log_Pos"]) == executed
        sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('file:pos 2')")
        await run(recorder, "reattach-replica-master-host", sandbox, 2)
        await caught_up(sandbox)
        count = "SELECT COUNT(*) FROM sandbox.t"
        assert value(sandbox, 2, count) == value(sandbox, MASTER, count)
        assert threads(sandbox, 2) == ("Yes", "Yes")
    finally:
        sandbox.execute(2, "STOP SLAVE")
        sandbox.execute(2, "CHANGE MASTER TO master_use_gtid = slave_pos")
        sandbox.execute(2, "START SLAVE")


async def test_detach_with_a_lost_lease_changes_nothing(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([], fail_at=1)
    with pytest.raises(LeaseLost):
        await run(recorder, "detach-replica-master-host", sandbox, 1)
    assert as_built(sandbox) == built(sandbox)
    assert recorder.audits == []


# --- skip-query -------------------------------------------------------------------------------


async def test_skip_query_skips_exactly_the_failing_transaction(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    with pytest.raises(OperationRefused, match="Replication SQL thread is running"):
        await run(recorder, "skip-query", sandbox, 2)
    with pytest.raises(OperationRefused, match="instance is not a replica"):
        await run(recorder, "skip-query", sandbox, MASTER)
    sandbox.execute(2, "STOP SLAVE SQL_THREAD")
    with pytest.raises(OperationRefused, match="No SQL error"):
        await run(recorder, "skip-query", sandbox, 2)
    sandbox.execute(2, "START SLAVE SQL_THREAD")

    ids = int(value(sandbox, MASTER, "SELECT COALESCE(MAX(id), 0) FROM sandbox.t")) + 100
    node = sandbox.node(2)
    with NodeSession(node.key, unix_socket=node.socket) as session:
        session.rows("SET SESSION sql_log_bin = 0")
        session.rows(f"INSERT INTO sandbox.t (id, note) VALUES ({ids}, 'local')")
    sandbox.execute(MASTER, f"INSERT INTO sandbox.t (id, note) VALUES ({ids}, 'conflict')")
    failing = binlog_pos(sandbox, MASTER)
    sandbox.execute(MASTER, f"INSERT INTO sandbox.t (id, note) VALUES ({ids + 1}, 'next')")
    await eventually(lambda: int(status(sandbox, 2)["Last_SQL_Errno"]) == 1062, "the conflict")
    before = slave_pos(sandbox, 2)

    reply = await run(recorder, "skip-query", sandbox, 2)
    assert reply.ok and reply.message == f"Query skipped on {node.key}"
    await caught_up(sandbox)
    assert threads(sandbox, 2) == ("Yes", "Yes")
    assert MariaGtidPosition.parse(slave_pos(sandbox, 2)).contains(failing)
    rows = sandbox.execute(2, f"SELECT id, note FROM sandbox.t WHERE id >= {ids} ORDER BY id")
    assert [tuple(r) for r in rows] == [(ids, "local"), (ids + 1, "next")]
    assert value(sandbox, 2, "SELECT @@global.sql_slave_skip_counter") == "0"
    audit = recorder.audits[-1]
    assert (audit.type, audit.ok) == ("skip-query", True)
    assert f"gtid_slave_pos {before} ->" in audit.message and "1062" in audit.message
    # leave the row as the master has it, so the table is the same everywhere again
    with NodeSession(node.key, unix_socket=node.socket) as session:
        session.rows("SET SESSION sql_log_bin = 0")
        session.rows(f"DELETE FROM sandbox.t WHERE id = {ids}")
        session.rows(
            f"INSERT INTO sandbox.t SELECT * FROM (SELECT {ids} AS id, 'conflict' AS note, "
            f"created_at FROM sandbox.t WHERE id = {ids + 1}) AS copy"
        )


# --- delay-replication ------------------------------------------------------------------------


async def test_delay_replication_keeps_the_thread_state(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    reply = await run(recorder, "delay-replication", sandbox, 1, seconds="5")
    assert reply.ok and reply.message == f"Replication delayed: {sandbox.node(1).key}"
    assert reply.details == 5
    row = status(sandbox, 1)
    assert (row["SQL_Delay"], row["Slave_IO_Running"], row["Slave_SQL_Running"]) == (
        5,
        "Yes",
        "Yes",
    )
    assert recorder.guards == 3  # STOP SLAVE, CHANGE MASTER, START SLAVE

    sandbox.execute(1, "STOP SLAVE IO_THREAD")
    await run(recorder, "delay-replication", sandbox, 1, seconds="0")
    row = status(sandbox, 1)
    assert (row["SQL_Delay"], row["Slave_IO_Running"], row["Slave_SQL_Running"]) == (0, "No", "Yes")
    sandbox.execute(1, "START SLAVE IO_THREAD")

    for bad in ("-1", "x", "", "99999999999"):
        with pytest.raises(OperationRefused, match="Invalid value provided for seconds"):
            await run(recorder, "delay-replication", sandbox, 1, seconds=bad)
    with pytest.raises(OperationRefused, match="instance is not a replica"):
        await run(recorder, "delay-replication", sandbox, MASTER, seconds="3")
    assert [e.message for e in recorder.audits] == [
        f"set to 5 (was 0) on {sandbox.node(1).key}",
        f"set to 0 (was 5) on {sandbox.node(1).key}",
    ]


async def test_delay_losing_its_lease_after_stop_says_so(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([], fail_at=2)
    with pytest.raises(LeaseLost, match=r"STOP SLAVE done, then: .*nothing more was sent"):
        await run(recorder, "delay-replication", sandbox, 1, seconds="5")
    assert threads(sandbox, 1) == ("No", "No")
    assert int(status(sandbox, 1)["SQL_Delay"]) == 0
    assert [(e.type, e.ok) for e in recorder.audits] == [("delay-replication", False)]


# --- purge-binary-logs ------------------------------------------------------------------------


async def test_purge_binary_logs_checks_what_replicas_need(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    replicas = ",".join(sandbox.node(i).key for i in range(1, 4))
    sandbox.execute(1, "STOP SLAVE")  # disconnected: not in the master's SHOW SLAVE HOSTS
    sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('purge 1')")
    sandbox.execute(MASTER, "FLUSH BINARY LOGS")
    sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('purge 2')")
    sandbox.execute(MASTER, "FLUSH BINARY LOGS")
    logs = binary_logs(sandbox, MASTER)
    with pytest.raises(OperationRefused, match=rf"replica {sandbox.node(1).key} has only applied"):
        await run(
            recorder, "purge-binary-logs", sandbox, MASTER, logFile="latest", replicas=replicas
        )
    with pytest.raises(OperationRefused, match=r"binary log mariadb-bin\.999999 not found"):
        await run(
            recorder,
            "purge-binary-logs",
            sandbox,
            MASTER,
            logFile="mariadb-bin.999999",
            force="true",
        )
    unreachable = f"127.0.0.1:{free_port()}"
    with pytest.raises(OperationRefused, match=rf"replica {unreachable} needs: cannot read it"):
        await run(
            recorder, "purge-binary-logs", sandbox, MASTER, logFile=logs[-2], replicas=unreachable
        )
    assert binary_logs(sandbox, MASTER) == logs and recorder.guards == 0

    sandbox.execute(1, "START SLAVE")
    await caught_up(sandbox)
    reply = await run(
        recorder, "purge-binary-logs", sandbox, MASTER, logFile=logs[-2], replicas=replicas
    )
    assert reply.ok and reply.message == f"Binary logs purged on: {sandbox.node(MASTER).key}"
    assert binary_logs(sandbox, MASTER) == logs[-2:]
    forced = await run(
        recorder,
        "purge-binary-logs",
        sandbox,
        MASTER,
        logFile="latest",
        force="true",
        replicas=unreachable,
    )
    assert forced.ok and binary_logs(sandbox, MASTER) == logs[-1:]
    assert reply.details["Key"] == {"Hostname": "127.0.0.1", "Port": sandbox.node(MASTER).port}
    assert [(e.type, e.ok) for e in recorder.audits] == [("purge-binary-logs", True)] * 2
    assert "forced, replicas not checked" in recorder.audits[1].message
    await caught_up(sandbox)
    assert as_built(sandbox) == built(sandbox)


# --- errant GTIDs -----------------------------------------------------------------------------


def errant_write(sandbox: Sandbox, index: int, name: str) -> None:
    """A transaction written on a replica itself: errant (root bypasses read_only)."""
    sandbox.execute(index, f"CREATE DATABASE {name}")


def drop_quietly(sandbox: Sandbox, index: int, name: str) -> None:
    node = sandbox.node(index)
    with NodeSession(node.key, unix_socket=node.socket) as session:
        session.rows("SET SESSION sql_log_bin = 0")
        session.rows(f"DROP DATABASE IF EXISTS {name}")


async def test_locate_errant_then_inject_empty_on_the_master(
    clean: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, recorder = clean, Recorder([])
    with pytest.raises(OperationRefused, match="no errant-gtid on"):
        await run(recorder, "locate-gtid-errant", sandbox, 3)
    with pytest.raises(OperationRefused, match=r"will not operate on .* no errant GTID is found"):
        await run(recorder, "gtid-errant-inject-empty", sandbox, 3)
    try:
        errant_write(sandbox, 3, "errant_a")
        sandbox.execute(3, "FLUSH BINARY LOGS")
        errant_write(sandbox, 3, "errant_b")
        errant_write(sandbox, 3, "errant_c")
        logs = binary_logs(sandbox, 3)
        located = await run(recorder, "locate-gtid-errant", sandbox, 3)
        assert located.message == "located errant GTID"
        assert located.details == logs[-2:]
        # the binary logs are read in pages (FROM the last page's end): the same answer two
        # events at a time; and an operation stops, saying so, past its bound of events read
        monkeypatch.setattr(operations_errant, "BINLOG_PAGE", 2)
        paged = await run(recorder, "locate-gtid-errant", sandbox, 3)
        assert paged.details == located.details
        monkeypatch.setattr(operations_errant, "MAX_BINLOG_EVENTS", 3)
        with pytest.raises(OperationRefused, match="stopped after reading 3 binary log events"):
            await run(recorder, "locate-gtid-errant", sandbox, 3)
        monkeypatch.undo()
        errant = binlog_pos(sandbox, 3)

        # another replica with errant transactions of its own in the same domain would stop on
        # the injected GTIDs (gtid_strict_mode): refused, nothing injected
        errant_write(sandbox, 2, "errant_d")
        master_before = binlog_pos(sandbox, MASTER)
        with pytest.raises(OperationRefused, match=rf"{sandbox.node(2).key} is at .* would stop"):
            await run(recorder, "gtid-errant-inject-empty", sandbox, 3)
        assert binlog_pos(sandbox, MASTER) == master_before and recorder.guards == 0

        # replica 2 has no replicas: its errant GTID goes with a RESET MASTER
        applied = slave_pos(sandbox, 2)
        reset = await run(recorder, "gtid-errant-reset-master", sandbox, 2)
        assert reset.message == (
            f"Removed errant GTID on {sandbox.node(2).key} and issued a RESET MASTER"
        )
        assert reset.details["GtidErrant"] == ""
        assert slave_pos(sandbox, 2) == applied
        assert binlog_pos(sandbox, MASTER).contains(binlog_pos(sandbox, 2))
        assert threads(sandbox, 2) == ("Yes", "Yes")

        injected = await run(recorder, "gtid-errant-inject-empty", sandbox, 3)
        master = sandbox.node(MASTER).key
        assert injected.message == f"Have injected 3 transactions on cluster master {master}"
        assert injected.details["GtidErrant"] == ""
        assert binlog_pos(sandbox, MASTER).contains(errant)
        sandbox.execute(MASTER, "INSERT INTO sandbox.t (note) VALUES ('after injecting')")
        await caught_up(sandbox)
        for index in range(1, 4):
            assert threads(sandbox, index) == ("Yes", "Yes"), index
        assert no_errant(sandbox)
        with pytest.raises(OperationRefused, match="no errant-gtid on"):
            await run(recorder, "locate-gtid-errant", sandbox, 3)
        assert [(e.type, e.ok) for e in recorder.audits] == [
            ("gtid-errant-reset-master", True),
            ("gtid-errant-inject-empty", True),
        ]
    finally:
        for name in ("errant_a", "errant_b", "errant_c"):
            drop_quietly(sandbox, 3, name)
        drop_quietly(sandbox, 2, "errant_d")


async def test_reset_master_refuses_an_instance_with_replicas(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    with pytest.raises(OperationRefused, match="no errant GTID is found"):
        await run(recorder, "gtid-errant-reset-master", sandbox, MASTER)
    one, three = sandbox.node(1), sandbox.node(3)
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(3, change_master_sql(one.port))
    sandbox.execute(3, "START SLAVE")
    try:
        errant_write(sandbox, 1, "errant_e")
        await eventually(lambda: binlog_pos(sandbox, 3) == binlog_pos(sandbox, 1), "3 follows 1")
        before = binlog_pos(sandbox, 1)
        with pytest.raises(
            OperationRefused, match=rf"will not operate on {one.key} because it has 1 replicas"
        ):
            await run(recorder, "gtid-errant-reset-master", sandbox, 1)
        # stopped, it is no longer in SHOW SLAVE HOSTS: the replicas the store knows count too
        sandbox.execute(3, "STOP SLAVE")
        await eventually(lambda: not sandbox.execute(1, "SHOW SLAVE HOSTS"), "3 gone from 1")
        with pytest.raises(OperationRefused, match="because it has 1 replicas"):
            await run(recorder, "gtid-errant-reset-master", sandbox, 1, replicas=three.key)
        assert binlog_pos(sandbox, 1) == before and recorder.guards == 0

        # replica 3 back below the master, without the transaction it got from 1
        master_pos = str(binlog_pos(sandbox, MASTER))
        sandbox.execute(3, change_master_sql(sandbox.node(MASTER).port))
        sandbox.execute(3, "RESET MASTER")
        sandbox.execute(3, f"SET GLOBAL gtid_binlog_state = '{master_pos}'")
        sandbox.execute(3, f"SET GLOBAL gtid_slave_pos = '{master_pos}'")
        sandbox.execute(3, "START SLAVE")
        reset = await run(recorder, "gtid-errant-reset-master", sandbox, 1, replicas=three.key)
        assert reset.ok and reset.details["GtidErrant"] == ""
        assert binlog_pos(sandbox, MASTER).contains(binlog_pos(sandbox, 1))
        assert threads(sandbox, 1) == ("Yes", "Yes")
    finally:
        drop_quietly(sandbox, 1, "errant_e")
        drop_quietly(sandbox, 3, "errant_e")


# --- the routes and the CLI, over NATS, answered by the real responder -----------------------


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    recorder = Recorder([])
    async with star_api(nats_server.url, tmp_path, clean, recorder, handlers(recorder)) as api:
        yield api


async def test_routes_and_their_synonyms(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    replica, master = sandbox.node(1), sandbox.node(MASTER)

    nice = (await client.get(f"/api/stop-slave-nice/{path(sandbox, 1)}")).json()
    assert (nice["Code"], nice["Message"]) == ("OK", f"Replica stopped nicely: {replica.key}")
    assert nice["Details"]["Slave_IO_Running"] is False
    assert nice["Details"]["Key"] == {"Hostname": "127.0.0.1", "Port": replica.port}
    assert threads(sandbox, 1) == ("No", "No")
    sandbox.execute(1, "START SLAVE")

    detached = (await client.post(f"/api/detach-slave/{path(sandbox, 1)}")).json()
    assert detached["Message"] == f"Replica detached: {replica.key}"
    assert detached["Details"]["MasterKey"] == {"Hostname": "//127.0.0.1", "Port": master.port}
    assert detached["Details"]["IsDetachedMaster"] is True
    again = await client.post(f"/api/detach-replica-master-host/{path(sandbox, 1)}")
    assert again.status_code == 409
    assert "instance already detached" in again.json()["Message"]
    reattached = (await client.post(f"/api/reattach-replica/{path(sandbox, 1)}")).json()
    assert reattached["Message"] == f"Replica reattached: {replica.key}"
    assert reattached["Details"]["MasterKey"] == {"Hostname": "127.0.0.1", "Port": master.port}
    not_detached = await client.post(f"/api/reattach-slave-master-host/{path(sandbox, 1)}")
    assert not_detached.status_code == 409

    assert (await client.post(f"/api/delay-replication/{path(sandbox, 1)}/abc")).status_code == 400
    assert (await client.post(f"/api/delay-replication/{path(sandbox, 1)}/-3")).status_code == 400
    too_long = await client.post(f"/api/delay-replication/{path(sandbox, 1)}/2147483648")
    assert too_long.status_code == 400
    delayed = (await client.post(f"/api/delay-replication/{path(sandbox, 1)}/4")).json()
    assert (delayed["Message"], delayed["Details"]) == (f"Replication delayed: {replica.key}", 4)
    assert int(status(sandbox, 1)["SQL_Delay"]) == 4

    logs = binary_logs(sandbox, MASTER)
    missing = await client.post(f"/api/purge-binary-logs/{path(sandbox, MASTER)}/nothing.000001")
    assert missing.status_code == 409
    assert "binary log nothing.000001 not found" in missing.json()["Message"]
    purged = (
        await client.post(f"/api/purge-binary-logs/{path(sandbox, MASTER)}/{logs[-1]}")
    ).json()
    assert purged["Message"] == f"Binary logs purged on: {master.key}"
    assert purged["Details"]["Key"] == {"Hostname": "127.0.0.1", "Port": master.port}
    assert binary_logs(sandbox, MASTER) == logs[-1:]
    forced = await client.get(f"/api/purge-binary-logs/{path(sandbox, MASTER)}/latest?force=true")
    assert forced.status_code == 200

    for route, index, expected in [
        ("locate-gtid-errant", 2, "no errant-gtid on"),
        ("gtid-errant-reset-master", MASTER, "will not operate on"),
        ("gtid-errant-inject-empty", 2, "will not operate on"),
        ("skip-query", 2, "Replication SQL thread is running"),
    ]:
        refused = await client.post(f"/api/{route}/{path(sandbox, index)}")
        assert refused.status_code == 409, route
        assert expected in refused.json()["Message"], route
    assert (await client.get("/api/skip-query/127.0.0.1/x")).status_code == 400
    assert (await client.get("/api/reset-slave/nowhere/3306")).status_code == 404

    reset = (await client.get(f"/api/reset-slave/{path(sandbox, 3)}")).json()
    assert reset["Message"] == f"Replica reset on {sandbox.node(3).key}"
    assert status(sandbox, 3) == {}
    assert [e.type for e in api.recorder.audits] == [
        "stop-replica-nice",
        "detach-replica-master-host",
        "reattach-replica-master-host",
        "delay-replication",
        "purge-binary-logs",
        "purge-binary-logs",
        "reset-replica",
    ]
    assert {e.user for e in api.recorder.audits} == {"anonymous"}


async def test_cli_commands(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = api.sandbox
    async with serve_cli(api.context, capsys) as cli:
        replica, master = sandbox.node(1).key, sandbox.node(MASTER).key
        assert await cli("-c", "stop-slave-nice", "-i", replica) == (0, f"{replica}\n", "")
        assert threads(sandbox, 1) == ("No", "No")
        sandbox.execute(1, "START SLAVE")
        assert await cli("-c", "detach-slave", "-i", replica) == (0, f"{replica}\n", "")
        assert status(sandbox, 1)["Master_Host"] == "//127.0.0.1"
        assert await cli("-c", "reattach-replica-master-host", "-i", replica) == (
            0,
            f"{replica}\n",
            "",
        )
        assert status(sandbox, 1)["Master_Host"] == "127.0.0.1"
        assert await cli("-c", "delay-replication", "-i", replica, "--seconds", "3") == (
            0,
            "3\n",
            "",
        )
        assert int(status(sandbox, 1)["SQL_Delay"]) == 3
        code, _, err = await cli("-c", "delay-replication", "-i", replica)
        assert (code, err.strip()) == (2, "orchestrator: delay-replication needs --seconds")
        latest = binary_logs(sandbox, MASTER)[-1]
        assert await cli("-c", "purge-binary-logs", "-i", master, "--binlog", latest) == (
            0,
            f"{master}\n",
            "",
        )
        assert binary_logs(sandbox, MASTER) == [latest]
        assert (await cli("-c", "purge-binary-logs", "-i", master))[0] == 2
        code, out, err = await cli("-c", "locate-gtid-errant", "-i", replica)
        assert (code, out) == (1, "") and "no errant-gtid on" in err
        code, out, err = await cli("-c", "skip-query", "-i", replica)
        assert (code, out) == (1, "") and "Replication SQL thread is running" in err
        code, out, err = await cli("-c", "gtid-errant-inject-empty", "-i", replica)
        assert (code, out) == (1, "") and "no errant GTID is found" in err
