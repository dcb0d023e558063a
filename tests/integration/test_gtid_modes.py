"""``enable-gtid`` / ``disable-gtid`` (issue 10) on a real 4-node MariaDB sandbox (node 0 the
master of 1, 2, 3): the replica switches between ``master_use_gtid=slave_pos`` and file:pos
replication at the position it executed, keeps its master and the state of its threads, and
loses or repeats nothing (the master's writes reach it: ``CHECKSUM TABLE`` matches; a repeated
row would stop its SQL thread on the primary key). Refusals change nothing. Then the routes and
``orchestrator -c`` over a real nats-server, answered by the real :class:`CommandResponder`
wired with ``instance_operations``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.errors import LeaseLost, OperationRefused
from tests.harness.ports import free_port
from tests.integration.api_support import (
    Recorder,
    checksum,
    link,
    path,
    replica_row,
    serve_cli,
    star_api,
)
from tests.integration.api_support import SandboxApi as Api
from tests.integration.test_instance_operations import handlers, request
from tests.integration.test_moves import MASTER, port, restore_star, same_data, settled, star

pytestmark = pytest.mark.integration


def mode(sandbox: Sandbox, index: int) -> str:
    return str(replica_row(sandbox, index)["Using_Gtid"])


def gtid_slave_pos(sandbox: Sandbox, index: int) -> str:
    return str(sandbox.execute(index, "SELECT @@global.gtid_slave_pos")[0][0])


def rows(sandbox: Sandbox, index: int) -> int:
    return int(sandbox.execute(index, "SELECT COUNT(*) FROM sandbox.t")[0][0])


async def identical(sandbox: Sandbox, index: int, note: str) -> None:
    """A write on the master reaches ``index``, which then has the master's rows exactly."""
    await same_data(sandbox, index, note)
    assert rows(sandbox, index) == rows(sandbox, MASTER)
    assert link(sandbox, index) is not None
    assert replica_row(sandbox, index)["Last_SQL_Errno"] == 0


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    restore_star(sandbox)
    await settled(sandbox, star(sandbox))
    for index in range(1, 4):
        await identical(sandbox, index, "put back")


async def test_disable_then_enable_keeps_the_replica_and_its_data(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    one = sandbox.node(1).key
    await identical(sandbox, 1, "before")
    off = await ops["disable-gtid"](request("disable-gtid", sandbox, 1))
    assert off.message == f"Disabled GTID on {one}"
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "No")
    details: dict[str, Any] = off.details
    assert (details["UsingMariaDBGTID"], details["UsingGtid"]) == (False, "No")
    assert details["Key"] == {"Hostname": "127.0.0.1", "Port": port(sandbox, 1)}
    assert details["MasterKey"] == {"Hostname": "127.0.0.1", "Port": port(sandbox, MASTER)}
    assert details["Slave_IO_Running"] is True
    for note in ("file:pos 1", "file:pos 2", "file:pos 3"):
        await identical(sandbox, 1, note)

    on = await ops["enable-gtid"](request("enable-gtid", sandbox, 1))
    assert on.message == f"Enabled GTID on {one}"
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    assert (on.details["UsingMariaDBGTID"], on.details["UsingGtid"]) == (True, "Slave_Pos")
    for note in ("gtid 1", "gtid 2"):
        await identical(sandbox, 1, note)
    assert recorder.guards == 6  # STOP, CHANGE MASTER, START, each way
    assert [(e.type, e.ok, e.user) for e in recorder.audits] == [
        ("disable-gtid", True, "alice"),
        ("enable-gtid", True, "alice"),
    ]
    assert "master_use_gtid=no, master_log_file=" in recorder.audits[0].message


async def test_the_threads_are_left_as_they_were(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    sandbox.execute(2, "STOP SLAVE IO_THREAD")
    sandbox.execute(3, "STOP SLAVE")
    for operation, expected in (("disable-gtid", "No"), ("enable-gtid", "Slave_Pos")):
        for index in (2, 3):
            reply = await ops[operation](request(operation, sandbox, index))
            assert reply.ok
            assert mode(sandbox, index) == expected
        assert link(sandbox, 2) == (port(sandbox, MASTER), "No", "Yes", expected)
        assert link(sandbox, 3) == (port(sandbox, MASTER), "No", "No", expected)
    sandbox.execute(2, "START SLAVE IO_THREAD")
    sandbox.execute(3, "START SLAVE")
    for index in (2, 3):
        await identical(sandbox, index, f"node {index} started again")


async def test_refusals_change_nothing(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    zero, one = sandbox.node(MASTER).key, sandbox.node(1).key
    cases = (
        ("enable-gtid", MASTER, f"instance is not a replica: {zero}"),
        ("disable-gtid", MASTER, f"instance is not a replica: {zero}"),
        ("enable-gtid", 1, f"{one} already uses GTID"),
    )
    for operation, index, reason in cases:
        with pytest.raises(OperationRefused, match=reason):
            await ops[operation](request(operation, sandbox, index))
    assert topology_now(sandbox) == star(sandbox)
    await ops["disable-gtid"](request("disable-gtid", sandbox, 1))
    guards = recorder.guards
    with pytest.raises(OperationRefused, match=f"{one} is not using GTID"):
        await ops["disable-gtid"](request("disable-gtid", sandbox, 1))
    assert mode(sandbox, 1) == "No"
    assert (recorder.guards, len(recorder.audits)) == (guards, 1)

    # a master that cannot answer where the replica is: refused, nothing sent
    nowhere = free_port()
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(
        3,
        f"CHANGE MASTER TO master_port={nowhere}, master_use_gtid=no, "
        "master_log_file='mariadb-bin.000001', master_log_pos=4",
    )
    with pytest.raises(OperationRefused, match=rf"cannot ask .*'s master 127.0.0.1:{nowhere}"):
        await ops["enable-gtid"](request("enable-gtid", sandbox, 3))
    assert link(sandbox, 3) == (nowhere, "No", "No", "No")
    assert (recorder.guards, len(recorder.audits)) == (guards, 1)


def topology_now(sandbox: Sandbox) -> list[Any]:
    return [link(sandbox, index) for index in range(4)]


async def test_a_stale_gtid_slave_pos_is_refused_before_anything_changes(clean: Sandbox) -> None:
    """A stopped file:pos replica whose gtid_slave_pos is not where it executed (set from a
    backup, or by hand): with GTID it would apply a transaction again. Refused, nothing changed.
    Once it replicates by file:pos again, MariaDB records where it is, and the switch is safe."""
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    await identical(sandbox, 2, "before")
    sandbox.execute(2, "STOP SLAVE")
    row = replica_row(sandbox, 2)
    right = gtid_slave_pos(sandbox, 2)
    domain, server, sequence = (int(part) for part in right.split(",")[0].split("-"))
    stale = f"{domain}-{server}-{sequence - 1}"
    sandbox.execute(
        2,
        f"CHANGE MASTER TO master_use_gtid=no, master_log_file='{row['Relay_Master_Log_File']}', "
        f"master_log_pos={int(row['Exec_Master_Log_Pos'])}",
    )
    sandbox.execute(2, f"SET GLOBAL gtid_slave_pos = '{stale}'")
    before = link(sandbox, 2)
    assert before == (port(sandbox, MASTER), "No", "No", "No")
    with pytest.raises(OperationRefused) as refused:
        await ops["enable-gtid"](request("enable-gtid", sandbox, 2))
    text = str(refused.value)
    assert f"which is GTID position {right} there, but its gtid_slave_pos is {stale}" in text
    assert "switching now would skip or repeat transactions" in text
    assert link(sandbox, 2) == before
    assert gtid_slave_pos(sandbox, 2) == stale
    assert (recorder.guards, recorder.audits) == (0, [])

    sandbox.execute(2, "START SLAVE")  # MariaDB records where a file:pos replica starts
    await identical(sandbox, 2, "replicating by file:pos again")
    assert (await ops["enable-gtid"](request("enable-gtid", sandbox, 2))).ok
    assert mode(sandbox, 2) == "Slave_Pos"
    await identical(sandbox, 2, "with GTID again")


async def test_a_lost_lease_sends_nothing_more(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder(fail_at=2)  # after STOP SLAVE, before CHANGE MASTER
    ops = handlers(recorder)
    with pytest.raises(LeaseLost, match=r"STOP SLAVE done, then: lease lost .*nothing more"):
        await ops["disable-gtid"](request("disable-gtid", sandbox, 1))
    assert link(sandbox, 1) == (port(sandbox, MASTER), "No", "No", "Slave_Pos")
    assert [(e.type, e.ok) for e in recorder.audits] == [("disable-gtid", False)]
    assert checksum(sandbox, 1) == checksum(sandbox, MASTER)


# --- the routes and the CLI, over NATS, answered by the real responder ------------------------


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    recorder = Recorder()
    async with star_api(nats_server.url, tmp_path, clean, recorder, handlers(recorder)) as api:
        yield api


async def test_routes_and_cli(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    client, sandbox = api.client, api.sandbox
    zero, one, two = (sandbox.node(i).key for i in range(3))
    off = await client.post(f"/api/disable-gtid/{path(sandbox, 1)}")
    assert off.status_code == 200, off.text
    body = off.json()
    assert (body["Code"], body["Message"]) == ("OK", f"Disabled GTID on {one}")
    assert body["Details"]["Key"] == {"Hostname": "127.0.0.1", "Port": port(sandbox, 1)}
    assert (body["Details"]["UsingMariaDBGTID"], body["Details"]["UsingGtid"]) == (False, "No")
    assert "ReadOnly" in body["Details"]  # the instance JSON
    on = (await client.get(f"/api/enable-gtid/{path(sandbox, 1)}")).json()
    assert (on["Message"], on["Details"]["UsingMariaDBGTID"]) == (f"Enabled GTID on {one}", True)
    await identical(sandbox, 1, "after the routes")

    refused = await client.post(f"/api/enable-gtid/{path(sandbox, MASTER)}")
    assert refused.status_code == 409
    assert refused.json()["Message"] == f"enable-gtid refused: instance is not a replica: {zero}"
    assert (await client.post("/api/disable-gtid/127.0.0.1/x")).status_code == 400
    assert (await client.post("/api/disable-gtid/nowhere/3306")).status_code == 404
    assert topology_now(sandbox) == star(sandbox)

    async with serve_cli(api.context, capsys) as cli:
        assert await cli("-c", "disable-gtid", "-i", two) == (0, f"{two}\n", "")
        assert mode(sandbox, 2) == "No"
        await identical(sandbox, 2, "file:pos through the CLI")
        code, out, err = await cli("-c", "disable-gtid", "-i", two)
        assert (code, out, err) == (
            1,
            "",
            f"orchestrator: disable-gtid refused: {two} is not using GTID\n",
        )
        assert await cli("-c", "enable-gtid", "-i", two) == (0, f"{two}\n", "")
        assert mode(sandbox, 2) == "Slave_Pos"
        await identical(sandbox, 2, "GTID again through the CLI")
    assert [e.type for e in api.recorder.audits] == [
        "disable-gtid",
        "enable-gtid",
        "disable-gtid",
        "enable-gtid",
    ]
