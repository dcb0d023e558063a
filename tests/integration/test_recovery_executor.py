"""The failover executor against real MariaDB sandboxes (orchestrator_recovery.failover.executor).

Each test builds its own sandbox (``sandbox_factory``: downed even when the test fails), breaks
it (kill -9, SIGSTOP, a lagging successor, a replica that cannot follow, a lost lease) and
checks what the servers say afterwards, not what the executor says it did. The step timings
of each failover are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from orchestrator_cli.sandbox import TOPOLOGY_PASSWORD, TOPOLOGY_USER, Sandbox
from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_recovery.failover.executor import (
    Timeouts,
    fail_over_master,
    fence_returning_master,
    relocate_replicas,
)
from orchestrator_recovery.failover.outcome import (
    Action,
    FailoverOutcome,
    FailoverRefused,
    StepJournal,
    StepRecord,
)
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.integration

ACCESS = MySQLAccess(user=TOPOLOGY_USER, password=TOPOLOGY_PASSWORD, connect_timeout=1.0)
Factory = Callable[..., Sandbox]


async def no_guard() -> None:
    return None


def key(sandbox: Sandbox, index: int) -> InstanceKey:
    return InstanceKey("127.0.0.1", sandbox.node(index).port)


def dicts(sandbox: Sandbox, index: int, statement: str) -> list[dict[str, Any]]:
    node = sandbox.node(index)
    with NodeSession(node.key, unix_socket=node.socket) as session:
        return session.dicts(statement)


def value(sandbox: Sandbox, index: int, statement: str) -> Any:
    return sandbox.execute(index, statement)[0][0]


def replica_status(sandbox: Sandbox, index: int) -> dict[str, Any] | None:
    rows = dicts(sandbox, index, "SHOW SLAVE STATUS")
    return rows[0] if rows else None


def io_position(sandbox: Sandbox, index: int) -> str:
    status = replica_status(sandbox, index)
    assert status is not None
    return str(status["Gtid_IO_Pos"])


def is_read_only(sandbox: Sandbox, index: int) -> bool:
    return int(value(sandbox, index, "SELECT @@global.read_only")) == 1


def count_notes(sandbox: Sandbox, index: int, note: str) -> int:
    return int(value(sandbox, index, f"SELECT COUNT(*) FROM sandbox.t WHERE note = '{note}'"))


def eventually(check: Callable[[], bool], *, within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        time.sleep(0.02)


def show(title: str, steps: tuple[StepRecord, ...], total: float | None = None) -> None:
    print(f"\n--- {title}" + (f": {total * 1000:.1f} ms" if total is not None else ""))
    for step in steps:
        print(f"    {step}")


def assert_follows(sandbox: Sandbox, index: int, master: int) -> None:
    status = replica_status(sandbox, index)
    assert status is not None, f"node {index} does not replicate"
    assert status["Master_Port"] == sandbox.node(master).port
    assert status["Slave_IO_Running"] == "Yes", status["Last_IO_Error"]
    assert status["Slave_SQL_Running"] == "Yes", status["Last_SQL_Error"]
    assert status["Using_Gtid"] == "Slave_Pos"


def assert_promoted(sandbox: Sandbox, index: int) -> None:
    assert replica_status(sandbox, index) is None, "the successor still has replication set up"
    assert not is_read_only(sandbox, index)


def assert_write_reaches(sandbox: Sandbox, master: int, replicas: list[int], note: str) -> None:
    sandbox.execute(master, f"INSERT INTO sandbox.t (note) VALUES ('{note}')")
    for index in replicas:
        eventually(lambda i=index: count_notes(sandbox, i, note) == 1, what=f"{note} on {index}")


def step_actions(outcome_steps: tuple[StepRecord, ...], instance: InstanceKey) -> list[Action]:
    return [step.action for step in outcome_steps if step.instance == instance]


async def fail_over(sandbox: Sandbox, successor: int, others: list[int], **options: Any) -> Any:
    return await fail_over_master(
        failed=key(sandbox, 0),
        successor=key(sandbox, successor),
        repoint=[key(sandbox, index) for index in others],
        guard=options.pop("guard", no_guard),
        session=options.pop("session", ACCESS),
        **options,
    )


# --- a dead master ---------------------------------------------------------------------------


async def test_killed_master_is_replaced_and_stays_out(sandbox_factory: Factory) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('before')")
    sandbox.wait_caught_up(timeout=10)
    sandbox.kill(0)

    outcome: FailoverOutcome = await fail_over(sandbox, 1, [2, 3])
    show("kill -9, 4 nodes", outcome.steps, outcome.duration)

    assert outcome.successor == key(sandbox, 1)
    assert outcome.repointed == (key(sandbox, 2), key(sandbox, 3))
    assert dict(outcome.lost) == {}
    assert not outcome.fenced_old_master
    assert "unreachable" in outcome.old_master_detail
    assert outcome.duration < 1.0
    # the phase times the recovery's events carry: writable first, then the replicas moved
    assert outcome.promote_seconds is not None and outcome.repoint_seconds is not None
    assert outcome.promote_seconds + outcome.repoint_seconds <= outcome.duration
    promoted_at = max(s.started_at for s in outcome.steps if s.action is Action.SET_WRITABLE)
    assert promoted_at <= min(
        s.started_at for s in outcome.steps if s.action is Action.CHANGE_MASTER
    )
    assert_promoted(sandbox, 1)
    for index in (2, 3):
        assert_follows(sandbox, index, master=1)
        assert is_read_only(sandbox, index)
        assert count_notes(sandbox, index, "before") == 1
    assert_write_reaches(sandbox, 1, [2, 3], "after failover")

    # The old master comes back (its my.cnf says read_only=OFF): fenced, and alone.
    sandbox.start(0)
    fence = await fence_returning_master(key(sandbox, 0), ACCESS, no_guard)
    show("returning old master fenced", fence.steps)
    assert fence.fenced
    assert is_read_only(sandbox, 0)
    assert replica_status(sandbox, 0) is None
    assert count_notes(sandbox, 0, "after failover") == 0
    hosts = dicts(sandbox, 1, "SHOW SLAVE HOSTS")
    assert {row["Port"] for row in hosts} == {sandbox.node(2).port, sandbox.node(3).port}


async def test_killed_under_write_load_nothing_received_is_lost(sandbox_factory: Factory) -> None:
    """kill -9 while a writer commits as fast as it can: the most advanced replica (what the
    planner would pick) applies all it received, and every replica ends up with its rows."""
    sandbox = sandbox_factory(nodes=4)
    writer = pymysql.connect(**sandbox.connect_args(0), autocommit=True)
    acknowledged = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal acknowledged
        with writer.cursor() as cursor:
            while not stop.is_set():
                try:
                    cursor.execute("INSERT INTO sandbox.t (note) VALUES ('load')")
                except pymysql.err.MySQLError:
                    return
                acknowledged += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        await asyncio.sleep(0.3)
        sandbox.kill(0)
    finally:
        stop.set()
        thread.join()
        writer.close()
    received = {index: io_position(sandbox, index) for index in (1, 2, 3)}
    best = max(received, key=lambda index: int(received[index].split("-")[-1]))
    others = [index for index in (1, 2, 3) if index != best]

    outcome = await fail_over(sandbox, best, others)
    show(
        f"kill -9 under load ({acknowledged} inserts acknowledged)", outcome.steps, outcome.duration
    )

    assert dict(outcome.lost) == {}
    assert_promoted(sandbox, best)
    assert value(sandbox, best, "SELECT @@global.gtid_slave_pos") == received[best]
    rows = count_notes(sandbox, best, "load")
    # Asynchronous replication may lose what the master acknowledged but had not yet sent; the
    # executor's part is that nothing the successor received is left behind (checked above).
    print(f"    {rows} of {acknowledged} acknowledged inserts on the successor")
    assert 0 < rows <= acknowledged + 1
    for index in others:
        assert_follows(sandbox, index, master=best)
        eventually(lambda i=index: count_notes(sandbox, i, "load") == rows, what=f"rows on {index}")


async def test_hung_master_times_out_quickly_and_is_fenced_on_resume(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.hang(0)
    try:
        outcome = await fail_over(sandbox, 2, [1, 3], timeouts=Timeouts(fence=0.3))
        show("SIGSTOP master, 4 nodes", outcome.steps, outcome.duration)
        assert not outcome.fenced_old_master
        assert "no answer" in outcome.old_master_detail
        fence_step = next(step for step in outcome.steps if step.action is Action.FENCE)
        assert fence_step.duration < 0.5
        assert outcome.duration < 1.0
        assert dict(outcome.lost) == {}
        assert_promoted(sandbox, 2)
        for index in (1, 3):
            assert_follows(sandbox, index, master=2)
    finally:
        sandbox.resume(0)

    assert not is_read_only(sandbox, 0)  # it still believes it is the master
    fence = await fence_returning_master(key(sandbox, 0), ACCESS, no_guard)
    assert fence.fenced
    assert is_read_only(sandbox, 0)
    assert_write_reaches(sandbox, 2, [1, 3], "after hang")


async def test_answering_master_is_fenced_and_its_clients_killed(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    client = pymysql.connect(**sandbox.connect_args(0), autocommit=True)
    try:
        with client.cursor() as cursor:
            cursor.execute("INSERT INTO sandbox.t (note) VALUES ('last words')")
        outcome = await fail_over(sandbox, 1, [2, 3])
        show("answering master, 4 nodes", outcome.steps, outcome.duration)

        assert outcome.fenced_old_master
        assert is_read_only(sandbox, 0)
        kill_step = next(step for step in outcome.steps if step.action is Action.KILL_CLIENTS)
        assert kill_step.ok
        with pytest.raises(pymysql.err.OperationalError), client.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        client.close()
    assert_promoted(sandbox, 1)
    # Nothing the old master committed before it was fenced is missing on the successor.
    assert count_notes(sandbox, 1, "last words") == 1
    assert value(sandbox, 1, "SELECT @@global.gtid_slave_pos") == value(
        sandbox, 0, "SELECT @@global.gtid_binlog_pos"
    )
    for index in (2, 3):
        assert_follows(sandbox, index, master=1)
    assert_write_reaches(sandbox, 1, [2, 3], "after graceful")
    assert count_notes(sandbox, 0, "after graceful") == 0


async def test_fencing_kills_a_session_that_blocks_read_only(sandbox_factory: Factory) -> None:
    sandbox = sandbox_factory(nodes=3)
    blocker = pymysql.connect(**sandbox.connect_args(0), autocommit=True)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLES sandbox.t WRITE")  # SET GLOBAL read_only=1 waits on it
        outcome = await fail_over(sandbox, 1, [2], timeouts=Timeouts(fence=0.6))
        show("read_only blocked by a table lock", outcome.steps, outcome.duration)

        fences = [step for step in outcome.steps if step.action is Action.FENCE]
        assert [step.ok for step in fences] == [False, True]
        assert outcome.fenced_old_master
        assert is_read_only(sandbox, 0)
        with pytest.raises(pymysql.err.OperationalError), blocker.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        blocker.close()
    assert_promoted(sandbox, 1)
    assert_follows(sandbox, 2, master=1)


# --- the successor's relay log ---------------------------------------------------------------


async def test_successor_that_cannot_catch_up_is_refused_then_promoted_in_time(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.execute(1, "STOP SLAVE SQL_THREAD")
    for number in range(20):
        sandbox.execute(0, f"INSERT INTO sandbox.t (note) VALUES ('backlog {number}')")
    master_position = value(sandbox, 0, "SELECT @@global.gtid_binlog_pos")
    eventually(
        lambda: (replica_status(sandbox, 1) or {}).get("Gtid_IO_Pos") == master_position,
        what="the successor received the backlog",
    )
    total = int(value(sandbox, 0, "SELECT COUNT(*) FROM sandbox.t"))
    # The successor's SQL thread is blocked on a table lock: it cannot apply the backlog.
    locker = NodeSession("locker", unix_socket=sandbox.node(1).socket)
    locker.__enter__()
    try:
        locker.rows("LOCK TABLES sandbox.t WRITE")
        sandbox.kill(0)

        with pytest.raises(FailoverRefused) as refused:
            await fail_over(sandbox, 1, [2, 3], timeouts=Timeouts(catch_up=0.2))
        show("refused: successor behind", refused.value.steps)
        assert "relay log" in refused.value.reason
        # Nothing promoted; replication running again wherever it was stopped.
        for index in (1, 2, 3):
            assert is_read_only(sandbox, index)
            status = replica_status(sandbox, index)
            assert status is not None
            assert status["Master_Port"] == sandbox.node(0).port
            assert status["Slave_SQL_Running"] == "Yes"
            assert status["Slave_IO_Running"] in ("Yes", "Connecting")
        restored = {s.instance for s in refused.value.steps if s.action is Action.RESTORE}
        assert restored == {key(sandbox, 1), key(sandbox, 2), key(sandbox, 3)}
        assert value(sandbox, 1, "SELECT @@global.gtid_slave_pos") != master_position

        # Given time (the lock goes after 0.3 s), it applies the backlog and is promoted.
        release = threading.Timer(0.3, lambda: locker.rows("UNLOCK TABLES"))
        release.start()
        try:
            outcome = await fail_over(sandbox, 1, [2, 3], timeouts=Timeouts(catch_up=5.0))
        finally:
            release.join()
        show("successor caught up, then promoted", outcome.steps, outcome.duration)
    finally:
        locker.close()
    # The SQL thread was started before the IO thread was stopped: the relay log was kept.
    actions = step_actions(outcome.steps, key(sandbox, 1))
    assert actions[:2] == [Action.START_SQL, Action.STOP_IO] or actions[:1] == [Action.STOP_IO]
    first_actions = step_actions(refused.value.steps, key(sandbox, 1))
    assert first_actions[:2] == [Action.START_SQL, Action.STOP_IO]
    catch_up = [s for s in outcome.steps if s.action is Action.CATCH_UP]
    assert catch_up[-1].ok
    assert catch_up[-1].duration >= 0.2
    assert_promoted(sandbox, 1)
    assert int(value(sandbox, 1, "SELECT COUNT(*) FROM sandbox.t")) == total
    for index in (2, 3):
        assert_follows(sandbox, index, master=1)
    assert_write_reaches(sandbox, 1, [2, 3], "after catch-up")


async def test_successor_with_both_threads_stopped_and_a_backlog_is_refused(
    sandbox_factory: Factory,
) -> None:
    """MariaDB would discard the relay log on START SLAVE: refuse rather than promote stale."""
    sandbox = sandbox_factory(nodes=3)
    sandbox.execute(1, "STOP SLAVE SQL_THREAD")
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('in the relay log only')")
    position = value(sandbox, 0, "SELECT @@global.gtid_binlog_pos")
    eventually(lambda: (replica_status(sandbox, 1) or {}).get("Gtid_IO_Pos") == position)
    sandbox.execute(1, "STOP SLAVE IO_THREAD")
    sandbox.kill(0)

    with pytest.raises(FailoverRefused) as refused:
        await fail_over(sandbox, 1, [2])
    assert "discards that relay log" in refused.value.reason
    assert not any(s.action is Action.START_SQL for s in refused.value.steps)
    assert is_read_only(sandbox, 1)
    status = replica_status(sandbox, 1)
    assert status is not None
    assert status["Master_Port"] == sandbox.node(0).port


async def test_unreachable_successor_is_refused_and_replication_restored(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.kill(0)
    sandbox.kill(1)

    with pytest.raises(FailoverRefused) as refused:
        await fail_over(sandbox, 1, [2, 3])
    assert "successor failed" in refused.value.reason
    for index in (2, 3):
        status = replica_status(sandbox, index)
        assert status is not None
        assert status["Master_Port"] == sandbox.node(0).port
        assert status["Slave_IO_Running"] in ("Yes", "Connecting")
        assert is_read_only(sandbox, index)


# --- the lease ---------------------------------------------------------------------------------


async def test_lease_lost_at_the_first_change_changes_nothing(sandbox_factory: Factory) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.kill(0)
    lost = LeaseLost("fencing token 7 is stale")

    async def guard() -> None:
        raise lost

    journal = StepJournal()
    with pytest.raises(LeaseLost) as raised:
        await fail_over(sandbox, 1, [2, 3], guard=guard, journal=journal)
    assert raised.value is lost
    assert not any(step.ok for step in journal.records if step.action is not Action.FENCE)
    for index in (1, 2, 3):
        status = replica_status(sandbox, index)
        assert status is not None
        assert status["Slave_IO_Running"] in ("Yes", "Connecting")
        assert status["Slave_SQL_Running"] == "Yes"
        assert is_read_only(sandbox, index)


async def test_lease_lost_before_promotion_stops_every_statement(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=4)
    sandbox.kill(0)
    calls = 0
    lost = LeaseLost("fencing token 7 is stale")

    async def guard() -> None:
        nonlocal calls
        calls += 1
        # Dead master (no fencing), IO stopped on nodes 2 and 3, then the successor's IO
        # thread and its replication: the 5th change is RESET SLAVE ALL.
        if calls >= 5:
            raise lost

    journal = StepJournal()
    with pytest.raises(LeaseLost) as raised:
        await fail_over(sandbox, 1, [2, 3], guard=guard, journal=journal)
    show("lease lost before RESET SLAVE ALL", journal.records)
    assert raised.value is lost
    assert calls == 5
    last = journal.records[-1]
    assert (last.action, last.ok, last.instance) == (
        Action.RESET_REPLICATION,
        False,
        key(sandbox, 1),
    )
    assert not any(step.action is Action.CHANGE_MASTER for step in journal.records)
    # The successor was not promoted; the others were stopped but not moved.
    successor = replica_status(sandbox, 1)
    assert successor is not None
    assert successor["Master_Port"] == sandbox.node(0).port
    assert is_read_only(sandbox, 1)
    for index in (2, 3):
        status = replica_status(sandbox, index)
        assert status is not None
        assert status["Master_Port"] == sandbox.node(0).port
        assert status["Slave_IO_Running"] == "No"


# --- replicas that cannot follow ---------------------------------------------------------------


async def test_replicas_that_cannot_follow_are_detached_and_the_rest_move(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=5)
    # node 2 will present credentials the new master refuses; node 3 has an errant transaction.
    sandbox.execute(2, "STOP SLAVE")
    sandbox.execute(2, "CHANGE MASTER TO master_user='nobody', master_password='wrong'")
    sandbox.execute(2, "START SLAVE")
    sandbox.execute(3, "INSERT INTO sandbox.t (note) VALUES ('errant')")
    sandbox.kill(0)

    outcome = await fail_over(sandbox, 1, [2, 3, 4], timeouts=Timeouts(verify=0.5))
    show("two replicas cannot follow, 5 nodes", outcome.steps, outcome.duration)

    assert outcome.repointed == (key(sandbox, 4),)
    assert set(outcome.lost) == {key(sandbox, 2), key(sandbox, 3)}
    assert "not replicating" in outcome.lost[key(sandbox, 2)]
    assert "1045" in outcome.lost[key(sandbox, 2)]
    assert "lacks" in outcome.lost[key(sandbox, 3)]
    assert Action.CHANGE_MASTER not in step_actions(outcome.steps, key(sandbox, 3))
    for index in (2, 3):
        status = replica_status(sandbox, index)
        assert status is not None
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("No", "No")
        assert is_read_only(sandbox, index)
    assert_promoted(sandbox, 1)
    assert_follows(sandbox, 4, master=1)
    assert_write_reaches(sandbox, 1, [4], "after partial")


async def test_replica_ahead_of_the_successor_is_lost(sandbox_factory: Factory) -> None:
    """A successor that lacks a transaction another replica has (a wrong candidate, forced):
    that replica would be refused by the successor (error 1236), so it is detached."""
    sandbox = sandbox_factory(nodes=4)
    sandbox.execute(1, "STOP SLAVE IO_THREAD")
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('not on the successor')")
    eventually(lambda: all(count_notes(sandbox, i, "not on the successor") for i in (2, 3)))
    sandbox.kill(0)

    outcome = await fail_over(sandbox, 1, [2, 3])
    assert set(outcome.lost) == {key(sandbox, 2), key(sandbox, 3)}
    assert all("lacks" in reason for reason in outcome.lost.values())
    assert_promoted(sandbox, 1)


# --- intermediate masters ----------------------------------------------------------------------


async def test_relocate_replicas_of_a_dead_intermediate_master(sandbox_factory: Factory) -> None:
    sandbox = sandbox_factory(nodes=4, chain=True)  # 0 -> 1 -> 2 -> 3
    sandbox.kill(1)

    outcome = await relocate_replicas(
        moves=[(key(sandbox, 2), key(sandbox, 0))], guard=no_guard, session=ACCESS
    )
    show("dead intermediate master: relocate", outcome.steps, outcome.duration)

    assert dict(outcome.moved) == {key(sandbox, 2): key(sandbox, 0)}
    assert dict(outcome.lost) == {}
    assert outcome.duration < 1.0
    assert_follows(sandbox, 2, master=0)
    assert_follows(sandbox, 3, master=2)
    assert_write_reaches(sandbox, 0, [2, 3], "after relocation")


async def test_relocate_under_a_sibling_of_the_dead_intermediate_master(
    sandbox_factory: Factory,
) -> None:
    sandbox = sandbox_factory(nodes=5)  # 0 -> 1, 2, 3, 4; then 3 and 4 move under 1
    port = sandbox.node(1).port
    for index in (3, 4):
        sandbox.execute(index, "STOP SLAVE")
        sandbox.execute(index, f"CHANGE MASTER TO master_host='127.0.0.1', master_port={port}")
        sandbox.execute(index, "START SLAVE")
    assert_write_reaches(sandbox, 0, [1, 2, 3, 4], "through the intermediate master")
    # The sibling lags: it has not applied a row that 3 and 4 have; it catches up after 0.2 s.
    sandbox.execute(2, "STOP SLAVE SQL_THREAD")
    assert_write_reaches(sandbox, 0, [3, 4], "sibling behind")
    sandbox.kill(1)
    catch_up = threading.Timer(0.2, lambda: sandbox.execute(2, "START SLAVE SQL_THREAD"))
    catch_up.start()
    try:
        outcome = await relocate_replicas(
            moves=[(key(sandbox, 3), key(sandbox, 2)), (key(sandbox, 4), key(sandbox, 2))],
            guard=no_guard,
            session=ACCESS,
        )
    finally:
        catch_up.join()
    show("dead intermediate master: relocate under a sibling", outcome.steps, outcome.duration)
    checks = [step for step in outcome.steps if step.action is Action.CHECK_POSITION]
    assert all(step.ok and step.duration >= 0.1 for step in checks)

    assert dict(outcome.moved) == {
        key(sandbox, 3): key(sandbox, 2),
        key(sandbox, 4): key(sandbox, 2),
    }
    assert dict(outcome.lost) == {}
    for index in (3, 4):
        assert_follows(sandbox, index, master=2)
    assert_write_reaches(sandbox, 0, [2, 3, 4], "after relocation under a sibling")


# --- semi-sync ---------------------------------------------------------------------------------


async def test_semi_sync_master_is_enabled_on_the_successor(sandbox_factory: Factory) -> None:
    sandbox = sandbox_factory(nodes=3, semi_sync=True)
    sandbox.execute(1, "SET GLOBAL rpl_semi_sync_master_enabled=OFF")
    sandbox.kill(0)

    outcome = await fail_over(sandbox, 1, [2], semi_sync_master=True)
    show("semi-sync, 3 nodes", outcome.steps, outcome.duration)

    actions = step_actions(outcome.steps, key(sandbox, 1))
    assert actions.index(Action.SEMI_SYNC_MASTER) < actions.index(Action.SET_WRITABLE)
    assert_promoted(sandbox, 1)
    assert value(sandbox, 1, "SELECT @@global.rpl_semi_sync_master_enabled") == 1
    eventually(
        lambda: (
            sandbox.execute(1, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")[0][1]
            == "1"
        ),
        what="the moved replica acknowledges as semi-sync",
    )
    assert_write_reaches(sandbox, 1, [2], "semi-sync write")
