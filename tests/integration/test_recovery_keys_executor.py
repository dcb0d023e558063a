"""orchestrator's recovery settings (issue 10) against real MariaDB sandboxes, at the executor:
what each one changes on the servers. ``FailMasterPromotionIfSQLThreadNotUpToDate`` and
``DelayMasterPromotionIfSQLThreadNotUpToDate`` (the successor's relay log),
``ApplyMySQLPromotionAfterMasterFailover=false``, ``PostponeReplicaRecoveryOnLagMinutes``,
``DetachLostReplicasAfterMasterFailover``, the semi-sync recoveries and
``PostTakeMasterProcesses``. The whole stack's side is in ``test_recovery_keys_stack.py``.

Each test builds its own sandbox (``sandbox_factory``: downed even when the test fails) and
checks what the servers say afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_recovery.failover.catch_up import CatchUpMode, CatchUpPolicy
from orchestrator_recovery.failover.outcome import Action, FailoverRefused
from orchestrator_recovery.wiring import MySQLExecutor, ShellHooks, move_operations
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.recovery import (
    PlanOptions,
    SemiSyncMode,
    SemiSyncPlan,
    plan_semi_sync_replicas,
)
from tests.integration.api_support import Recorder
from tests.integration.test_api import probe_all
from tests.integration.test_recovery_executor import (
    ACCESS,
    assert_follows,
    assert_promoted,
    assert_write_reaches,
    count_notes,
    eventually,
    fail_over,
    is_read_only,
    key,
    replica_status,
    show,
    step_actions,
    value,
)

pytestmark = pytest.mark.integration

Factory = Callable[..., Sandbox]


def executor(recorder: Recorder, **changes: Any) -> MySQLExecutor:
    return MySQLExecutor(
        ACCESS,
        catch_up=CatchUpPolicy(**changes),
        audit=recorder.audit,
        worker_id="worker-test",
    )


def backlog_blocked_by_a_lock(sandbox: Sandbox) -> tuple[NodeSession, int]:
    """Node 1 has received 20 transactions its SQL thread cannot apply (a table lock holds
    it); the master is then killed. The lock's session, and the rows the master had."""
    locker = NodeSession("locker", unix_socket=sandbox.node(1).socket)
    locker.__enter__()
    locker.rows("LOCK TABLES sandbox.t WRITE")
    for number in range(20):
        sandbox.execute(0, f"INSERT INTO sandbox.t (note) VALUES ('backlog {number}')")
    position = value(sandbox, 0, "SELECT @@global.gtid_binlog_pos")
    eventually(
        lambda: (replica_status(sandbox, 1) or {}).get("Gtid_IO_Pos") == position,
        what="the successor received the backlog",
    )
    total = int(value(sandbox, 0, "SELECT COUNT(*) FROM sandbox.t"))
    sandbox.kill(0)
    return locker, total


def assert_nothing_promoted(sandbox: Sandbox, nodes: list[int]) -> None:
    for index in nodes:
        assert is_read_only(sandbox, index)
        status = replica_status(sandbox, index)
        assert status is not None and status["Master_Port"] == sandbox.node(0).port
        assert status["Slave_SQL_Running"] == "Yes"


# --- the successor's relay log ------------------------------------------------------------------


async def test_fail_refuses_a_successor_not_up_to_date_at_once(sandbox_factory: Factory) -> None:
    """FailMasterPromotionIfSQLThreadNotUpToDate: no waiting at all, even with time to spare."""
    sandbox = sandbox_factory(nodes=3)
    locker, total = backlog_blocked_by_a_lock(sandbox)
    try:
        started = time.monotonic()
        with pytest.raises(FailoverRefused) as refused:
            await fail_over(
                sandbox, 1, [2], catch_up=CatchUpPolicy(mode=CatchUpMode.FAIL, timeout=30.0)
            )
        took = time.monotonic() - started
        show("FailMasterPromotionIfSQLThreadNotUpToDate: refused", refused.value.steps)
        assert "FailMasterPromotionIfSQLThreadNotUpToDate refuses rather than wait" in (
            refused.value.reason
        )
        assert took < 5.0  # it did not wait for the 30 s it was allowed
        assert_nothing_promoted(sandbox, [1, 2])
    finally:
        locker.rows("UNLOCK TABLES")
        locker.close()
    # once applied, the same rule promotes it
    eventually(lambda: count_notes(sandbox, 1, "backlog 19") == 1, what="the backlog applied")
    outcome = await fail_over(sandbox, 1, [2], catch_up=CatchUpPolicy(mode=CatchUpMode.FAIL))
    assert_promoted(sandbox, 1)
    assert int(value(sandbox, 1, "SELECT COUNT(*) FROM sandbox.t")) == total
    assert_follows(sandbox, 2, master=1)
    assert outcome.promotion_applied


async def test_delay_waits_past_the_timeout_but_not_for_a_stuck_sql_thread(
    sandbox_factory: Factory,
) -> None:
    """DelayMasterPromotionIfSQLThreadNotUpToDate: RecoveryCatchUpTimeoutSeconds (0.2 s here)
    does not bound the wait; a SQL thread making no progress for ReasonableReplicationLagSeconds
    (1 s here) does."""
    sandbox = sandbox_factory(nodes=3)
    locker, total = backlog_blocked_by_a_lock(sandbox)
    delay = CatchUpPolicy(mode=CatchUpMode.DELAY, timeout=0.2, stall=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(FailoverRefused) as refused:
            await fail_over(sandbox, 1, [2], catch_up=delay)
        took = time.monotonic() - started
        assert "made no progress for 1s (ReasonableReplicationLagSeconds" in refused.value.reason
        assert 1.0 <= took < 10.0
        assert_nothing_promoted(sandbox, [1, 2])
        # the lock goes after 1.5 s: longer than the timeout, shorter than the stall limit of 3 s
        release = threading.Timer(1.5, lambda: locker.rows("UNLOCK TABLES"))
        release.start()
        try:
            outcome = await fail_over(
                sandbox,
                1,
                [2],
                catch_up=CatchUpPolicy(mode=CatchUpMode.DELAY, timeout=0.2, stall=3.0),
            )
        finally:
            release.join()
        show("DelayMasterPromotionIfSQLThreadNotUpToDate: waited", outcome.steps, outcome.duration)
    finally:
        locker.close()
    catch_up = [step for step in outcome.steps if step.action is Action.CATCH_UP]
    assert catch_up[-1].ok and catch_up[-1].duration >= 1.0
    assert_promoted(sandbox, 1)
    assert int(value(sandbox, 1, "SELECT COUNT(*) FROM sandbox.t")) == total
    assert_follows(sandbox, 2, master=1)


# --- ApplyMySQLPromotionAfterMasterFailover=false ----------------------------------------------


async def test_a_promotion_left_to_the_hooks_moves_the_siblings_only(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('before')")
    sandbox.wait_caught_up(timeout=10)
    sandbox.kill(0)
    outcome = await fail_over(sandbox, 1, [2, 3], apply_promotion=False)
    show("ApplyMySQLPromotionAfterMasterFailover=false", outcome.steps, outcome.duration)
    assert not outcome.promotion_applied
    assert outcome.repointed == (key(sandbox, 2), key(sandbox, 3))
    actions = step_actions(outcome.steps, key(sandbox, 1))
    assert Action.PROMOTION_LEFT in actions
    assert Action.RESET_REPLICATION not in actions and Action.SET_WRITABLE not in actions
    # the successor: still read_only, still configured to replicate from the dead master
    assert is_read_only(sandbox, 1)
    status = replica_status(sandbox, 1)
    assert status is not None and status["Master_Port"] == sandbox.node(0).port
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("No", "No")
    for index in (2, 3):
        assert_follows(sandbox, index, master=1)
    # what an operator's hook does next
    sandbox.execute(1, "RESET SLAVE ALL")
    sandbox.execute(1, "SET GLOBAL read_only = 0")
    assert_write_reaches(sandbox, 1, [2, 3], "promoted by a hook")


# --- PostponeReplicaRecoveryOnLagMinutes and DetachLostReplicasAfterMasterFailover --------------


async def test_a_postponed_replica_is_moved_afterwards_and_a_lost_one_detached(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(3, "CHANGE MASTER TO MASTER_DELAY = 120")
    sandbox.execute(3, "START SLAVE")
    sandbox.execute(2, "INSERT INTO sandbox.t (note) VALUES ('errant')")  # node 2 cannot follow
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('last')")
    eventually(lambda: count_notes(sandbox, 1, "last") == 1, what="node 1 has the last write")
    sandbox.kill(0)

    outcome = await fail_over(sandbox, 1, [2], postpone=[key(sandbox, 3)])
    show("postponed and lost", outcome.steps, outcome.duration)
    assert outcome.postponed == (key(sandbox, 3),)
    assert set(outcome.lost) == {key(sandbox, 2)}
    assert_promoted(sandbox, 1)
    # the delayed replica: its IO thread stopped with the others, not moved yet
    delayed = replica_status(sandbox, 3)
    assert delayed is not None and delayed["Master_Port"] == sandbox.node(0).port
    assert delayed["Slave_IO_Running"] == "No"

    recorder = Recorder()
    run = executor(recorder)
    successor = str(key(sandbox, 1))
    assert await run.move_postponed(successor, (str(key(sandbox, 3)),), recorder.guard) == {}
    assert_follows(sandbox, 3, master=1)
    moved = replica_status(sandbox, 3)
    assert moved is not None and int(moved["SQL_Delay"]) == 120  # still a delayed replica

    lost = str(key(sandbox, 2))
    assert await run.detach_lost((lost,), recorder.guard) == {}
    detached = replica_status(sandbox, 2)
    assert detached is not None and detached["Master_Host"] == "//127.0.0.1"
    assert (detached["Slave_IO_Running"], detached["Slave_SQL_Running"]) == ("No", "No")
    assert [(e.type, e.key, e.ok, e.user) for e in recorder.audits] == [
        ("detach-replica-master-host", lost, True, "worker-test")
    ]
    # a lost replica that is down cannot be detached: said, not raised
    sandbox.kill(2)
    failures = await run.detach_lost((lost,), recorder.guard)
    assert set(failures) == {lost} and "cannot read" in failures[lost]


# --- semi-sync recoveries ------------------------------------------------------------------------


def semi_sync_flags(sandbox: Sandbox) -> list[int]:
    return [
        int(value(sandbox, index, "SELECT @@global.rpl_semi_sync_slave_enabled"))
        for index in range(1, len(sandbox.nodes))
    ]


def semi_sync_clients(sandbox: Sandbox) -> int:
    rows = sandbox.execute(0, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
    return int(rows[0][1])


async def plan_from_the_servers(sandbox: Sandbox, mode: SemiSyncMode, **options: Any) -> Any:
    snapshots = await probe_all(sandbox)
    master, replicas = snapshots[0], snapshots[1:]
    return plan_semi_sync_replicas(
        master,
        replicas,
        cluster=master.key,
        mode=mode,
        options=PlanOptions(**options),
    )


async def test_semi_sync_replicas_are_reduced_to_exactly_the_wait_count_then_restored(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4, semi_sync=True)
    assert semi_sync_clients(sandbox) == 3
    recorder = Recorder()
    run = executor(recorder)

    # EnforceExactSemiSyncReplicas: one semi-sync replica (MariaDB has no wait count: 1), the
    # best ranked; every replica is neutral, so the smallest key (node 1) is kept
    exact = await plan_from_the_servers(sandbox, SemiSyncMode.EXACT)
    assert isinstance(exact, SemiSyncPlan), exact
    assert exact.enable == () and exact.disable == (key(sandbox, 2), key(sandbox, 3))
    result = await run.semi_sync(exact, recorder.guard)
    assert result.reached and not result.failed, result
    assert result.changed == {str(key(sandbox, 2)): False, str(key(sandbox, 3)): False}
    assert semi_sync_flags(sandbox) == [1, 0, 0]
    assert semi_sync_clients(sandbox) == 1
    assert_write_reaches(sandbox, 0, [1, 2, 3], "one semi-sync replica")

    # the last one stops acknowledging: RecoverLockedSemiSyncMaster enables one again
    sandbox.execute(1, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
    sandbox.execute(1, "STOP SLAVE IO_THREAD")
    sandbox.execute(1, "START SLAVE IO_THREAD")
    eventually(lambda: semi_sync_clients(sandbox) == 0, what="no semi-sync replica left")
    enough = await plan_from_the_servers(sandbox, SemiSyncMode.AT_LEAST)
    assert isinstance(enough, SemiSyncPlan), enough
    assert (enough.enable, enough.disable) == ((key(sandbox, 1),), ())
    result = await run.semi_sync(enough, recorder.guard)
    assert result.reached, result
    assert semi_sync_flags(sandbox) == [1, 0, 0]
    assert semi_sync_clients(sandbox) == 1
    assert [(e.type, e.key, e.ok) for e in recorder.audits] == [
        ("disable-semi-sync-replica", str(key(sandbox, 2)), True),
        ("disable-semi-sync-replica", str(key(sandbox, 3)), True),
        ("enable-semi-sync-replica", str(key(sandbox, 1)), True),
    ]
    # replicas that must never acknowledge (every sandbox host is 127.0.0.1) are turned off
    never = await plan_from_the_servers(
        sandbox, SemiSyncMode.EXACT, promotion_ignore_hostname_filters=("^127\\.",)
    )
    assert isinstance(never, SemiSyncPlan)
    assert never.enable == () and never.disable == (key(sandbox, 1),)


# --- PostTakeMasterProcesses -------------------------------------------------------------------


async def test_post_take_master_hooks_run_with_orchestrators_variables_and_never_undo(
    sandbox_factory: Factory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(nodes=3, chain=True)  # 0 -> 1 -> 2
    told = tmp_path / "told"
    script = tmp_path / "post-take-master.sh"
    script.write_text(
        "#!/bin/bash\n"
        f'echo "args=$1 $2 successor=$ORC_SUCCESSOR_HOST failed=$ORC_FAILED_HOST '
        f'port=$ORC_SUCCESSOR_PORT command=$ORC_COMMAND" >> {told}\n'
    )
    script.chmod(0o755)
    settings = Settings(
        PostTakeMasterProcesses=(
            f"{script} {{successorHost}} {{failedPort}}",
            f'echo "placeholders {{successorHost}}:{{successorPort}} {{failedHost}}" >> {told}',
            "exit 7",  # fails: audited, the move stands
        ),
        HookTimeoutSeconds=10,
    )
    recorder = Recorder()
    hooks = ShellHooks(settings, host="orc-test", audit=recorder.audit)
    operations = move_operations(
        access=ACCESS,
        guard=recorder.guard,
        audit=recorder.audit,
        worker_id="worker-test",
        after_take_master=lambda successor, demoted, cluster: hooks.take_master(
            successor, demoted, cluster=cluster
        ),
    )
    two, one = key(sandbox, 2), key(sandbox, 1)
    reply = await operations["take-master"](
        CommandRequest(
            operation="take-master",
            instance=str(two),
            cluster=str(key(sandbox, 0)),
            requested_by="alice",
        )
    )
    assert reply.ok and reply.message == f"{two} took its master"
    lines = told.read_text().splitlines()
    # the script's own arguments are the placeholders its command line names
    assert lines == [
        f"args={two.host} {one.port} successor={two} failed={one} port={two.port} "
        "command=take-master",
        f"placeholders {two.host}:{two.port} {one.host}",
    ]
    hook_audits = [e for e in recorder.audits if e.type == "hook-PostTakeMasterProcesses"]
    assert [e.ok for e in hook_audits] == [True, True, False]
    assert "exited with 7" in hook_audits[-1].message
    # the move stands: 2 below 0, 1 below 2
    assert_follows(sandbox, 2, master=0)
    assert_follows(sandbox, 1, master=2)


async def test_post_take_master_hooks_get_the_two_keys_as_arguments(tmp_path: Path) -> None:
    """orchestrator runs each command with the successor and the demoted master as $1, $2."""
    told = tmp_path / "told"
    settings = Settings(PostTakeMasterProcesses=(f'echo "$# $1 $2" > {told}',))
    recorder = Recorder()
    hooks = ShellHooks(settings, host="orc-test", audit=recorder.audit)
    two, one = InstanceKey("127.0.0.1", 3302), InstanceKey("127.0.0.1", 3301)
    await hooks.take_master(two, one, cluster="127.0.0.1:3300")
    assert told.read_text() == "2 127.0.0.1:3302 127.0.0.1:3301\n"
    [audit] = recorder.audits
    assert (audit.type, audit.key, audit.ok) == ("hook-PostTakeMasterProcesses", str(two), True)
