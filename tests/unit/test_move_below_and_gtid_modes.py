"""``move-below``'s own check (siblings, GTID), the decisions and statements of
``enable-gtid`` / ``disable-gtid`` on recorded MariaDB and MySQL rows, and the three
``orchestrator -c`` commands against orchestrator's answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator_recovery.operations.gtid_sql import (
    binlog_gtid_pos_sql,
    disable_refusal,
    enable_refusal,
    enable_sql,
    file_pos_sql,
    gtid_fields,
    gtid_sql,
    parse_binlog_gtid_pos,
    parse_gtid_mode,
    position_mismatch,
    thread_statements,
)
from orchestrator_recovery.operations.moves_sql import sibling_refusal
from orchestrator_recovery.sql import Dialect, parse_replica_status
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor
from tests.unit.test_cli_client import FakeApi, run, sample
from tests.unit.test_moves_sql import M, R, T, server

pytestmark = pytest.mark.unit

ROWS = Path(__file__).resolve().parent / "rows"
MARIADB, MYSQL = Dialect(Flavor.MARIADB), Dialect(Flavor.MYSQL)
KEY = InstanceKey("127.0.0.1", 3307)


def recorded(name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = json.loads((ROWS / f"{name}.json").read_text())["replica_status"]
    return rows[0]


# --- move-below: siblings with GTID -----------------------------------------------------------


def test_siblings_on_gtid_may_move() -> None:
    assert sibling_refusal(server(R, M), server(T, M)) is None


@pytest.mark.parametrize(
    ("replica", "sibling", "reason"),
    [
        (server(R, M), server(R, M), "^cannot move 127.0.0.1:3307 below itself$"),
        (
            server(R, M),
            server(T, R),
            re.escape(
                "instances are not siblings: 127.0.0.1:3307, 127.0.0.1:3308 (127.0.0.1:3307 "
                "replicates from 127.0.0.1:3306, 127.0.0.1:3308 from 127.0.0.1:3307)"
            ),
        ),
        (server(R, M), server(M, None), "instances are not siblings: .* from nobody"),
        (
            server(R, None),
            server(T, M),
            "instances are not siblings: .*3307 replicates from nobody",
        ),
        (
            server(R, M, Using_Gtid="No"),
            server(T, M),
            r"127.0.0.1:3307 does not replicate with GTID \(Using_Gtid=No\): move-below moves "
            r"replicas with GTID only .*orchestrator -c enable-gtid -i 127.0.0.1:3307",
        ),
        (
            server(R, M),
            server(T, M, Using_Gtid="No"),
            r"127.0.0.1:3308 does not replicate with GTID .*enable-gtid -i 127.0.0.1:3308",
        ),
    ],
)
def test_move_below_refuses_what_is_not_a_gtid_sibling(
    replica: Any, sibling: Any, reason: str
) -> None:
    why = sibling_refusal(replica, sibling)
    assert why is not None
    assert re.search(reason, why), why


def test_a_mysql_sibling_without_auto_position() -> None:
    mysql = "8.0.36"
    replica = server(R, M, version=mysql, Using_Gtid=None, Auto_Position=0)
    why = sibling_refusal(replica, server(T, M, version=mysql, Using_Gtid=None, Auto_Position=1))
    assert why is not None
    assert "(Auto_Position=0)" in why


# --- enable-gtid / disable-gtid: who may switch -----------------------------------------------


def test_who_may_switch_on_recorded_rows() -> None:
    mariadb = parse_replica_status([recorded("mariadb-10.11-replica")])
    mysql = parse_replica_status([recorded("mysql-8.0-replica")])
    assert mariadb is not None
    assert mysql is not None
    assert mariadb.using_gtid
    assert mysql.using_gtid  # Auto_Position=1
    assert enable_refusal(KEY, mariadb, MARIADB) == f"{KEY} already uses GTID"
    assert enable_refusal(KEY, mysql, MYSQL, "ON") == f"{KEY} already uses GTID"
    assert disable_refusal(KEY, mariadb) is None
    assert disable_refusal(KEY, mysql) is None
    file_pos = parse_replica_status([recorded("mariadb-10.11-replica") | {"Using_Gtid": "No"}])
    assert enable_refusal(KEY, file_pos, MARIADB) is None
    assert disable_refusal(KEY, file_pos) == f"{KEY} is not using GTID"
    no_auto = parse_replica_status([recorded("mysql-8.0-replica") | {"Auto_Position": 0}])
    assert enable_refusal(KEY, no_auto, MYSQL, "ON") is None
    refused = enable_refusal(KEY, no_auto, MYSQL, "OFF_PERMISSIVE")
    assert refused is not None
    assert "gtid_mode=OFF_PERMISSIVE: SOURCE_AUTO_POSITION=1 needs gtid_mode=ON" in refused
    for why in (enable_refusal(KEY, None, MARIADB), disable_refusal(KEY, None)):
        assert why == f"instance is not a replica: {KEY}"
    detached = parse_replica_status([recorded("mariadb-10.11-replica") | {"Master_Host": "//h"}])
    why = enable_refusal(KEY, detached, MARIADB)
    assert why is not None
    assert "has no master it can reach (detached, or reset)" in why


# --- where the replica is: coordinates against gtid_slave_pos ---------------------------------


def status_at(file: str, position: int, gtid_slave_pos: str) -> Any:
    row = recorded("mariadb-10.11-replica") | {
        "Relay_Master_Log_File": file,
        "Exec_Master_Log_Pos": position,
        "Gtid_Slave_Pos": gtid_slave_pos,
    }
    return parse_replica_status([row])


def test_the_two_positions_must_name_the_same_transaction() -> None:
    status = status_at("mariadb-bin.000002", 1234, "0-1-42,5-9-3")
    assert position_mismatch(KEY, M, status, "0-1-42") is None  # domain 5: a former master's
    assert position_mismatch(KEY, M, status, "0-1-42,5-9-3") is None
    behind = position_mismatch(KEY, M, status, "0-1-43")
    assert behind == (
        f"{KEY} executed up to mariadb-bin.000002:1234 of {M}, which is GTID position 0-1-43 "
        "there, but its gtid_slave_pos is 0-1-42,5-9-3 (domain 0)"
    )
    other_server = position_mismatch(KEY, M, status, "0-2-42")
    assert other_server is not None
    assert "(domain 0)" in other_server
    empty = position_mismatch(KEY, M, status_at("mariadb-bin.000002", 1234, ""), "0-1-42")
    assert empty is not None
    assert "its gtid_slave_pos is empty" in empty
    assert position_mismatch(KEY, M, status_at("mariadb-bin.000001", 4, ""), "") is None
    unmapped = position_mismatch(KEY, M, status, None)
    assert unmapped is not None
    assert "BINLOG_GTID_POS is NULL" in unmapped
    nothing = position_mismatch(KEY, M, status_at("", 0, "0-1-1"), "0-1-1")
    assert nothing is not None
    assert "no executed coordinates" in nothing
    bad = position_mismatch(KEY, M, status, "x-y")
    assert bad is not None
    assert bad.startswith("unreadable GTID position")


def test_reading_the_masters_answers() -> None:
    assert binlog_gtid_pos_sql("mariadb-bin.000002", 1234) == (
        "SELECT BINLOG_GTID_POS('mariadb-bin.000002', 1234) AS position"
    )
    assert binlog_gtid_pos_sql("it's", 4).startswith("SELECT BINLOG_GTID_POS('it\\'s', 4)")
    assert parse_binlog_gtid_pos([{"position": "0-1-42"}]) == "0-1-42"
    assert parse_binlog_gtid_pos([{"position": b"0-1-42,\n1-1-3"}]) == "0-1-42,1-1-3"
    assert parse_binlog_gtid_pos([{"position": None}]) is None
    assert parse_binlog_gtid_pos([]) is None
    assert parse_gtid_mode([{"gtid_mode": "on"}]) == "ON"
    assert parse_gtid_mode([]) == ""


def test_gtid_fields_of_the_instance_json() -> None:
    assert gtid_fields([recorded("mariadb-10.11-replica")]) == {
        "UsingMariaDBGTID": True,
        "UsingOracleGTID": False,
        "UsingGtid": "Slave_Pos",
    }
    assert (
        gtid_fields([recorded("mariadb-10.11-replica") | {"Using_Gtid": "No"}])["UsingMariaDBGTID"]
        is False
    )
    assert gtid_fields([recorded("mysql-8.0-replica")]) == {
        "UsingMariaDBGTID": False,
        "UsingOracleGTID": True,
        "UsingGtid": "",
    }
    assert gtid_fields([]) == {"UsingMariaDBGTID": False, "UsingOracleGTID": False, "UsingGtid": ""}


# --- statements -------------------------------------------------------------------------------


def test_statements_by_flavor() -> None:
    assert enable_sql(MARIADB) == "CHANGE MASTER TO master_use_gtid=slave_pos"
    assert enable_sql(MYSQL) == "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1"
    assert file_pos_sql(MARIADB, "mariadb-bin.000002", 1234) == (
        "CHANGE MASTER TO master_use_gtid=no, master_log_file='mariadb-bin.000002', "
        "master_log_pos=1234"
    )
    assert file_pos_sql(MYSQL, "binlog.000012", 5423) == (
        "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=0, SOURCE_LOG_FILE='binlog.000012', "
        "SOURCE_LOG_POS=5423"
    )
    assert gtid_sql(MARIADB, "current_pos") == "CHANGE MASTER TO master_use_gtid=current_pos"
    assert gtid_sql(MYSQL, "") == enable_sql(MYSQL)
    with pytest.raises(ValueError, match="no master_use_gtid mode 'no'"):
        gtid_sql(MARIADB, "no")


@pytest.mark.parametrize(
    ("io", "sql", "stops", "starts"),
    [
        ("Yes", "Yes", ("STOP SLAVE",), ("START SLAVE",)),
        ("Connecting", "Yes", ("STOP SLAVE",), ("START SLAVE",)),
        ("Yes", "No", ("STOP SLAVE IO_THREAD",), ("START SLAVE IO_THREAD",)),
        ("No", "Yes", ("STOP SLAVE SQL_THREAD",), ("START SLAVE SQL_THREAD",)),
        ("No", "No", (), ()),
    ],
)
def test_the_threads_that_ran_run_again(
    io: str, sql: str, stops: tuple[str, ...], starts: tuple[str, ...]
) -> None:
    row = recorded("mariadb-10.11-replica") | {"Slave_IO_Running": io, "Slave_SQL_Running": sql}
    status = parse_replica_status([row])
    assert status is not None
    assert thread_statements(MARIADB, status) == (stops, starts)
    mysql = parse_replica_status([recorded("mysql-8.0-replica")])
    assert mysql is not None
    assert thread_statements(MYSQL, mysql) == (("STOP REPLICA",), ("START REPLICA",))


# --- orchestrator -c ---------------------------------------------------------------------------


def test_the_commands_print_what_orchestrator_client_prints() -> None:
    moved = sample("move-below")  # orchestrator's own answer to move-below
    enabled = {"Code": "OK", "Message": "Enabled GTID on h1:22309", "Details": moved["Details"]}
    refusal = {"Code": "ERROR", "Message": "move-below refused: instances are not siblings"}
    api = FakeApi(
        {
            "move-below/h1/22309/h2/22308": (200, moved),
            "move-below/h1/22309/h3/22308": (409, refusal),
            "enable-gtid/h1/22309": (200, enabled),
            "disable-gtid/h1/22309": (200, enabled | {"Message": "Disabled GTID on h1:22309"}),
        }
    )
    below = "127.0.0.1:22309<127.0.0.1:22308\n"
    assert run(["-c", "move-below", "-i", "h1:22309", "-d", "h2:22308"], api) == (0, below)
    assert run(["-c", "move-below", "-i", "h1:22309", "-s", "h2:22308"], api) == (0, below)
    assert run(["-c", "move-below", "-i", "h1:22309", "-d", "h3:22308"], api) == (1, "")
    assert run(["-c", "enable-gtid", "-i", "h1:22309"], api) == (0, "127.0.0.1:22309\n")
    assert run(["-c", "disable-gtid", "-i", "h1:22309"], api) == (0, "127.0.0.1:22309\n")
    assert {r.method for r in api.requests} == {"POST"}
    assert run(["-c", "move-below", "-i", "h1:22309"], api)[0] == 2  # no sibling
    assert run(["-c", "enable-gtid"], api)[0] == 2  # no instance
