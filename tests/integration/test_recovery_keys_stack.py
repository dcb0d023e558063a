"""orchestrator's recovery settings (issue 10) through the whole stack: a real 4-node MariaDB
sandbox, nats-server, etcd, discovery, topology-api and two recovery workers, each its own
process, configured with the setting under test. What each setting changes is checked on the
servers, in the recovery events and in the audit.

Every sandbox host is ``127.0.0.1``, so a host-name filter here matches every instance or
none; the planner's scenarios (``tests/scenarios/plan``) tell instances apart by name.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from orchestrator_cli.sandbox import REPLICATION_PASSWORD, REPLICATION_USER, Sandbox
from orchestrator_shared.events import AuditEvent, RecoveryPhase
from tests.integration.api_support import run_cli
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    api_post,
    bus_messages,
    fail_master,
    read_only,
    recovery_events,
    replica_status,
    wait_for_phase,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.integration

EVERY_HOST = "^127\\.0\\.0\\.1$"


def audit_events(url: str) -> AbstractAsyncContextManager[list[AuditEvent]]:
    return bus_messages(url, "orchestrator.v1.audit.>", AuditEvent)


def analysed(stack: Stack, key: str) -> list[str]:
    answer: Any = api_get(stack, "/api/replication-analysis") or {}
    return [
        str(entry["Analysis"])
        for entry in answer.get("Details") or []
        if f"{entry['AnalyzedInstanceKey']['Hostname']}:{entry['AnalyzedInstanceKey']['Port']}"
        == key
    ]


# --- RecoveryIgnoreHostnameFilters -------------------------------------------------------------


async def test_an_ignored_master_is_not_recovered_and_recover_says_why(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(RecoveryIgnoreHostnameFilters=[EVERY_HOST])
    sandbox = stack.sandbox
    master = sandbox.master.key
    wait_listed(stack, master)
    async with recovery_events(stack.nats_url) as events:
        await asyncio.sleep(1.5)
        sandbox.kill(0)
        # discovery sees it dead (its instance list says so) ...
        wait_until(
            lambda: (
                (found := api_get(stack, f"/api/instance/127.0.0.1/{sandbox.master.port}"))
                and not found["IsLastCheckValid"]
            ),
            timeout=15,
            what="the API sees the master down",
        )
        await asyncio.sleep(4)  # many analysis rounds
        # ... but it has no analysis, so nothing is detected or recovered
        assert events == []
        assert analysed(stack, master) == []
    assert all(read_only(sandbox, node.index) for node in sandbox.nodes[1:])
    answer = await api_post(stack, f"/api/recover/127.0.0.1/{sandbox.master.port}")
    assert answer.status_code == 409, answer.text
    assert "matches RecoveryIgnoreHostnameFilters" in answer.json()["Message"], answer.text


# --- PromotionIgnoreHostnameFilters ------------------------------------------------------------


async def test_promotion_ignored_replicas_are_never_promoted(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_stack(
        PromotionIgnoreHostnameFilters=[EVERY_HOST],
        ReplicationCredentialsQuery=f"SELECT '{REPLICATION_USER}', '{REPLICATION_PASSWORD}'",
    )
    sandbox = stack.sandbox
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    wait_listed(stack, zero)
    await asyncio.sleep(1.5)
    for argv in (
        ("-c", "graceful-master-takeover", "-i", zero, "-d", one),
        ("-c", "graceful-master-takeover-auto", "-i", zero),
    ):
        capsys.readouterr()
        code, out = await asyncio.to_thread(run_cli, stack.api, *argv)
        err = capsys.readouterr().err
        assert (code, out) == (1, ""), (argv, code, out, err)
        assert "PromotionIgnoreHostnameFilters ('^127\\\\.0\\\\.0\\\\.1$')" in err, err
    assert not read_only(sandbox, 0)  # nothing was changed
    # the master dies: no replica may replace it
    async with recovery_events(stack.nats_url) as events:
        await asyncio.sleep(0.5)
        sandbox.kill(0)
        failed = await wait_for_phase(events, RecoveryPhase.FAILED, timeout=20)
    assert failed.data.reason.startswith(f"no replica of {zero} can be promoted")
    assert len(failed.data.rejected) == 3
    assert all(
        "host name matches PromotionIgnoreHostnameFilters" in why
        for why in failed.data.rejected.values()
    ), failed.data.rejected
    assert not any(event.phase is RecoveryPhase.PROMOTED for event in events)
    assert all(read_only(sandbox, node.index) for node in sandbox.nodes[1:])


# --- PostponeReplicaRecoveryOnLagMinutes and DetachLostReplicasAfterMasterFailover --------------


async def test_a_delayed_replica_follows_after_the_recovery_and_a_lost_one_is_detached(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(PostponeReplicaRecoveryOnLagMinutes=1)
    sandbox = stack.sandbox
    good, errant, delayed = sandbox.nodes[1], sandbox.nodes[2], sandbox.nodes[3]
    sandbox.execute(delayed.index, "STOP SLAVE")
    sandbox.execute(delayed.index, "CHANGE MASTER TO MASTER_DELAY = 120")
    sandbox.execute(delayed.index, "START SLAVE")
    sandbox.execute(errant.index, "SET GLOBAL read_only = 0")
    sandbox.execute(errant.index, "INSERT INTO sandbox.t (note) VALUES ('errant')")
    sandbox.execute(errant.index, "SET GLOBAL read_only = 1")
    async with audit_events(stack.nats_url) as audits:
        events = await fail_master(stack, lambda: sandbox.kill(0), timeout=20, settle=0)
        [done] = [e.data for e in events if e.phase is RecoveryPhase.COMPLETED]
        assert done.successor == good.key, done
        assert done.repointed == () and done.postponed == (delayed.key,)
        assert set(done.lost) == {errant.key}
        # in the background, after completed: the delayed replica below the new master ...
        status = wait_until(
            lambda: (
                (found := replica_status(sandbox, delayed.index))
                and int(found["Master_Port"]) == good.port
                and found["Slave_IO_Running"] == "Yes"
                and found
            ),
            timeout=15,
            what="the delayed replica replicating from the new master",
        )
        assert status["SQL_Delay"] == "120" and status["Slave_SQL_Running"] == "Yes"
        # ... and the lost one detached: Master_Host //host, reversible
        detached = wait_until(
            lambda: (
                (found := replica_status(sandbox, errant.index))
                and found["Master_Host"].startswith("//")
                and found
            ),
            timeout=15,
            what="the lost replica detached",
        )
        assert detached["Master_Host"] == "//127.0.0.1"
        assert int(detached["Master_Port"]) == sandbox.nodes[0].port
        deadline = time.monotonic() + 10
        while not {"recovery-postponed-replica", "detach-replica-master-host"} <= {
            a.type for a in audits
        }:
            assert time.monotonic() < deadline, [(a.type, a.message) for a in audits]
            await asyncio.sleep(0.1)
    moved = next(a for a in audits if a.type == "recovery-postponed-replica")
    assert moved.ok and moved.key == delayed.key
    assert moved.message.startswith(f"{delayed.key} moved under {good.key} after recovery")
    detach = next(a for a in audits if a.type == "detach-replica-master-host")
    assert detach.ok and detach.key == errant.key
    assert not read_only(sandbox, good.index)


# --- EnforceExactSemiSyncReplicas --------------------------------------------------------------


def semi_sync_flags(sandbox: Sandbox) -> list[int]:
    return [
        int(sandbox.execute(index, "SELECT @@global.rpl_semi_sync_slave_enabled")[0][0])
        for index in range(1, 4)
    ]


def semi_sync_clients(sandbox: Sandbox) -> int:
    rows = sandbox.execute(0, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
    return int(rows[0][1])


async def test_exact_semi_sync_replicas_are_enforced_and_a_locked_master_recovered(
    make_stack: StackFactory,
) -> None:
    """A semi-sync sandbox (every replica semi-sync, MariaDB's wait count 1): the extra two
    are turned off. Then the last one stops acknowledging and the master locks: recovered
    once the first semi-sync recovery is acknowledged (its own block period)."""
    stack = make_stack(
        semi_sync=True,
        EnforceExactSemiSyncReplicas=True,
        ReasonableLockedSemiSyncMasterSeconds=2,
    )
    sandbox = stack.sandbox
    master = sandbox.master.key
    async with recovery_events(stack.nats_url) as events:
        await asyncio.sleep(0.2)  # the subscription reaches nats-server (the loop must run)
        await asyncio.to_thread(wait_listed, stack, master)
        completed = await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30)
    too_many = completed.data
    assert too_many.analysis == "MasterWithTooManySemiSyncReplicas", too_many
    assert too_many.semi_sync == {sandbox.nodes[2].key: False, sandbox.nodes[3].key: False}
    assert [e.phase for e in events][:3] == [
        RecoveryPhase.DETECTED,
        RecoveryPhase.STARTED,
        RecoveryPhase.COMPLETED,
    ]
    assert semi_sync_flags(sandbox) == [1, 0, 0]
    wait_until(lambda: semi_sync_clients(sandbox) == 1, timeout=10, what="one semi-sync client")

    # the master waits for an acknowledgement nobody sends
    sandbox.execute(0, "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON")
    sandbox.execute(0, "SET GLOBAL rpl_semi_sync_master_timeout = 3600000")
    async with recovery_events(stack.nats_url) as events:
        sandbox.execute(1, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
        sandbox.execute(1, "STOP SLAVE IO_THREAD")
        sandbox.execute(1, "START SLAVE IO_THREAD")
        blocked = await wait_for_phase(events, RecoveryPhase.BLOCKED, timeout=30)
        assert blocked.data.analysis == "LockedSemiSyncMaster"
        assert "its semi-sync replicas were recovered at" in blocked.data.reason
        await asyncio.sleep(2)
        assert sum(e.phase is RecoveryPhase.BLOCKED for e in events) == 1  # told once
        assert semi_sync_flags(sandbox) == [0, 0, 0]
        answer = await api_post(stack, f"/api/ack-recovery/cluster/{master}?comment=locked")
        assert answer.status_code == 200, answer.text
        locked = await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30)
    assert locked.data.analysis == "LockedSemiSyncMaster"
    assert locked.data.semi_sync == {sandbox.nodes[1].key: True}
    assert semi_sync_flags(sandbox) == [1, 0, 0]
    wait_until(lambda: semi_sync_clients(sandbox) == 1, timeout=10, what="one semi-sync client")
    # topology-api keeps them as recoveries, successful
    wanted = {too_many.recovery_id, locked.data.recovery_id}
    wait_until(
        lambda: (
            (found := api_get(stack, "/api/audit-recovery"))
            and {row["UID"] for row in found if row["IsSuccessful"]} >= wanted
        ),
        timeout=10,
        what="both semi-sync recoveries listed by the API as successful",
    )
