"""Maintenance locks (issue 6) in a real etcd, respected by the operations of the real
:class:`CommandResponder` over a real nats-server, on a real MariaDB sandbox (node 0 the
master, 1 and 2 its replicas), through the API (a SQLite store holding the sandbox) and the CLI.

Checked: a lock is exclusive and says who holds it and why; an operation by anyone but the
owner is refused and changes nothing (a move too, when its destination is locked), the owner's
runs; two operations on one instance at once: the second is refused at once; a lock expires
(and a new one can be taken); ending by key and by id; the audit; the CLI's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_adapters.etcd import EtcdClient, EtcdOptions
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_api.http.context import ApiContext
from orchestrator_cli.sandbox import Sandbox
from orchestrator_recovery.operations.instance import instance_operations
from orchestrator_recovery.operations.maintenance import MaintenanceLocks
from orchestrator_recovery.wiring import move_operations
from orchestrator_shared.bus import CommandReply, CommandRequest
from tests.integration import api_support
from tests.integration.api_support import (
    ACCESS,
    replica_row,
    responder_api,
    serve_cli,
    star_snapshots,
)

pytestmark = pytest.mark.integration

MASTER, REPLICA, OTHER = 0, 1, 2


@pytest.fixture(scope="module")
def sandbox(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return module_sandbox_factory(nodes=3)


def threads(sandbox: Sandbox, index: int) -> tuple[str, str, str]:
    row = replica_row(sandbox, index)
    return str(row["Slave_IO_Running"]), str(row["Slave_SQL_Running"]), str(row["Master_Port"])


@dataclass
class Recorder(api_support.Recorder):
    gate: asyncio.Event | None = None  # guard() waits for it (an operation held mid-way)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    async def guard(self) -> object:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        return await super().guard()


@dataclass
class Stack:
    client: httpx.AsyncClient
    context: ApiContext
    recorder: Recorder
    sandbox: Sandbox
    requester: NatsRequester
    etcd: EtcdClient

    def key(self, index: int) -> str:
        return self.sandbox.node(index).key

    def path(self, index: int) -> str:
        return f"127.0.0.1/{self.sandbox.node(index).port}"

    async def ask(self, operation: str, index: int, by: str) -> CommandReply:
        return await self.requester.command(
            CommandRequest(operation=operation, instance=self.key(index), requested_by=by)
        )


@pytest.fixture
async def stack(
    sandbox: Sandbox, nats_server: Any, etcd_server: Any, tmp_path: Path
) -> AsyncIterator[Stack]:
    for index in (REPLICA, OTHER):
        sandbox.execute(index, "START SLAVE")
    etcd = EtcdClient(EtcdOptions(endpoints=(etcd_server.endpoint,)))
    recorder = Recorder()
    locks = MaintenanceLocks(
        etcd,
        guard=recorder.guard,
        audit=recorder.audit,
        worker_id="w-test",
        default_duration=timedelta(minutes=10),
    )
    operations = instance_operations(
        access=ACCESS, guard=recorder.guard, audit=recorder.audit, worker_id="w-test"
    ) | move_operations(
        access=ACCESS, guard=recorder.guard, audit=recorder.audit, worker_id="w-test"
    )
    try:
        async with responder_api(
            nats_server.url, tmp_path, recorder.guard, operations, locks=locks
        ) as harness:
            await harness.store.write_batch(star_snapshots(sandbox))
            yield Stack(harness.client, harness.context, recorder, sandbox, harness.requester, etcd)
    finally:
        await etcd.close()
        for index in (REPLICA, OTHER):
            sandbox.execute(index, "START SLAVE")


async def etcd_keys(etcd: EtcdClient, kind: str) -> list[str]:
    found, _ = await etcd.get_prefix(f"/orchestrator/recovery/{kind}/".encode())
    return [entry.key.decode().rsplit("/", 1)[-1] for entry in found]


async def test_a_lock_keeps_others_out_and_lets_its_owner_in(stack: Stack) -> None:
    client, sandbox, replica = stack.client, stack.sandbox, stack.key(REPLICA)
    begun = await client.post(f"/api/begin-maintenance/{stack.path(REPLICA)}/alice/disk%20swap")
    assert begun.status_code == 200, begun.text
    body = begun.json()
    assert body["Message"].startswith(f"Maintenance begun: {replica} (id ")
    assert body["Details"] == {"Hostname": "127.0.0.1", "Port": sandbox.node(REPLICA).port}
    assert await etcd_keys(stack.etcd, "maintenance") == [replica]

    again = await client.post(f"/api/begin-maintenance/{stack.path(REPLICA)}/bob/upgrade")
    assert again.status_code == 409
    assert f"{replica} is in maintenance (alice, disk swap, until " in again.json()["Message"]

    # someone else: refused, nothing changed, nothing audited
    refused = await client.post(f"/api/stop-replica/{stack.path(REPLICA)}")
    assert refused.status_code == 409
    message = refused.json()["Message"]
    assert message.startswith(f"stop-replica refused: {replica} is in maintenance (alice, ")
    assert threads(sandbox, REPLICA)[:2] == ("Yes", "Yes")
    before = threads(sandbox, OTHER)
    moved = await stack.requester.command(
        CommandRequest(
            operation="relocate",
            instance=stack.key(OTHER),
            destination=replica,
            requested_by="bob",
        )
    )
    assert not moved.ok and f"{replica} is in maintenance (alice" in moved.error
    assert threads(sandbox, OTHER) == before
    assert [e.type for e in stack.recorder.audits] == ["begin-maintenance"]

    # the owner: allowed
    stopped = await stack.ask("stop-replica", REPLICA, "alice")
    assert stopped.ok, stopped.error
    assert threads(sandbox, REPLICA)[:2] == ("No", "No")
    assert (await stack.ask("start-replica", REPLICA, "alice")).ok
    assert threads(sandbox, REPLICA)[:2] == ("Yes", "Yes")

    inside = (await client.get(f"/api/in-maintenance/{stack.path(REPLICA)}")).json()
    assert (inside["Message"], inside["Details"]) == ("true", replica)
    outside = (await client.get(f"/api/in-maintenance/{stack.path(OTHER)}")).json()
    assert (outside["Message"], outside["Details"]) == ("false", "")
    [row] = (await client.get("/api/maintenance")).json()
    assert set(row) == {
        "MaintenanceId",
        "Key",
        "BeginTimestamp",
        "SecondsElapsed",
        "IsActive",
        "Owner",
        "Reason",
    }
    assert (row["Owner"], row["Reason"], row["IsActive"]) == ("alice", "disk swap", True)
    assert row["Key"] == {"Hostname": "127.0.0.1", "Port": sandbox.node(REPLICA).port}

    ended = await client.post(f"/api/end-maintenance/{stack.path(REPLICA)}")
    assert ended.status_code == 200
    assert ended.json()["Message"] == f"Maintenance ended: {replica}"
    assert await etcd_keys(stack.etcd, "maintenance") == []
    assert (await client.post(f"/api/stop-replica/{stack.path(REPLICA)}")).status_code == 200
    assert (await client.post(f"/api/start-replica/{stack.path(REPLICA)}")).status_code == 200
    # ending what is not there is no error (orchestrator's answer too)
    assert (await client.post(f"/api/end-maintenance/{stack.path(REPLICA)}")).status_code == 200
    assert [(e.type, e.user) for e in stack.recorder.audits] == [
        ("begin-maintenance", "anonymous"),
        ("stop-replica", "alice"),
        ("start-replica", "alice"),
        ("end-maintenance", "anonymous"),
        ("stop-replica", "anonymous"),
        ("start-replica", "anonymous"),
    ]
    assert "owner: alice, reason: disk swap" in stack.recorder.audits[0].message


async def test_end_by_id_and_bad_input(stack: Stack) -> None:
    client = stack.client
    assert (await client.get(f"/api/begin-maintenance/{stack.path(OTHER)}/ops/x")).is_success
    [row] = (await client.get("/api/maintenance")).json()
    unknown = await client.post(f"/api/end-maintenance/{row['MaintenanceId'] + 1000}")
    assert unknown.status_code == 409
    assert "no active maintenance with id" in unknown.json()["Message"]
    ended = await client.post(f"/api/end-maintenance/{row['MaintenanceId']}")
    assert (ended.status_code, ended.json()["Details"]) == (200, row["MaintenanceId"])
    assert (await client.get("/api/maintenance")).json() == []
    assert (await client.post("/api/end-maintenance/x1")).status_code == 400
    assert (await client.post("/api/begin-maintenance/nowhere/3306/a/b")).status_code == 404
    bad = await client.post(f"/api/begin-maintenance/{stack.path(OTHER)}/a/b?duration=soon")
    assert bad.status_code == 400
    assert (await stack.ask("begin-maintenance", OTHER, "alice")).error == "no reason given"
    assert (await client.get("/api/in-maintenance/127.0.0.1/x")).status_code == 400


async def test_two_operations_on_one_instance_the_second_is_refused(stack: Stack) -> None:
    sandbox, recorder, replica = stack.sandbox, stack.recorder, stack.key(REPLICA)
    recorder.gate = asyncio.Event()
    first = asyncio.create_task(stack.ask("stop-replica", REPLICA, "alice"))
    async with asyncio.timeout(10):
        await recorder.waiting.wait()  # the first holds its lock, before its statement
    assert await etcd_keys(stack.etcd, "operations") == [replica]
    [running] = (await stack.client.get("/api/maintenance")).json()
    assert (running["Owner"], running["Reason"]) == ("alice", "stop-replica")
    async with asyncio.timeout(3):  # at once, not after the first
        second = await stack.ask("set-read-only", REPLICA, "bob")
    assert not second.ok
    assert second.error.startswith(f"{replica} is busy: stop-replica requested by alice")
    # another instance is not held up (its guard waits on the same gate: let both go)
    other = asyncio.create_task(stack.ask("stop-replica", OTHER, "bob"))
    await asyncio.sleep(0.2)
    assert not other.done()
    recorder.gate.set()
    async with asyncio.timeout(10):
        assert (await first).ok
        assert (await other).ok
    recorder.gate = None
    assert threads(sandbox, REPLICA)[:2] == ("No", "No")
    assert await etcd_keys(stack.etcd, "operations") == []  # released
    assert (await stack.ask("start-replica", REPLICA, "bob")).ok
    assert (await stack.ask("start-replica", OTHER, "bob")).ok
    assert [e.type for e in recorder.audits] == ["stop-replica"] * 2 + ["start-replica"] * 2


async def test_a_lock_expires(stack: Stack) -> None:
    client, replica = stack.client, stack.key(REPLICA)
    short = await client.post(f"/api/begin-maintenance/{stack.path(REPLICA)}/alice/x?duration=1s")
    assert short.status_code == 200
    assert (await stack.ask("stop-replica", REPLICA, "bob")).ok is False
    await asyncio.sleep(1.3)
    assert (await client.get(f"/api/in-maintenance/{stack.path(REPLICA)}")).json()["Message"] == (
        "false"
    )
    assert await etcd_keys(stack.etcd, "maintenance") == []  # cleaned up when seen
    again = await client.post(f"/api/begin-maintenance/{stack.path(REPLICA)}/bob/y?duration=1s")
    assert again.status_code == 200
    await asyncio.sleep(1.3)
    assert (await client.get("/api/maintenance")).json() == []
    assert (await stack.ask("set-read-only", REPLICA, "carol")).ok
    assert replica in {e.key for e in stack.recorder.audits if e.type == "set-read-only"}


async def test_cli(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    async with serve_cli(stack.context, capsys) as cli:
        replica = stack.key(REPLICA)
        begin = ("-c", "begin-maintenance", "-i", replica, "--owner", "test", "--reason", "test")
        assert await cli(*begin) == (0, f"{replica}\n", "")
        code, out, err = await cli(*begin)
        assert (code, out) == (1, "")
        assert f"{replica} is in maintenance (test, test, until" in err
        assert await cli("-c", "in-maintenance", "-i", replica) == (0, f"{replica}\n", "")
        code, out, _ = await cli("-c", "maintenance")
        assert code == 0
        assert out.endswith("\ttest\ttest\n") and out.startswith(f"{replica}\t")
        code, out, err = await cli("-c", "stop-replica", "-i", replica)
        assert (code, out) == (1, "")
        assert "is in maintenance (test, test" in err
        assert await cli("-c", "end-maintenance", "-i", replica) == (0, f"{replica}\n", "")
        assert await cli("-c", "in-maintenance", "-i", replica) == (0, "", "")
        code, _, err = await cli("-c", "begin-maintenance", "-i", replica)
        assert code == 2
        assert "needs --reason" in err
        timed = (*begin, "--duration", "1s")
        assert await cli(*timed) == (0, f"{replica}\n", "")
        await asyncio.sleep(1.3)
        assert await cli("-c", "in-maintenance", "-i", replica) == (0, "", "")


async def test_operation_locks_live_while_it_runs_and_die_with_their_worker(
    etcd_server: Any,
) -> None:
    worker = EtcdClient(EtcdOptions(endpoints=(etcd_server.endpoint,)))
    observer = EtcdClient(EtcdOptions(endpoints=(etcd_server.endpoint,)))
    recorder = Recorder()
    locks = MaintenanceLocks(
        worker, guard=recorder.guard, audit=recorder.audit, worker_id="w", transient_ttl=2
    )
    request = CommandRequest(
        operation="relocate", instance="db2:3306", destination="db1:3306", requested_by="x"
    )
    try:
        async with locks.holding(request):
            await asyncio.sleep(3.5)  # longer than the lease: kept alive while it runs
            assert await etcd_keys(observer, "operations") == ["db1:3306", "db2:3306"]
            await worker.close()  # the worker dies: nothing renews nor releases its locks
        assert await etcd_keys(observer, "operations") == ["db1:3306", "db2:3306"]
        async with asyncio.timeout(10):
            while await etcd_keys(observer, "operations"):
                await asyncio.sleep(0.2)
    finally:
        await worker.close()
        await observer.close()
