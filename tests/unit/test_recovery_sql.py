"""The recovery executor's statements and pure decisions (orchestrator_recovery.sql), on rows
recorded from MariaDB 10.11 and MySQL 8.0 (tests/unit/rows) and variations of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator_recovery import sql
from orchestrator_recovery.failover.executor import fail_over_master, relocate_replicas
from orchestrator_recovery.failover.outcome import Action, FailoverOutcome, StepJournal
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.sql import Dialect, Positions, Progress
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

pytestmark = pytest.mark.unit

ROWS = Path(__file__).parent / "rows"
MARIADB = Dialect(Flavor.MARIADB)
MYSQL = Dialect(Flavor.MYSQL)
NEW_MASTER = InstanceKey("127.0.0.1", 63307)


def recorded(name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = json.loads((ROWS / f"{name}.json").read_text())["replica_status"]
    return rows[0]


def mariadb_row(**changes: Any) -> dict[str, Any]:
    return {**recorded("mariadb-10.11-replica"), **changes}


def status(**changes: Any) -> sql.ReplicaStatus:
    parsed = sql.parse_replica_status([mariadb_row(**changes)])
    assert parsed is not None
    return parsed


# --- statements --------------------------------------------------------------------------------


def test_mariadb_and_mysql_statements() -> None:
    assert MARIADB.set_read_only_sql == "SET GLOBAL read_only=1"
    assert MYSQL.set_read_only_sql == "SET GLOBAL super_read_only=1"
    assert (MARIADB.stop_io_sql, MYSQL.stop_io_sql) == (
        "STOP SLAVE IO_THREAD",
        "STOP REPLICA IO_THREAD",
    )
    assert MARIADB.reset_replication_sql == "RESET SLAVE ALL"
    assert MYSQL.reset_replication_sql == "RESET REPLICA ALL"
    assert MARIADB.replica_status_sql == "SHOW ALL SLAVES STATUS"
    assert MARIADB.semi_sync_master_on_sql == "SET GLOBAL rpl_semi_sync_master_enabled=ON"
    assert Dialect.kill_sql(42) == "KILL CONNECTION 42"


def test_change_master_keeps_credentials_unless_given() -> None:
    assert MARIADB.change_master_sql(NEW_MASTER) == (
        "CHANGE MASTER TO master_host='127.0.0.1', master_port=63307, master_use_gtid=slave_pos"
    )
    assert MARIADB.change_master_sql(NEW_MASTER, user="repl", password="it's") == (
        "CHANGE MASTER TO master_host='127.0.0.1', master_port=63307, master_user='repl', "
        "master_password='it\\'s', master_use_gtid=slave_pos"
    )
    assert MYSQL.change_master_sql(NEW_MASTER) == (
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=63307, "
        "SOURCE_AUTO_POSITION=1"
    )


def test_quote_escapes_quotes_and_backslashes() -> None:
    assert sql.quote("a'b\\c") == "'a\\'b\\\\c'"


# --- row parsers ---------------------------------------------------------------------------------


def test_parse_mariadb_replica_row() -> None:
    parsed = sql.parse_replica_status([recorded("mariadb-10.11-replica")])
    assert parsed is not None
    assert parsed.master == InstanceKey("127.0.0.1", 63306)
    assert (parsed.io_running, parsed.sql_running) == ("Yes", "Yes")
    assert parsed.using_gtid
    assert (parsed.gtid_io_pos, parsed.gtid_slave_pos) == ("0-1-8", "0-1-8")
    assert parsed.master_user == "repl"


def test_parse_mysql_replica_row() -> None:
    parsed = sql.parse_replica_status([recorded("mysql-8.0-replica")])
    assert parsed is not None
    assert parsed.master == InstanceKey("10.0.0.11", 3306)
    assert parsed.using_gtid
    assert parsed.retrieved_gtid_set == "3e11fa47-71ca-11e1-9e33-c80aa9429562:7-23"


def test_no_rows_means_no_replication() -> None:
    assert sql.parse_replica_status([]) is None
    named_only = mariadb_row(Connection_name="other")
    assert sql.parse_replica_status([named_only]) is None


def test_parse_positions() -> None:
    rows = [{"binlog": "0-1-9", "applied": "0-1-8\n"}]
    assert sql.parse_positions(rows) == Positions(binlog="0-1-9", applied="0-1-8")
    assert sql.parse_positions([]) == Positions()


def test_client_connections_spare_replication_and_our_pending_fence() -> None:
    rows = [
        {"id": 5, "user": "app", "command": "Sleep", "info": None},
        {"id": 6, "user": "system user", "command": "Slave_IO", "info": None},
        {"id": 7, "user": "repl", "command": "Binlog Dump GTID", "info": None},
        {"id": 8, "user": "event_scheduler", "command": "Daemon", "info": None},
        {"id": 9, "user": "orchestrator", "command": "Query", "info": "SET GLOBAL read_only=1"},
        {"id": 10, "user": "root", "command": "Query", "info": "UPDATE t SET a = 1"},
    ]
    assert sql.client_connection_ids(rows) == [5, 10]


# --- catching up ---------------------------------------------------------------------------------


def test_applied_when_slave_pos_reaches_the_received_position() -> None:
    assert sql.applied_check(MARIADB, status()).progress is Progress.DONE
    behind = status(Gtid_IO_Pos="0-1-27", Gtid_Slave_Pos="0-1-7")
    check = sql.applied_check(MARIADB, behind)
    assert check.progress is Progress.WAITING
    assert "0-1-7 of received 0-1-27" in check.detail


def test_applied_fails_on_a_stopped_sql_thread() -> None:
    broken = status(Slave_SQL_Running="No", Last_SQL_Errno=1062, Last_SQL_Error="Duplicate entry")
    assert sql.applied_check(MARIADB, broken).progress is Progress.FAILED
    stopped_behind = status(Slave_SQL_Running="No", Gtid_IO_Pos="0-1-9", Gtid_Slave_Pos="0-1-8")
    assert sql.applied_check(MARIADB, stopped_behind).progress is Progress.FAILED
    stopped_done = status(Slave_SQL_Running="No")
    assert sql.applied_check(MARIADB, stopped_done).progress is Progress.DONE


def test_applied_without_gtid_compares_coordinates() -> None:
    no_gtid = status(Using_Gtid="No", Exec_Master_Log_Pos=1000, Read_Master_Log_Pos=2081)
    assert sql.applied_check(MARIADB, no_gtid).progress is Progress.WAITING
    caught_up = status(Using_Gtid="No")
    assert sql.applied_check(MARIADB, caught_up).progress is Progress.DONE


def test_applied_on_mysql_compares_gtid_sets() -> None:
    row = recorded("mysql-8.0-replica")
    parsed = sql.parse_replica_status([row])
    assert parsed is not None
    assert sql.applied_check(MYSQL, parsed).progress is Progress.DONE
    behind = sql.parse_replica_status(
        [{**row, "Executed_Gtid_Set": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-20"}]
    )
    assert behind is not None
    check = sql.applied_check(MYSQL, behind)
    assert check.progress is Progress.WAITING
    assert "21-23" in check.detail


def test_received_waits_for_the_fenced_masters_position() -> None:
    assert sql.received_check(MARIADB, status(), "0-1-8").progress is Progress.DONE
    assert sql.received_check(MARIADB, status(), "0-1-9").progress is Progress.WAITING
    io_stopped = status(Slave_IO_Running="No")
    assert sql.received_check(MARIADB, io_stopped, "0-1-9").progress is Progress.FAILED


def test_starting_the_sql_thread_is_refused_when_mariadb_would_drop_the_relay_log() -> None:
    both_stopped = status(
        Slave_IO_Running="No", Slave_SQL_Running="No", Gtid_IO_Pos="0-1-9", Gtid_Slave_Pos="0-1-8"
    )
    refusal = sql.sql_thread_start_refusal(MARIADB, both_stopped)
    assert refusal is not None
    assert "discards" in refusal
    io_connecting = status(Slave_IO_Running="Connecting", Slave_SQL_Running="No")
    assert sql.sql_thread_start_refusal(MARIADB, io_connecting) is None
    nothing_to_apply = status(Slave_IO_Running="No", Slave_SQL_Running="No")
    assert sql.sql_thread_start_refusal(MARIADB, nothing_to_apply) is None


# --- following a new master -----------------------------------------------------------------------


def test_following_needs_both_threads_and_the_new_masters_first_event() -> None:
    master = InstanceKey("127.0.0.1", 63306)
    assert sql.following_check(status(), master).progress is Progress.DONE
    just_changed = status(Master_Log_File="")
    assert sql.following_check(just_changed, master).progress is Progress.WAITING
    connecting = status(Slave_IO_Running="Connecting", Last_IO_Errno=1045, Last_IO_Error="denied")
    assert sql.following_check(connecting, master).progress is Progress.WAITING


def test_following_fails_on_a_refused_position_or_the_wrong_master() -> None:
    master = InstanceKey("127.0.0.1", 63306)
    refused = status(
        Slave_IO_Running="No",
        Master_Log_File="",
        Last_IO_Errno=1236,
        Last_IO_Error="requested to start from GTID 0-1-8, which is not in the master's binlog",
    )
    check = sql.following_check(refused, master)
    assert check.progress is Progress.FAILED
    assert "1236" in check.detail
    assert sql.following_check(status(), NEW_MASTER).progress is Progress.FAILED
    assert sql.following_check(None, master).progress is Progress.FAILED


@pytest.mark.parametrize(
    ("replica", "master", "lost"),
    [
        (Positions(binlog="0-1-8", applied="0-1-8"), Positions(binlog="0-1-8"), False),
        (Positions(binlog="0-1-7", applied="0-1-7"), Positions(binlog="0-2-9"), False),
        (Positions(binlog="", applied="0-1-7"), Positions(binlog="0-1-8"), False),
        (Positions(binlog="0-1-9", applied="0-1-9"), Positions(binlog="0-1-8"), True),
        (Positions(binlog="0-4-8", applied="0-1-7"), Positions(binlog="0-1-7"), True),
        (Positions(binlog="0-4-8", applied="0-1-7"), Positions(binlog="0-1-8"), True),
        (Positions(binlog="0-1-8,1-4-1", applied="0-1-8"), Positions(binlog="0-1-9"), True),
    ],
)
def test_a_replica_with_transactions_the_new_master_lacks_cannot_follow(
    replica: Positions, master: Positions, lost: bool
) -> None:
    assert (sql.missing_on_master(MARIADB, replica, master) is not None) is lost


def test_mysql_replica_cannot_follow_with_extra_or_purged_transactions() -> None:
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    master = Positions(binlog=f"{uuid}:1-20", purged=f"{uuid}:1-5")
    assert sql.missing_on_master(MYSQL, Positions(binlog=f"{uuid}:1-18"), master) is None
    extra = sql.missing_on_master(MYSQL, Positions(binlog=f"{uuid}:1-21"), master)
    assert extra is not None
    assert "lacks" in extra
    purged = sql.missing_on_master(MYSQL, Positions(binlog=""), master)
    assert purged is not None
    assert "purged" in purged


# --- the executor's own checks (no server reached) -----------------------------------------------

ACCESS = MySQLAccess(user="orchestrator", password="x")
A, B, C = (InstanceKey("127.0.0.1", port) for port in (1, 2, 3))


async def never_called() -> None:
    raise AssertionError("the guard must not be reached")


async def test_a_plan_naming_the_successor_among_the_replicas_is_refused() -> None:
    with pytest.raises(OperationRefused, match="neither the failed master nor the successor"):
        await fail_over_master(
            failed=A, successor=B, repoint=[B, C], guard=never_called, session=ACCESS
        )
    with pytest.raises(OperationRefused, match="is the failed master"):
        await fail_over_master(
            failed=A, successor=A, repoint=[C], guard=never_called, session=ACCESS
        )
    with pytest.raises(OperationRefused, match="twice"):
        await relocate_replicas(moves=[(C, A), (C, B)], guard=never_called, session=ACCESS)


def test_journal_records_failures_and_outcome_freezes_lost() -> None:
    journal = StepJournal()
    with journal.step(A, Action.FENCE) as note:
        note.detail = "read_only=1"
    with pytest.raises(RuntimeError), journal.step(B, Action.STOP_IO):
        raise RuntimeError("boom")
    first, second = journal.records
    assert (first.ok, first.detail) == (True, "read_only=1")
    assert (second.ok, second.detail) == (False, "RuntimeError: boom")
    outcome = FailoverOutcome(
        failed=A,
        successor=B,
        repointed=(),
        lost={C: "unreachable"},
        fenced_old_master=False,
        old_master_detail="unreachable",
        steps=journal.records,
        duration=0.02,
    )
    with pytest.raises(TypeError):
        outcome.lost[A] = "x"  # type: ignore[index]
    assert "lost: 127.0.0.1:3 (unreachable)" in outcome.summary()
