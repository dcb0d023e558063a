"""The decisions of the GTID moves (``orchestrator_recovery.operations.moves_sql``) on canned server
answers, and the move commands of ``orchestrator -c`` against orchestrator's real answers."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from orchestrator_recovery.operations.moves import change_master_sql
from orchestrator_recovery.operations.moves_sql import (
    Server,
    missing,
    parse_gtid_mode,
    parse_lag,
    parse_server,
    refusal,
    version_tuple,
)
from orchestrator_recovery.sql import Positions, parse_replica_status
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_cli_client import FakeApi, run, sample

pytestmark = pytest.mark.unit

M, R, T = (InstanceKey("127.0.0.1", port) for port in (3306, 3307, 3308))
VERSION = "10.11.6-MariaDB-log"


def status(master: InstanceKey, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Connection_name": "",
        "Master_Host": master.host,
        "Master_Port": master.port,
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes",
        "Master_Log_File": "mariadb-bin.000001",
        "Using_Gtid": "Slave_Pos",
        "Seconds_Behind_Master": 0,
        "SQL_Delay": 0,
    }
    return row | extra


def server(
    key: InstanceKey,
    master: InstanceKey | None,
    *,
    binlog: str = "0-1-10",
    applied: str = "0-1-10",
    version: str = VERSION,
    log_bin: str = "1",
    log_slave_updates: str = "1",
    binlog_format: str = "ROW",
    **extra: Any,
) -> Server:
    rows = [status(master, **extra)] if master is not None else []
    variables = [
        {
            "version": version,
            "log_bin": log_bin,
            "log_slave_updates": log_slave_updates,
            "binlog_format": binlog_format,
        }
    ]
    return parse_server(
        key,
        variables,
        parse_replica_status(rows),
        Positions(binlog=binlog, applied=applied),
        parse_lag(rows),
        parse_gtid_mode(rows),
    )


def test_a_sibling_with_everything_can_be_the_new_master() -> None:
    replica, target = server(R, M), server(T, M, binlog="0-1-12")
    assert refusal(replica, target) is None
    assert missing(replica, target) is None
    assert refusal(replica, server(M, None)) is None  # the master itself
    assert replica.gtid_mode == "slave_pos"
    assert replica.lag == 0


@pytest.mark.parametrize(
    ("replica", "target", "descendants", "reason"),
    [
        (server(R, M), server(R, M), (), "below itself"),
        (server(R, M), server(T, R), (R, M), "cannot move it below its own replica"),
        (server(M, None), server(T, M), (M,), "cannot move it below its own replica"),
        (server(R, None), server(T, M), (M,), "is not a replica"),
        (server(R, M, Using_Gtid="No"), server(T, M), (M,), "does not replicate with GTID"),
        (server(R, M), server(T, M, log_bin="0"), (M,), "log_bin is off"),
        (server(R, M), server(T, M, log_slave_updates="OFF"), (M,), "log_slave_updates"),
        (server(R, M), server(T, M, version="8.0.36"), (M,), "not of the same flavor"),
        (
            server(R, M, version="10.6.16-MariaDB"),
            server(T, M),
            (M,),
            "has a higher version",
        ),
        (
            server(R, M, binlog_format="STATEMENT"),
            server(T, M),
            (M,),
            "binlog_format ROW",
        ),
        (server(R, M), server(T, M, SQL_Delay=3600), (M,), r"is delayed \(SQL_Delay 3600s\)"),
        (server(R, M), server(T, M, Slave_SQL_Running="No"), (M,), "is not replicating"),
        (
            server(R, M),
            server(T, M, Seconds_Behind_Master=21),
            (M,),
            "is lagging .*ReasonableMaintenanceReplicationLagSeconds=20",
        ),
    ],
)
def test_impossible_moves_are_refused_with_the_reason(
    replica: Server, target: Server, descendants: tuple[InstanceKey, ...], reason: str
) -> None:
    why = refusal(replica, target, descendants=descendants)
    assert why is not None
    assert re.search(reason, why), why


def test_lag_within_the_reasonable_limit_is_fine() -> None:
    assert refusal(server(R, M), server(T, M, Seconds_Behind_Master=20)) is None
    assert refusal(server(R, M), server(T, M, Seconds_Behind_Master=5), max_lag=4) is not None


@pytest.mark.parametrize(
    ("replica", "target"),
    [
        # the target is behind: the replica would ask for a GTID it never logged
        ({"binlog": "0-1-12", "applied": "0-1-12"}, {"binlog": "0-1-10"}),
        # an errant transaction on the replica (its own server_id)
        ({"binlog": "0-2-11", "applied": "0-1-10"}, {"binlog": "0-1-10"}),
        # another domain the target never saw
        ({"binlog": "0-1-10,1-2-3", "applied": "0-1-10"}, {"binlog": "0-1-10"}),
    ],
)
def test_a_target_missing_transactions_is_refused_with_1236(
    replica: dict[str, str], target: dict[str, str]
) -> None:
    why = missing(server(R, M, **replica), server(T, M, **target))
    assert why is not None
    assert "has transactions the new master lacks" in why
    assert why.endswith("it would stop with error 1236")


def test_a_target_ahead_has_everything() -> None:
    replica = server(R, M, binlog="0-1-10,1-5-2", applied="0-1-10,1-5-2")
    assert missing(replica, server(T, M, binlog="0-1-30,1-5-2,2-9-1")) is None


def test_parsers() -> None:
    assert parse_lag([status(M, Seconds_Behind_Master=None)]) is None
    assert parse_lag([status(M, Connection_name="other", Seconds_Behind_Master=5)]) is None
    assert parse_gtid_mode([status(M, Using_Gtid="Current_Pos")]) == "current_pos"
    assert parse_gtid_mode([]) == ""
    assert version_tuple("10.11.6-MariaDB-log") == (10, 11)
    assert version_tuple("junk") == (0, 0)
    assert server(T, None).dialect.is_mariadb
    assert not server(T, None, version="8.0.36").dialect.is_mariadb
    with pytest.raises(ValueError, match="no answer"):
        parse_server(T, [], None, Positions(), None)
    mysql = dataclasses.replace(server(T, M), version="8.4.0")
    assert not mysql.dialect.is_mariadb


def test_change_master_keeps_gtid_and_credentials() -> None:
    assert change_master_sql(T) == (
        "CHANGE MASTER TO master_host='127.0.0.1', master_port=3308, master_use_gtid=slave_pos"
    )
    assert change_master_sql(InstanceKey("db-x", 3306), "current_pos").endswith(
        "master_use_gtid=current_pos"
    )
    with pytest.raises(ValueError, match="no master_use_gtid mode"):
        change_master_sql(T, "no")


# --- orchestrator -c, against orchestrator's answers ------------------------------------------


def test_move_commands_print_instance_below_master() -> None:
    api = FakeApi(
        {
            "relocate/h1/22309/h2/22308": (200, sample("relocate")),
            "move-below-gtid/h1/22309/h2/22308": (200, sample("move-below")),
            "move-gtid/h1/22309/h2/22308": (200, sample("move-below")),  # orchestrator-client's
            "move-up/h1/22309": (200, sample("move-up")),
            "repoint/h1/22309": (200, sample("move-below")),
            "repoint/h1/22309/h2/22308": (200, sample("move-below")),
            "can-replicate-from/h1/22309/h2/22308": (
                200,
                {"Code": "OK", "Message": "true", "Details": {"Hostname": "h2", "Port": 22308}},
            ),
            "can-replicate-from/h1/22309/h3/22308": (
                200,
                {"Code": "OK", "Message": "false", "Details": {"Hostname": "h3", "Port": 22308}},
            ),
        }
    )
    below = "127.0.0.1:22309<127.0.0.1:22308\n"
    assert run(["-c", "relocate", "-i", "h1:22309", "-d", "h2:22308"], api) == (0, below)
    assert run(["-c", "move-gtid", "-i", "h1:22309", "-d", "h2:22308"], api) == (0, below)
    assert run(["-c", "move-below-gtid", "-i", "h1:22309", "-d", "h2:22308"], api) == (0, below)
    assert run(["-c", "move-up", "-i", "h1:22309"], api) == (
        0,
        "127.0.0.1:22309<127.0.0.1:22306\n",
    )
    assert run(["-c", "repoint", "-i", "h1:22309"], api) == (0, below)
    assert run(["-c", "repoint", "-i", "h1:22309", "-d", "h2:22308"], api) == (0, below)
    yes = run(["-c", "can-replicate-from", "-i", "h1:22309", "-d", "h2:22308"], api)
    assert yes == (0, "h2:22308\n")
    assert run(["-c", "can-replicate-from", "-i", "h1:22309", "-d", "h3:22308"], api) == (0, "")
    assert [r.method for r in api.requests][:5] == ["POST"] * 5
    assert run(["-c", "relocate", "-i", "h1:22309"], api)[0] == 2  # no -d
