"""Pure decisions of the control operations, part 2 (orchestrator_recovery.operations.control_sql),
on rows as MariaDB 10.11 answers them."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_recovery.operations.control_sql import (
    Replication,
    binlog_order,
    change_host_sql,
    delay_sql,
    detached_host,
    parse_binary_logs,
    parse_replica_hosts,
    parse_replication,
    parse_seconds,
    purge_refusal,
    reattached_host,
    skip_refusal,
    thread_statements,
)
from orchestrator_recovery.operations.errant_sql import (
    PLACEHOLDER_STATEMENT,
    GtidState,
    binlog_events_sql,
    errant_position,
    gtid_list_of,
    gtid_of_event,
    inject_refusal,
    inject_sql,
    is_errant,
    list_position,
    next_page_start,
    not_logged,
    parse_gtid_list,
    parse_gtid_state,
    state_without,
    would_break,
)
from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import MariaGtid, MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.unit

KEY = InstanceKey("127.0.0.1", 3306)
G = MariaGtid.parse
P = MariaGtidPosition.parse


def status_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Connection_name": "",
        "Master_Host": "127.0.0.1",
        "Master_Port": 63400,
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes",
        "Master_Log_File": "mariadb-bin.000003",
        "Read_Master_Log_Pos": 900,
        "Relay_Master_Log_File": "mariadb-bin.000002",
        "Exec_Master_Log_Pos": 400,
        "Last_SQL_Errno": 0,
        "Last_SQL_Error": "",
        "Last_IO_Error": "",
        "Using_Gtid": "Slave_Pos",
        "SQL_Delay": 0,
        "Gtid_IO_Pos": "0-1-15",
        "Gtid_Slave_Pos": "0-1-15",
    }
    return row | overrides


def replication(**overrides: Any) -> Replication:
    parsed = parse_replication([status_row(**overrides)])
    assert parsed is not None
    return parsed


def test_parse_replication_reads_the_default_connection() -> None:
    other = status_row(Connection_name="other", Master_Host="10.0.0.9")
    parsed = parse_replication([other, status_row(Slave_IO_Running="Connecting")])
    assert parsed is not None
    assert (parsed.master_host, parsed.master_port, parsed.gtid_mode) == (
        "127.0.0.1",
        63400,
        "slave_pos",
    )
    assert parsed.io_active and not parsed.io_running and parsed.sql_running
    assert parsed.fields()["ExecBinlogCoordinates"] == {
        "LogFile": "mariadb-bin.000002",
        "LogPos": 400,
        "Type": 0,
    }
    assert parse_replication([]) is None
    assert parse_replication([status_row(Master_Host="")]) is None  # left by RESET SLAVE


def test_detached_hosts_are_reversible() -> None:
    assert detached_host("db1") == "//db1"
    assert detached_host("//db1") == "//db1"
    assert reattached_host("//db1") == "db1"
    detached = replication(Master_Host="//127.0.0.1")
    assert detached.detached and detached.fields()["MasterKey"]["Hostname"] == "//127.0.0.1"
    assert change_host_sql("//db1") == "CHANGE MASTER TO master_host='//db1'"
    assert (
        change_host_sql("db'1", "slave_pos")
        == "CHANGE MASTER TO master_host='db\\'1', master_use_gtid=slave_pos"
    )
    assert change_host_sql("db1", "no") == "CHANGE MASTER TO master_host='db1'"
    assert change_host_sql("db1", "no", ("mariadb-bin.000002", 400)) == (
        "CHANGE MASTER TO master_host='db1', master_log_file='mariadb-bin.000002', "
        "master_log_pos=400"
    )


@pytest.mark.parametrize(
    ("io", "sql", "expected"),
    [
        ("Yes", "Yes", (("STOP SLAVE",), ("START SLAVE",))),
        ("Connecting", "Yes", (("STOP SLAVE",), ("START SLAVE",))),
        ("Yes", "No", (("STOP SLAVE IO_THREAD",), ("START SLAVE IO_THREAD",))),
        ("No", "Yes", (("STOP SLAVE SQL_THREAD",), ("START SLAVE SQL_THREAD",))),
        ("No", "No", ((), ())),
    ],
)
def test_thread_statements_keep_a_stopped_thread_stopped(
    io: str, sql: str, expected: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    assert thread_statements(replication(Slave_IO_Running=io, Slave_SQL_Running=sql)) == expected


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("5", 5), (" 3600 ", 3600)])
def test_seconds(text: str, seconds: int) -> None:
    assert parse_seconds(text) == seconds
    assert delay_sql(seconds) == f"CHANGE MASTER TO master_delay={seconds}"


@pytest.mark.parametrize("text", ["", "-1", "1.5", "x", "2147483648"])
def test_bad_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid value provided for seconds"):
        parse_seconds(text)


def test_skip_refusal() -> None:
    failed = replication(Slave_SQL_Running="No", Last_SQL_Errno=1062, Last_SQL_Error="dup")
    assert skip_refusal(KEY, failed, mysql_gtid=False) is None
    assert "not a replica" in str(skip_refusal(KEY, None, mysql_gtid=False))
    assert "SQL thread is running" in str(skip_refusal(KEY, replication(), mysql_gtid=False))
    stopped = replication(Slave_SQL_Running="No")
    assert "No SQL error" in str(skip_refusal(KEY, stopped, mysql_gtid=False))
    assert "MySQL GTID" in str(skip_refusal(KEY, failed, mysql_gtid=True))


def test_binary_logs_and_replica_hosts() -> None:
    rows: list[dict[str, Any]] = [
        {"Log_name": "mariadb-bin.000009", "File_size": 1},
        {"Log_name": "mariadb-bin.000010"},
    ]
    assert parse_binary_logs(rows) == ["mariadb-bin.000009", "mariadb-bin.000010"]
    assert binlog_order("mariadb-bin.000010") == ("mariadb-bin", 10)
    assert binlog_order("odd") == ("odd", -1)
    hosts = [
        {"Server_id": 2, "Host": "127.0.0.1", "Port": 63401, "Master_id": 1},
        {"Server_id": 7, "Host": "", "Port": 3306, "Master_id": 1},
    ]
    assert parse_replica_hosts(hosts) == ([InstanceKey("127.0.0.1", 63401)], [7])


LOGS = ["mariadb-bin.000001", "mariadb-bin.000002", "mariadb-bin.000003"]


def test_purge_refusal_by_file() -> None:
    behind = replication(Using_Gtid="No", Relay_Master_Log_File="mariadb-bin.000001")
    at = replication(Using_Gtid="No", Relay_Master_Log_File="mariadb-bin.000002")
    target = "mariadb-bin.000002"
    assert purge_refusal(KEY, target, LOGS, {"r1": at}) is None
    why = purge_refusal(KEY, target, LOGS, {"r1": at, "r2": behind})
    assert why is not None and "replica r2 has only applied up to mariadb-bin.000001:400" in why
    nothing = replication(Using_Gtid="No", Relay_Master_Log_File="", Exec_Master_Log_Pos=4)
    assert purge_refusal(KEY, target, LOGS, {"r1": nothing}) is not None
    assert "not found" in str(purge_refusal(KEY, "mariadb-bin.000009", LOGS, {}))
    assert "cannot read it" in str(purge_refusal(KEY, target, LOGS, {"r9": "cannot read it"}))


def test_purge_refusal_by_gtid_position() -> None:
    start = list_position(parse_gtid_list("[0-1-10,0-3-12,1-1-4]"))
    assert start == P("0-3-12,1-1-4")
    done = replication(Relay_Master_Log_File="", Gtid_Slave_Pos="0-1-13,1-1-4")
    assert purge_refusal(KEY, "mariadb-bin.000002", LOGS, {"r": done}, start=start) is None
    behind = replication(Gtid_Slave_Pos="0-1-11,1-1-4")
    why = purge_refusal(KEY, "mariadb-bin.000002", LOGS, {"r": behind}, start=start)
    assert why is not None and "has only applied up to 0-1-11,1-1-4" in why


UPSTREAM = frozenset({1})


def test_errant_is_what_the_master_lacks_and_nobody_upstream_wrote() -> None:
    master = P("0-1-10")
    assert is_errant(G("0-3-11"), master, UPSTREAM)  # ahead
    assert is_errant(G("0-3-10"), master, UPSTREAM)  # same number, another server: diverged
    assert is_errant(G("5-3-1"), master, UPSTREAM)  # a domain the master never had
    assert not is_errant(G("0-1-12"), master, UPSTREAM)  # the master's own, newer than read
    assert not is_errant(G("0-3-9"), master, UPSTREAM)  # behind
    assert not is_errant(G("0-1-10"), master, UPSTREAM)
    assert errant_position(P("0-3-12,1-1-4"), master, UPSTREAM) == P("0-3-12")
    assert errant_position(P("0-1-10"), master, UPSTREAM) == MariaGtidPosition()


def test_binlog_events() -> None:
    gtid_row = {"Event_type": "Gtid", "Info": "BEGIN GTID 0-3-11 cid=17"}
    ddl_row = {"Event_type": "Gtid", "Info": "GTID 0-3-12"}
    assert gtid_of_event(gtid_row) == G("0-3-11")
    assert gtid_of_event(ddl_row) == G("0-3-12")
    assert gtid_of_event({"Event_type": "Query", "Info": "GTID 1-1-1"}) is None
    head = [
        {"Event_type": "Format_desc", "Info": "Server ver: 10.11"},
        {"Event_type": "Gtid_list", "Info": "[0-1-10,0-3-12]"},
        {"Event_type": "Binlog_checkpoint", "Info": "mariadb-bin.000002"},
    ]
    assert gtid_list_of(head) == (G("0-1-10"), G("0-3-12"))
    assert gtid_list_of(head[:1]) is None
    assert parse_gtid_list("[]") == ()
    with pytest.raises(InvalidGtid):
        parse_gtid_list("0-x-1")


def state(binlog: str, *, server_id: int = 1, read_only: bool = False) -> GtidState:
    return GtidState(
        version="10.11.6-MariaDB-log",
        server_id=server_id,
        read_only=read_only,
        log_bin=True,
        binlog=P(binlog),
        applied=MariaGtidPosition(),
        state=(),
        strict=True,
    )


def test_parse_gtid_state() -> None:
    row = {
        "version": "10.11.6-MariaDB-log",
        "server_id": 4,
        "read_only": 1,
        "log_bin": 1,
        "binlog": "0-4-13",
        "applied": "0-3-12",
        "state": "0-1-10,0-3-12,0-4-13",
        "strict": 1,
    }
    parsed = parse_gtid_state([row])
    assert parsed.is_mariadb and parsed.read_only and parsed.strict
    assert (parsed.binlog, parsed.applied) == (P("0-4-13"), P("0-3-12"))
    assert parsed.state == (G("0-1-10"), G("0-3-12"), G("0-4-13"))


def test_state_without_errant_keeps_what_was_applied_as_the_position() -> None:
    former = (G("0-1-10"), G("0-3-12"), G("0-4-13"))
    master = P("0-3-12")
    assert state_without(former, master, UPSTREAM | {3}, P("0-3-12")) == "0-1-10,0-3-12"
    # applied beyond what the binary log held (replicated events it did not log): listed last
    assert state_without(former, master, UPSTREAM | {3}, P("0-4-22")) == "0-1-10,0-3-12,0-4-22"


def test_inject_refusal_and_statements() -> None:
    master = state("0-1-10")
    assert inject_refusal([G("0-3-11"), G("0-3-12")], master) is None
    why = inject_refusal([G("0-3-10")], master)
    assert why is not None and "diverged" in why
    assert "read-only" in str(inject_refusal([G("0-3-11")], state("0-1-10", read_only=True)))
    assert inject_sql(G("2-3-11")) == (
        "SET SESSION gtid_domain_id = 2, SESSION server_id = 3, SESSION gtid_seq_no = 11",
        PLACEHOLDER_STATEMENT,
    )


def test_not_logged_finds_injections_the_master_did_not_take() -> None:
    injected = [G("0-4-19"), G("0-4-20")]
    assert not_logged(injected, (G("0-1-18"), G("0-4-20"))) == []
    assert not_logged(injected, (G("0-1-21"), G("0-4-19"))) == [G("0-4-20")]
    assert not_logged(injected, (G("0-1-21"),)) == injected


def test_would_break_a_replica_with_its_own_errant_transactions() -> None:
    injected = [G("0-4-19"), G("0-4-20")]
    assert would_break(injected, state("0-1-18")) is None
    why = would_break(injected, state("0-3-19"))
    assert why is not None and "0-3-19" in why and "0-4-19" in why
    assert would_break([G("1-4-3")], state("0-3-19")) is None  # another domain


def test_binlog_events_are_always_read_with_a_limit_and_paged_by_position() -> None:
    assert binlog_events_sql("b.000002", limit=10) == "SHOW BINLOG EVENTS IN 'b.000002' LIMIT 10"
    assert (
        binlog_events_sql("b.000002", limit=10, start=4711)
        == "SHOW BINLOG EVENTS IN 'b.000002' FROM 4711 LIMIT 10"
    )
    assert next_page_start([{"End_log_pos": 256}, {"End_log_pos": "4711"}]) == 4711
    assert next_page_start([]) is None
