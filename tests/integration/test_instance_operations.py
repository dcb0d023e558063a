"""Instance and replication control (issue 6): ``start-replica``, ``stop-replica``,
``restart-replica``, ``set-read-only``, ``set-writeable``.

The handlers of orchestrator_recovery.operations.instance run against a real 4-node MariaDB sandbox
(node 0 the master, 1..3 its replicas) and each test checks what the servers say afterwards.
Then the API routes and the CLI run over a real nats-server, answered by the real
:class:`CommandResponder` wired with these handlers, and a SQLite store holding the sandbox.

One sandbox serves the module; every test leaves it as built (replicas running and read-only,
the master writable), which the ``clean`` fixture checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.http.context import ApiContext
from orchestrator_cli.sandbox import Sandbox
from orchestrator_recovery.operations.instance import instance_operations
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from tests.harness.ports import free_port
from tests.integration.api_support import (
    ACCESS,
    Recorder,
    path,
    replica_row,
    responder_api,
    serve_cli,
    star_snapshots,
)
from tests.integration.test_store import snapshot
from tests.unit.test_wire_samples import load_sample

pytestmark = pytest.mark.integration

REPLICA, MASTER = 1, 0


def threads(sandbox: Sandbox, index: int) -> tuple[str, str] | None:
    row = replica_row(sandbox, index)
    if not row:
        return None
    return str(row["Slave_IO_Running"]), str(row["Slave_SQL_Running"])


def read_only(sandbox: Sandbox, index: int) -> bool:
    return int(sandbox.execute(index, "SELECT @@global.read_only")[0][0]) == 1


def variable(sandbox: Sandbox, index: int, name: str) -> int:
    return int(sandbox.execute(index, f"SELECT @@global.{name}")[0][0])


def binlog_file(sandbox: Sandbox, index: int) -> str:
    return str(sandbox.execute(index, "SHOW MASTER STATUS")[0][0])


def as_built(sandbox: Sandbox) -> list[tuple[bool, tuple[str, str] | None]]:
    return [(read_only(sandbox, i), threads(sandbox, i)) for i in range(4)]


BUILT = [(False, None)] + [(True, ("Yes", "Yes"))] * 3


async def running(sandbox: Sandbox, index: int) -> None:
    async with asyncio.timeout(10):
        while threads(sandbox, index) != ("Yes", "Yes"):
            await asyncio.sleep(0.05)


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The sandbox as built before the test, and put back (then checked) after it."""
    for index in range(1, 4):
        await running(sandbox, index)
    assert as_built(sandbox) == BUILT
    yield sandbox
    sandbox.execute(MASTER, "SET GLOBAL read_only = 0")
    for index in range(4):
        sandbox.execute(index, "SET GLOBAL rpl_semi_sync_master_enabled = 0")
        sandbox.execute(index, "SET GLOBAL rpl_semi_sync_slave_enabled = 0")
    for index in range(1, 4):
        sandbox.execute(index, "SET GLOBAL read_only = 1")
        sandbox.execute(index, "START SLAVE")
        await running(sandbox, index)


def handlers(recorder: Recorder) -> dict[str, Handler]:
    return instance_operations(
        access=ACCESS, guard=recorder.guard, audit=recorder.audit, worker_id="w-test"
    )


def request(operation: str, sandbox: Sandbox, index: int) -> CommandRequest:
    return CommandRequest(
        operation=operation,
        instance=sandbox.node(index).key,
        cluster=sandbox.node(MASTER).key,
        requested_by="alice",
    )


# --- the handlers against the sandbox -------------------------------------------------------


async def test_stop_start_restart_replica(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    ops = handlers(recorder)
    stopped = await ops["stop-replica"](request("stop-replica", sandbox, REPLICA))
    assert stopped.ok and stopped.message == f"Replica stopped: {sandbox.node(1).key}"
    assert threads(sandbox, REPLICA) == ("No", "No")
    assert stopped.details["Slave_IO_Running"] is False
    assert stopped.details["ReplicationSQLThreadState"] == 0
    assert stopped.details["Key"] == {"Hostname": "127.0.0.1", "Port": sandbox.node(1).port}
    assert threads(sandbox, 2) == ("Yes", "Yes")  # only the one asked for

    again = await ops["stop-replica"](request("stop-replica", sandbox, REPLICA))
    assert again.ok  # redundant, as in orchestrator

    started = await ops["start-replica"](request("start-replica", sandbox, REPLICA))
    assert started.ok and started.message == f"Replica started: {sandbox.node(1).key}"
    assert threads(sandbox, REPLICA) == ("Yes", "Yes")
    assert started.details["ReplicationIOThreadState"] == 1
    assert started.details["Slave_SQL_Running"] is True

    sandbox.execute(REPLICA, "STOP SLAVE SQL_THREAD")
    restarted = await ops["restart-replica"](request("restart-replica", sandbox, REPLICA))
    assert restarted.ok and restarted.message == f"Replica restarted: {sandbox.node(1).key}"
    assert threads(sandbox, REPLICA) == ("Yes", "Yes")
    assert recorder.guards == 5  # once before each statement: 2 stops, 1 start, stop + start
    assert [(e.type, e.user, e.ok, e.key) for e in recorder.audits] == [
        ("stop-replica", "alice", True, sandbox.node(1).key),
        ("stop-replica", "alice", True, sandbox.node(1).key),
        ("start-replica", "alice", True, sandbox.node(1).key),
        ("restart-replica", "alice", True, sandbox.node(1).key),
    ]
    assert recorder.audits[0].message == f"stopped replication on {sandbox.node(1).key}"
    assert recorder.audits[0].cluster == sandbox.node(MASTER).key


async def test_set_read_only_and_writeable(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    ops = handlers(recorder)
    on = await ops["set-read-only"](request("set-read-only", sandbox, MASTER))
    assert on.ok and on.message == "Server set as read-only"
    assert read_only(sandbox, MASTER) is True
    assert on.details["ReadOnly"] is True
    assert on.details["ReplicationIOThreadState"] == -1  # the master is no replica
    off = await ops["set-writeable"](request("set-writeable", sandbox, MASTER))
    assert off.ok and off.message == "Server set as writeable"
    assert read_only(sandbox, MASTER) is False
    assert off.details["ReadOnly"] is False
    # orchestrator allows a writeable replica; replication keeps running
    replica = await ops["set-writeable"](request("set-writeable", sandbox, 2))
    assert replica.ok and read_only(sandbox, 2) is False
    assert threads(sandbox, 2) == ("Yes", "Yes")
    assert [e.type for e in recorder.audits] == ["set-read-only", "set-writeable"] * 1 + [
        "set-writeable"
    ]


@pytest.mark.parametrize(
    "operation", ["stop-replica", "restart-replica", "set-read-only", "set-writeable"]
)
async def test_a_lost_lease_changes_nothing(clean: Sandbox, operation: str) -> None:
    sandbox, recorder = clean, Recorder([], fail_at=1)
    index = MASTER if operation == "set-read-only" else REPLICA
    with pytest.raises(LeaseLost):
        await handlers(recorder)[operation](request(operation, sandbox, index))
    assert as_built(sandbox) == BUILT
    assert recorder.audits == []


async def test_restart_that_loses_its_lease_after_stop_says_exactly_what_it_left(
    clean: Sandbox,
) -> None:
    sandbox, recorder = clean, Recorder([], fail_at=2)
    with pytest.raises(LeaseLost, match=r"STOP SLAVE done.*replication left stopped"):
        await handlers(recorder)["restart-replica"](request("restart-replica", sandbox, REPLICA))
    assert threads(sandbox, REPLICA) == ("No", "No")  # no statement after the lease was lost
    assert [(e.type, e.ok) for e in recorder.audits] == [("restart-replica", False)]


@pytest.mark.parametrize("operation", ["stop-replica", "start-replica", "restart-replica"])
async def test_replication_operations_on_a_master_are_refused(
    clean: Sandbox, operation: str
) -> None:
    recorder = Recorder([])
    with pytest.raises(OperationRefused, match=r"127\.0\.0\.1:\d+ is not a replica"):
        await handlers(recorder)[operation](request(operation, clean, MASTER))
    assert as_built(clean) == BUILT
    assert recorder.guards == 0
    assert recorder.audits == []


async def test_unreachable_or_bad_instance_is_refused(clean: Sandbox) -> None:
    recorder = Recorder([])
    ops = handlers(recorder)
    nowhere = CommandRequest(operation="set-read-only", instance=f"127.0.0.1:{free_port()}")
    with pytest.raises(OperationRefused, match=r"cannot read 127\.0\.0\.1:\d+"):
        await ops["set-read-only"](nowhere)
    with pytest.raises(OperationRefused, match="no instance given"):
        await ops["stop-replica"](CommandRequest(operation="stop-replica"))
    with pytest.raises(OperationRefused, match="bad instance"):
        await ops["stop-replica"](CommandRequest(operation="stop-replica", instance="a:b:c"))
    assert recorder.guards == 0


async def test_semi_sync_master_and_replica(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    ops = handlers(recorder)
    on = await ops["enable-semi-sync-master"](request("enable-semi-sync-master", sandbox, MASTER))
    assert on.ok and on.message == "master semi-sync set to true"
    assert variable(sandbox, MASTER, "rpl_semi_sync_master_enabled") == 1
    assert on.details["SemiSyncMasterEnabled"] is True
    off = await ops["disable-semi-sync-master"](
        request("disable-semi-sync-master", sandbox, MASTER)
    )
    assert off.message == "master semi-sync set to false"
    assert variable(sandbox, MASTER, "rpl_semi_sync_master_enabled") == 0

    guards = recorder.guards
    replica = await ops["enable-semi-sync-replica"](
        request("enable-semi-sync-replica", sandbox, REPLICA)
    )
    assert replica.ok and replica.message == "replica semi-sync set to true"
    assert variable(sandbox, REPLICA, "rpl_semi_sync_slave_enabled") == 1
    assert replica.details["SemiSyncReplicaEnabled"] is True
    assert recorder.guards - guards == 3  # SET, then the IO thread restarted so it takes effect
    await running(sandbox, REPLICA)
    await ops["disable-semi-sync-replica"](request("disable-semi-sync-replica", sandbox, REPLICA))
    assert variable(sandbox, REPLICA, "rpl_semi_sync_slave_enabled") == 0
    assert [e.type for e in recorder.audits] == [
        "enable-semi-sync-master",
        "disable-semi-sync-master",
        "enable-semi-sync-replica",
        "disable-semi-sync-replica",
    ]


async def test_semi_sync_replica_losing_its_lease_mid_way_reports_it(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([], fail_at=3)  # after SET and STOP SLAVE IO_THREAD
    with pytest.raises(LeaseLost, match=r"IO_THREAD done.*replication left stopped"):
        await handlers(recorder)["enable-semi-sync-replica"](
            request("enable-semi-sync-replica", sandbox, REPLICA)
        )
    assert variable(sandbox, REPLICA, "rpl_semi_sync_slave_enabled") == 1
    assert threads(sandbox, REPLICA) == ("No", "Yes")
    assert [(e.type, e.ok) for e in recorder.audits] == [("enable-semi-sync-replica", False)]


async def test_flush_binary_logs(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder([])
    before = binlog_file(sandbox, REPLICA)
    flushed = await handlers(recorder)["flush-binary-logs"](
        request("flush-binary-logs", sandbox, REPLICA)
    )
    assert flushed.ok
    assert flushed.message == f"Binary logs flushed on: {sandbox.node(REPLICA).key}"
    after = binlog_file(sandbox, REPLICA)
    assert after != before
    assert flushed.details["SelfBinlogCoordinates"]["LogFile"] == after
    assert threads(sandbox, REPLICA) == ("Yes", "Yes")


# --- the routes and the CLI, over NATS, answered by the real responder -----------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    context: ApiContext
    recorder: Recorder
    sandbox: Sandbox
    unreachable: str
    stop_worker: Callable[[], Awaitable[None]]


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    unreachable = f"127.0.0.1:{free_port()}"
    recorder = Recorder([])
    operations = handlers(recorder)
    async with responder_api(nats_server.url, tmp_path, recorder.guard, operations) as harness:
        master = clean.node(MASTER).key
        await harness.store.write_batch([*star_snapshots(clean), snapshot(unreachable, master)])
        yield Api(
            harness.client, harness.context, recorder, clean, unreachable, harness.stop_worker
        )


async def test_routes_answer_orchestrators_envelope(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    sample = load_sample("set-read-only.json")
    answer = await client.get(f"/api/set-read-only/{path(sandbox, MASTER)}")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["Code"], body["Message"]) == ("OK", "Server set as read-only")
    assert set(sample["Details"]) <= set(body["Details"])  # /api/instance adds MariaDB GTID
    assert body["Details"]["Key"] == {"Hostname": "127.0.0.1", "Port": sandbox.node(0).port}
    assert body["Details"]["ReadOnly"] is True
    assert read_only(sandbox, MASTER)

    writeable = (await client.post(f"/api/set-writeable/{path(sandbox, MASTER)}")).json()
    assert writeable["Message"] == load_sample("set-writeable.json")["Message"]
    assert writeable["Details"]["ReadOnly"] is False
    assert not read_only(sandbox, MASTER)

    for route, message, running_after in [
        ("stop-slave", "Replica stopped", False),
        ("start-slave", "Replica started", True),
        ("stop-replica", "Replica stopped", False),
        ("restart-replica", "Replica restarted", True),
        ("restart-slave", "Replica restarted", True),
        ("start-replica", "Replica started", True),
    ]:
        reply = (await client.get(f"/api/{route}/{path(sandbox, REPLICA)}")).json()
        expected = f"{message}: {sandbox.node(REPLICA).key}"
        assert (reply["Code"], reply["Message"]) == ("OK", expected), route
        details = reply["Details"]
        assert details["Slave_IO_Running"] is running_after, route
        assert details["ReplicationSQLThreadRuning"] is running_after, route
        assert threads(sandbox, REPLICA) == (("Yes",) * 2 if running_after else ("No",) * 2)
    semi = (await client.get(f"/api/enable-semi-sync-master/{path(sandbox, MASTER)}")).json()
    assert semi["Message"] == "master semi-sync set to true"
    assert semi["Details"]["SemiSyncMasterEnabled"] is True
    flushed = (await client.get(f"/api/flush-binary-logs/{path(sandbox, MASTER)}")).json()
    assert flushed["Details"]["SelfBinlogCoordinates"]["LogFile"] == binlog_file(sandbox, MASTER)
    assert {e.user for e in api.recorder.audits} == {"anonymous"}
    assert len(api.recorder.audits) == 10


async def test_route_errors(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    refused = await client.post(f"/api/stop-replica/{path(sandbox, MASTER)}")
    assert refused.status_code == 409
    assert refused.json() == {
        "Code": "ERROR",
        "Message": f"stop-replica refused: {sandbox.node(0).key} is not a replica",
        "Details": None,
    }
    host, port = api.unreachable.split(":")
    unreachable = await client.post(f"/api/set-read-only/{host}/{port}")
    assert unreachable.status_code == 409
    assert f"cannot read {api.unreachable}" in unreachable.json()["Message"]
    assert (await client.post("/api/start-replica/127.0.0.1/x")).status_code == 400
    assert (await client.post("/api/start-replica/nowhere/3306")).status_code == 404
    api.recorder.fail_at = api.recorder.guards + 1
    lost = await client.post(f"/api/stop-replica/{path(sandbox, REPLICA)}")
    assert lost.status_code == 503
    assert "did not finish" in lost.json()["Message"]
    api.recorder.fail_at = None
    await api.stop_worker()
    nobody = await client.post(f"/api/set-read-only/{path(sandbox, MASTER)}")
    assert nobody.status_code == 503
    assert as_built(sandbox) == BUILT


async def test_cli_prints_the_instance_key(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = api.sandbox
    async with serve_cli(api.context, capsys) as cli:
        replica, master = sandbox.node(REPLICA).key, sandbox.node(MASTER).key
        assert await cli("-c", "stop-replica", "-i", replica) == (0, f"{replica}\n", "")
        assert threads(sandbox, REPLICA) == ("No", "No")
        assert await cli("-c", "start-replica", "-i", replica) == (0, f"{replica}\n", "")
        assert await cli("-c", "restart-replica", "-i", replica) == (0, f"{replica}\n", "")
        assert threads(sandbox, REPLICA) == ("Yes", "Yes")
        assert await cli("-c", "set-read-only", "-i", master) == (0, f"{master}\n", "")
        assert read_only(sandbox, MASTER)
        assert await cli("-c", "set-writeable", "-i", master) == (0, f"{master}\n", "")
        assert not read_only(sandbox, MASTER)
        code, out, err = await cli("-c", "stop-replica", "-i", master)
        assert (code, out) == (1, "")
        assert "is not a replica" in err
        assert (await cli("-c", "stop-replica"))[0] == 2
        for command in ("enable-semi-sync-master", "disable-semi-sync-master"):
            assert await cli("-c", command, "-i", master) == (0, f"{master}\n", "")
        for command in ("enable-semi-sync-replica", "disable-semi-sync-replica"):
            assert await cli("-c", command, "-i", replica) == (0, f"{replica}\n", "")
        assert variable(sandbox, REPLICA, "rpl_semi_sync_slave_enabled") == 0
        before = binlog_file(sandbox, MASTER)
        assert await cli("-c", "flush-binary-logs", "-i", master) == (0, f"{master}\n", "")
        assert binlog_file(sandbox, MASTER) != before
