"""GTID-aware moves (issue 6): ``relocate``, ``move-below-gtid``/``move-gtid``, ``move-up``,
``repoint``, ``can-replicate-from``, on a real MariaDB GTID sandbox (node 0 the master, the
others its replicas).

Each move is checked on the servers: the moved replica replicates from its new master with GTID
and has lost nothing (``CHECKSUM TABLE sandbox.t`` matches the master's after a write); each
refused move changes nothing. One sandbox serves the module (every test puts the star back);
the errant-transaction and killed-target tests break their sandbox and get their own.
Then the routes and the CLI run over a real nats-server, answered by the real
:class:`CommandResponder` wired with these handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.wiring import move_operations
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from tests.harness.ports import free_port
from tests.integration.api_support import (
    ACCESS,
    Link,
    Recorder,
    checksum,
    link,
    path,
    serve_cli,
    star_api,
)
from tests.integration.api_support import SandboxApi as Api
from tests.unit.test_wire_samples import load_sample

pytestmark = pytest.mark.integration

MASTER = 0


def topology(sandbox: Sandbox) -> list[Link]:
    return [link(sandbox, i) for i in range(len(sandbox.nodes))]


def port(sandbox: Sandbox, index: int) -> int:
    return sandbox.node(index).port


def star(sandbox: Sandbox) -> list[Link]:
    replicas = len(sandbox.nodes) - 1
    return [None] + [(port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")] * replicas


async def same_data(sandbox: Sandbox, index: int, note: str) -> None:
    """Write on the master; ``index`` gets it: its checksum of sandbox.t matches."""
    sandbox.execute(MASTER, f"INSERT INTO sandbox.t (note) VALUES ('{note}')")
    async with asyncio.timeout(15):
        while checksum(sandbox, index) != checksum(sandbox, MASTER):
            await asyncio.sleep(0.05)


async def settled(sandbox: Sandbox, expected: list[Link]) -> None:
    async with asyncio.timeout(15):
        while topology(sandbox) != expected:
            await asyncio.sleep(0.05)


def restore_star(sandbox: Sandbox) -> None:
    for index in range(1, len(sandbox.nodes)):
        sandbox.execute(index, "STOP SLAVE")
        sandbox.execute(
            index,
            f"CHANGE MASTER TO master_host='127.0.0.1', master_port={port(sandbox, MASTER)}, "
            "master_use_gtid=slave_pos, master_delay=0",
        )
        sandbox.execute(index, "START SLAVE")


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    restore_star(sandbox)
    await settled(sandbox, star(sandbox))


def handlers(
    recorder: Recorder, *, verify: float = 10.0, credentials_query: str = ""
) -> dict[str, Handler]:
    return move_operations(
        access=ACCESS,
        guard=recorder.guard,
        audit=recorder.audit,
        worker_id="w-test",
        catch_up=1.0,
        verify=verify,
        credentials_query=credentials_query,
    )


def request(
    operation: str,
    sandbox: Sandbox,
    index: int,
    below: int | None = None,
    **arguments: str,
) -> CommandRequest:
    return CommandRequest(
        operation=operation,
        instance=sandbox.node(index).key,
        destination="" if below is None else sandbox.node(below).key,
        cluster=sandbox.node(MASTER).key,
        arguments=arguments,
        requested_by="alice",
    )


def key_json(sandbox: Sandbox, index: int) -> dict[str, Any]:
    return {"Hostname": "127.0.0.1", "Port": port(sandbox, index)}


# --- the handlers against the sandbox -------------------------------------------------------


async def test_relocate_below_a_sibling_and_back(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    moved = await ops["relocate"](request("relocate", sandbox, 1, below=2))
    assert moved.ok
    assert moved.message == f"Instance {sandbox.node(1).key} relocated below {sandbox.node(2).key}"
    assert moved.message.split()[2:4] == load_sample("relocate.json")["Message"].split()[2:4]
    assert moved.details["Key"] == key_json(sandbox, 1)
    assert moved.details["MasterKey"] == key_json(sandbox, 2)
    assert moved.details["Slave_IO_Running"] is True
    assert moved.details["UsingMariaDBGTID"] is True
    assert link(sandbox, 1) == (port(sandbox, 2), "Yes", "Yes", "Slave_Pos")
    await same_data(sandbox, 1, "after relocate")
    assert recorder.guards == 3  # STOP, CHANGE MASTER, START
    assert [(e.type, e.ok, e.user) for e in recorder.audits] == [("relocate", True, "alice")]

    back = await ops["move-gtid"](request("move-gtid", sandbox, 1, below=MASTER))
    assert back.message == (
        f"Instance {sandbox.node(1).key} moved below {sandbox.node(0).key} via GTID"
    )
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    await same_data(sandbox, 1, "after moving back")


async def test_move_up_in_a_chain_and_repoint(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    refused = "is not a replica: cannot move up"
    with pytest.raises(OperationRefused, match=refused):
        await ops["move-up"](request("move-up", sandbox, 3))
    await ops["move-below-gtid"](request("move-below-gtid", sandbox, 3, below=2))
    assert link(sandbox, 3) == (port(sandbox, 2), "Yes", "Yes", "Slave_Pos")
    up = await ops["move-up"](request("move-up", sandbox, 3))
    assert up.message == f"Instance {sandbox.node(3).key} moved up"
    assert up.message.endswith(load_sample("move-up.json")["Message"].split()[-1])
    assert up.details["MasterKey"] == key_json(sandbox, MASTER)
    assert link(sandbox, 3) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    await same_data(sandbox, 3, "after move-up")

    same = await ops["repoint"](request("repoint", sandbox, 3))  # to its current master
    assert same.message == f"Instance {sandbox.node(3).key} repointed below {sandbox.node(0).key}"
    repointed = await ops["repoint"](request("repoint", sandbox, 3, below=1))
    assert repointed.details["MasterKey"] == key_json(sandbox, 1)
    await same_data(sandbox, 3, "after repoint")
    assert [e.type for e in recorder.audits] == ["move-below-gtid", "move-up", "repoint", "repoint"]


async def test_impossible_moves_are_refused_and_change_nothing(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    with pytest.raises(OperationRefused, match="below itself"):
        await ops["relocate"](request("relocate", sandbox, 1, below=1))
    with pytest.raises(OperationRefused, match="cannot move it below its own replica"):
        await ops["relocate"](request("relocate", sandbox, MASTER, below=1))
    with pytest.raises(OperationRefused, match=r"cannot read 127\.0\.0\.1:\d+"):
        await ops["relocate"](
            CommandRequest(
                operation="relocate",
                instance=sandbox.node(1).key,
                destination=f"127.0.0.1:{free_port()}",
            )
        )
    with pytest.raises(OperationRefused, match="no destination given"):
        await ops["relocate"](request("relocate", sandbox, 1))
    assert topology(sandbox) == star(sandbox)
    assert recorder.guards == 0
    assert recorder.audits == []

    # a chain 0 -> 1 -> 2: 1 cannot go below 2, its own replica
    await ops["relocate"](request("relocate", sandbox, 2, below=1))
    guards = recorder.guards
    with pytest.raises(OperationRefused, match="cannot move it below its own replica"):
        await ops["relocate"](request("relocate", sandbox, 1, below=2))
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    assert recorder.guards == guards

    # a delayed target
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(3, "CHANGE MASTER TO master_delay=3600")
    sandbox.execute(3, "START SLAVE")
    with pytest.raises(OperationRefused, match=r"is delayed \(SQL_Delay 3600s\)"):
        await ops["relocate"](request("relocate", sandbox, 1, below=3))
    # a target that does not replicate
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(3, "CHANGE MASTER TO master_delay=0")
    with pytest.raises(OperationRefused, match="is not replicating"):
        await ops["relocate"](request("relocate", sandbox, 1, below=3))
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    assert recorder.guards == guards


async def test_can_replicate_from(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    yes = await ops["can-replicate-from"](request("can-replicate-from", sandbox, 1, below=2))
    assert (yes.message, yes.details) == ("true", key_json(sandbox, 2))
    no = await ops["can-replicate-from"](request("can-replicate-from", sandbox, 1, below=1))
    assert no.message == "false"
    assert "below itself" in cast(dict[str, Any], no.details)["Reason"]
    assert recorder.guards == 0
    assert topology(sandbox) == star(sandbox)


async def test_a_lost_lease_changes_nothing_or_says_what_it_left(clean: Sandbox) -> None:
    sandbox = clean
    first = Recorder(fail_at=1)
    with pytest.raises(LeaseLost):
        await handlers(first)["relocate"](request("relocate", sandbox, 1, below=2))
    assert topology(sandbox) == star(sandbox)
    assert first.audits == []

    second = Recorder(fail_at=2)
    with pytest.raises(LeaseLost, match=r"STOP SLAVE done, then: lease lost"):
        await handlers(second)["relocate"](request("relocate", sandbox, 1, below=2))
    assert link(sandbox, 1) == (port(sandbox, MASTER), "No", "No", "Slave_Pos")  # not touched again
    assert [(e.type, e.ok) for e in second.audits] == [("relocate", False)]


# --- the sandboxes broken on purpose --------------------------------------------------------


async def test_a_target_missing_transactions_is_refused(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox, recorder = sandbox_factory(nodes=3), Recorder()
    await settled(sandbox, star(sandbox))
    # an errant transaction on replica 1 (root writes despite read_only)
    sandbox.execute(1, "INSERT INTO sandbox.t (note) VALUES ('errant')")
    ops = handlers(recorder)
    with pytest.raises(OperationRefused, match=r"has transactions the new master lacks.*1236"):
        await ops["relocate"](request("relocate", sandbox, 1, below=2))
    assert topology(sandbox) == star(sandbox)
    assert recorder.guards == 0
    assert recorder.audits == []
    no = await ops["can-replicate-from"](request("can-replicate-from", sandbox, 1, below=2))
    assert no.message == "false"
    assert "1236" in cast(dict[str, Any], no.details)["Reason"]


async def test_a_target_killed_mid_move_restores_the_previous_master(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(nodes=3)
    await settled(sandbox, star(sandbox))
    recorder = Recorder(on_guard={2: lambda: sandbox.kill(2)})  # before CHANGE MASTER
    with pytest.raises(OperationRefused) as refused:
        await handlers(recorder, verify=3.0)["relocate"](request("relocate", sandbox, 1, below=2))
    text = str(refused.value)
    assert f"moving {sandbox.node(1).key} failed" in text
    assert f"restored to replicate from {sandbox.node(0).key}" in text
    assert link(sandbox, 1) == (port(sandbox, MASTER), "Yes", "Yes", "Slave_Pos")
    await same_data(sandbox, 1, "after the failed move")
    assert [(e.type, e.ok) for e in recorder.audits] == [("relocate", False)]

    # the lease lost while restoring: nothing more is sent, and the error says where it stopped
    sandbox.start(2)
    await settled(sandbox, star(sandbox))
    lost = Recorder(on_guard={2: lambda: sandbox.kill(2)}, fail_at=4)  # 4: the restoring STOP
    with pytest.raises(LeaseLost) as stopped:
        await handlers(lost, verify=2.0)["relocate"](request("relocate", sandbox, 1, below=2))
    text = str(stopped.value)
    assert f"restoring {sandbox.node(0).key} as its master failed after nothing" in text
    assert "lease lost (test)" in text
    left = link(sandbox, 1)
    assert left is not None
    assert left[0] == port(sandbox, 2)  # left pointing at the killed target, as reported
    assert [(e.type, e.ok) for e in lost.audits] == [("relocate", False)]


# --- the routes and the CLI, over NATS, answered by the real responder -----------------------


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    recorder = Recorder()
    async with star_api(nats_server.url, tmp_path, clean, recorder, handlers(recorder)) as api:
        yield api


async def test_routes_answer_orchestrators_envelope(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    one, two = sandbox.node(1).key, sandbox.node(2).key
    sample = load_sample("move-below.json")
    answer = await client.get(f"/api/move-below-gtid/{path(sandbox, 1)}/{path(sandbox, 2)}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["Code"], body["Message"]) == ("OK", f"Instance {one} moved below {two} via GTID")
    assert set(sample["Details"]) <= set(body["Details"])  # the instance JSON
    assert body["Details"]["Key"] == key_json(sandbox, 1)
    assert body["Details"]["MasterKey"] == key_json(sandbox, 2)
    assert link(sandbox, 1) == (port(sandbox, 2), "Yes", "Yes", "Slave_Pos")

    up = (await client.post(f"/api/move-up/{path(sandbox, 1)}")).json()
    assert (up["Code"], up["Message"]) == ("OK", f"Instance {one} moved up")
    assert up["Details"]["MasterKey"] == key_json(sandbox, MASTER)
    gtid = (await client.post(f"/api/move-gtid/{path(sandbox, 1)}/{path(sandbox, 2)}")).json()
    assert gtid["Details"]["MasterKey"] == key_json(sandbox, 2)
    back = (await client.post(f"/api/repoint/{path(sandbox, 1)}/{path(sandbox, MASTER)}")).json()
    assert back["Message"] == f"Instance {one} repointed below {sandbox.node(MASTER).key}"
    same = (await client.post(f"/api/repoint/{path(sandbox, 1)}")).json()
    assert same["Details"]["MasterKey"] == key_json(sandbox, MASTER)
    await same_data(sandbox, 1, "after the routes")

    route = "/api/can-replicate-from"
    can = (await client.get(f"{route}/{path(sandbox, 1)}/{path(sandbox, 2)}")).json()
    assert can == {"Code": "OK", "Message": "true", "Details": key_json(sandbox, 2)}
    cannot = await client.get(f"{route}/{path(sandbox, MASTER)}/{path(sandbox, 1)}")
    assert cannot.json()["Message"] == "false"

    refused = await client.post(f"/api/move-below-gtid/{path(sandbox, MASTER)}/{path(sandbox, 1)}")
    assert refused.status_code == 409
    assert "cannot move it below its own replica" in refused.json()["Message"]
    assert (await client.post("/api/move-up/127.0.0.1/x")).status_code == 400
    assert (await client.post("/api/move-up/nowhere/3306")).status_code == 404
    assert {e.user for e in api.recorder.audits} == {"anonymous"}
    assert len(api.recorder.audits) == 5
    assert topology(sandbox) == star(sandbox)


async def test_cli_prints_instance_below_master(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = api.sandbox
    async with serve_cli(api.context, capsys) as cli:
        zero, one, two, three = (sandbox.node(i).key for i in range(4))
        assert await cli("-c", "relocate", "-i", three, "-d", two) == (0, f"{three}<{two}\n", "")
        assert link(sandbox, 3) == (port(sandbox, 2), "Yes", "Yes", "Slave_Pos")
        assert await cli("-c", "move-up", "-i", three) == (0, f"{three}<{zero}\n", "")
        assert await cli("-c", "move-gtid", "-i", one, "-d", three) == (0, f"{one}<{three}\n", "")
        assert await cli("-c", "repoint", "-i", one, "-d", zero) == (0, f"{one}<{zero}\n", "")
        assert await cli("-c", "repoint", "-i", one) == (0, f"{one}<{zero}\n", "")
        assert await cli("-c", "can-replicate-from", "-i", one, "-d", two) == (0, f"{two}\n", "")
        assert await cli("-c", "can-replicate-from", "-i", one, "-d", one) == (0, "", "")
        code, out, err = await cli("-c", "relocate", "-i", zero, "-d", one)
        assert (code, out) == (1, "")
        assert "cannot move it below its own replica" in err
        assert (await cli("-c", "relocate", "-i", one))[0] == 2  # no -d
        await same_data(sandbox, 3, "after the CLI")
        assert topology(sandbox) == star(sandbox)
