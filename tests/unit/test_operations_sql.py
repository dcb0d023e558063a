"""Row parsers and statements of the instance control operations (orchestrator_recovery
.operations_sql), fed with rows shaped as MariaDB answers them."""

from __future__ import annotations

import pytest

from orchestrator_recovery.operations import instance_sql as sql
from orchestrator_recovery.operations.instance_sql import InstanceState, ReplicaThreads

pytestmark = pytest.mark.unit


def status_row(io: str = "Yes", sql_thread: str = "Yes", host: str = "127.0.0.1") -> dict:
    return {
        "Master_Host": host,
        "Master_Port": 22306,
        "Slave_IO_Running": io,
        "Slave_SQL_Running": sql_thread,
        "Last_IO_Error": "",
        "Last_SQL_Error": "",
    }


def test_statements_are_what_mariadb_and_mysql_both_accept() -> None:
    assert sql.STOP_REPLICA == "STOP SLAVE"
    assert sql.START_REPLICA == "START SLAVE"
    assert sql.SET_READ_ONLY == "SET GLOBAL read_only = 1"
    assert sql.SET_WRITEABLE == "SET GLOBAL read_only = 0"


def test_no_row_is_not_a_replica() -> None:
    assert sql.parse_replica_status([]) is None


def test_a_row_without_master_host_is_not_a_replica() -> None:
    assert sql.parse_replica_status([status_row(host="")]) is None


@pytest.mark.parametrize(
    ("io", "sql_thread", "running", "stopped"),
    [
        ("Yes", "Yes", True, False),
        ("No", "No", False, True),
        ("Connecting", "Yes", False, False),
        ("No", "Yes", False, False),
    ],
)
def test_threads(io: str, sql_thread: str, running: bool, stopped: bool) -> None:
    threads = sql.parse_replica_status([status_row(io, sql_thread)])
    assert threads is not None
    assert (threads.running, threads.stopped) == (running, stopped)
    assert (threads.master_host, threads.master_port) == ("127.0.0.1", 22306)


def test_read_only() -> None:
    assert sql.parse_read_only([{"read_only": 1}]) is True
    assert sql.parse_read_only([{"read_only": "0"}]) is False
    with pytest.raises(ValueError, match="read_only"):
        sql.parse_read_only([])


def test_details_of_a_stopped_read_only_replica() -> None:
    state = InstanceState(
        read_only=True,
        replica=ReplicaThreads("db1", 3306, io_running=False, sql_running=False),
    )
    assert state.details() == {
        "ReadOnly": True,
        "Slave_SQL_Running": False,
        "ReplicationSQLThreadRuning": False,
        "Slave_IO_Running": False,
        "ReplicationIOThreadRuning": False,
        "ReplicationSQLThreadState": 0,
        "ReplicationIOThreadState": 0,
    }


def test_details_of_a_writeable_master() -> None:
    details = InstanceState(read_only=False, replica=None).details()
    assert details["ReadOnly"] is False
    assert details["ReplicationSQLThreadState"] == -1
    assert details["ReplicationIOThreadState"] == -1
    assert details["Slave_IO_Running"] is False


def test_a_connecting_io_thread_is_other() -> None:
    threads = sql.parse_replica_status([status_row("Connecting", "Yes")])
    details = InstanceState(read_only=True, replica=threads).details()
    assert details["ReplicationIOThreadState"] == 2
    assert details["Slave_IO_Running"] is False
    assert details["ReplicationSQLThreadState"] == 1


def test_semi_sync_flags() -> None:
    rows = [
        {"Variable_name": "rpl_semi_sync_master_enabled", "Value": "ON"},
        {"Variable_name": "rpl_semi_sync_slave_enabled", "Value": "OFF"},
    ]
    assert sql.parse_semi_sync(rows) == sql.SemiSync(master_enabled=True, replica_enabled=False)
    assert sql.parse_semi_sync([]) is None  # MySQL without the semi-sync plugins
    assert sql.set_semi_sync("master", True) == "SET GLOBAL rpl_semi_sync_master_enabled = 1"
    assert sql.set_semi_sync("slave", False) == "SET GLOBAL rpl_semi_sync_slave_enabled = 0"
    with pytest.raises(ValueError, match="side"):
        sql.set_semi_sync("master; DROP TABLE x", True)


def test_binlog_coordinates() -> None:
    rows = [{"File": "bin.000007", "Position": 1234, "Binlog_Do_DB": "", "Binlog_Ignore_DB": ""}]
    assert sql.parse_binlog(rows) == ("bin.000007", 1234)
    assert sql.parse_binlog([]) is None  # log_bin off


def test_details_with_semi_sync_and_binlog() -> None:
    state = InstanceState(
        read_only=False,
        replica=None,
        semi_sync=sql.SemiSync(master_enabled=True, replica_enabled=False),
        binlog=("bin.000002", 4),
    )
    details = state.details()
    assert details["SemiSyncMasterEnabled"] is True
    assert details["SemiSyncReplicaEnabled"] is False
    assert details["SelfBinlogCoordinates"] == {"LogFile": "bin.000002", "LogPos": 4, "Type": 0}
