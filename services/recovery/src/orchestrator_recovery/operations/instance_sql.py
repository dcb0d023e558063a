"""Statements of the instance and replication control operations, beside pure row parsers.

Nothing here touches a server: :mod:`orchestrator_recovery.operations.instance` runs the statements
and hands the rows to the parsers, which unit tests feed directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STOP_REPLICA = "STOP SLAVE"
START_REPLICA = "START SLAVE"
SET_READ_ONLY = "SET GLOBAL read_only = 1"
SET_WRITEABLE = "SET GLOBAL read_only = 0"
SHOW_REPLICA_STATUS = "SHOW SLAVE STATUS"
SELECT_READ_ONLY = "SELECT @@global.read_only AS read_only"
SHOW_SEMI_SYNC = "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%_enabled'"
SHOW_BINLOG = "SHOW MASTER STATUS"
FLUSH_BINARY_LOGS = "FLUSH BINARY LOGS"
STOP_IO_THREAD = "STOP SLAVE IO_THREAD"
START_IO_THREAD = "START SLAVE IO_THREAD"


def set_semi_sync(side: str, enabled: bool) -> str:
    """``SET GLOBAL rpl_semi_sync_<side>_enabled`` (side: master or slave)."""
    if side not in {"master", "slave"}:
        raise ValueError(f"no semi-sync side {side!r}")
    return f"SET GLOBAL rpl_semi_sync_{side}_enabled = {int(enabled)}"


Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplicaThreads:
    """What ``SHOW SLAVE STATUS`` says of the (default) replication connection."""

    master_host: str
    master_port: int
    io_running: bool
    sql_running: bool
    last_io_error: str = ""
    last_sql_error: str = ""
    io_state: str = ""  # Slave_IO_Running as answered: Yes, No, Connecting
    sql_state: str = ""

    @property
    def running(self) -> bool:
        return self.io_running and self.sql_running

    @property
    def stopped(self) -> bool:
        return not self.io_running and not self.sql_running


@dataclass(frozen=True, slots=True)
class SemiSync:
    master_enabled: bool
    replica_enabled: bool


@dataclass(frozen=True, slots=True)
class InstanceState:
    """An instance as the control operations see it: read_only and its replication threads
    (None: not a replica)."""

    read_only: bool
    replica: ReplicaThreads | None
    semi_sync: SemiSync | None = None
    binlog: tuple[str, int] | None = None  # SHOW MASTER STATUS: file, position

    def details(self) -> dict[str, Any]:
        """The fields of orchestrator's instance JSON this state decides."""
        io = self.replica.io_running if self.replica else False
        sql = self.replica.sql_running if self.replica else False
        extra: dict[str, Any] = {}
        if self.semi_sync is not None:
            extra["SemiSyncMasterEnabled"] = self.semi_sync.master_enabled
            extra["SemiSyncReplicaEnabled"] = self.semi_sync.replica_enabled
        if self.binlog is not None:
            extra["SelfBinlogCoordinates"] = {
                "LogFile": self.binlog[0],
                "LogPos": self.binlog[1],
                "Type": 0,
            }
        return extra | {
            "ReadOnly": self.read_only,
            "Slave_SQL_Running": sql,
            "ReplicationSQLThreadRuning": sql,
            "Slave_IO_Running": io,
            "ReplicationIOThreadRuning": io,
            "ReplicationSQLThreadState": thread_state(self.replica, sql=True),
            "ReplicationIOThreadState": thread_state(self.replica, sql=False),
        }


def thread_state(replica: ReplicaThreads | None, *, sql: bool) -> int:
    """orchestrator's ReplicationThreadState: -1 none (not a replica), 0 stopped (``No``),
    1 running (``Yes``), 2 other (``Connecting``)."""
    if replica is None:
        return -1
    running = replica.sql_running if sql else replica.io_running
    answered = (replica.sql_state if sql else replica.io_state).strip().lower()
    if running:
        return 1
    return 0 if answered in {"", "no"} else 2


def _yes(value: Any) -> bool:
    return str(value or "").strip().lower() == "yes"


def parse_replica_status(rows: list[Row]) -> ReplicaThreads | None:
    """``SHOW SLAVE STATUS`` rows: the replication threads, or None when not a replica (no row,
    or a row left by ``RESET SLAVE`` with no master host)."""
    if not rows:
        return None
    row = rows[0]
    host = str(row.get("Master_Host") or "")
    if not host:
        return None
    return ReplicaThreads(
        master_host=host,
        master_port=int(row.get("Master_Port") or 0),
        io_running=_yes(row.get("Slave_IO_Running")),
        sql_running=_yes(row.get("Slave_SQL_Running")),
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
        io_state=str(row.get("Slave_IO_Running") or ""),
        sql_state=str(row.get("Slave_SQL_Running") or ""),
    )


def parse_read_only(rows: list[Row]) -> bool:
    """``SELECT @@global.read_only AS read_only``: True when read-only."""
    if not rows or "read_only" not in rows[0]:
        raise ValueError("no read_only value in the answer")
    return int(rows[0]["read_only"]) == 1


def parse_semi_sync(rows: list[Row]) -> SemiSync | None:
    """``SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%_enabled'``: None when semi-sync is not
    available (MySQL without the plugins loaded)."""
    values = {str(row["Variable_name"]).lower(): str(row["Value"]).upper() for row in rows}
    master = values.get("rpl_semi_sync_master_enabled")
    replica = values.get("rpl_semi_sync_slave_enabled")
    if master is None or replica is None:
        return None
    return SemiSync(master_enabled=master == "ON", replica_enabled=replica == "ON")


def parse_binlog(rows: list[Row]) -> tuple[str, int] | None:
    """``SHOW MASTER STATUS``: the current binary log file and position; None when binary
    logging is off."""
    if not rows or not rows[0].get("File"):
        return None
    return str(rows[0]["File"]), int(rows[0]["Position"])
