"""Statements of the remaining control operations (issue 6, part 2), beside pure decisions:
the replication connection, detach/reattach, delay, skip-query, and which binary logs may be
purged. The errant-GTID ones are in :mod:`orchestrator_recovery.operations.errant_sql`.

Nothing here touches a server: :mod:`orchestrator_recovery.operations.control` and
:mod:`orchestrator_recovery.operations.binlog` send the statements and hand the rows to these
functions, which unit tests feed directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator_recovery.sql import int_value, quote, text_value
from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey

Row = Mapping[str, Any]

SHOW_ALL_REPLICAS_STATUS = "SHOW ALL SLAVES STATUS"
SHOW_REPLICA_HOSTS = "SHOW SLAVE HOSTS"
SHOW_BINARY_LOGS = "SHOW BINARY LOGS"
STOP_REPLICA = "STOP SLAVE"
START_REPLICA = "START SLAVE"
STOP_IO_THREAD = "STOP SLAVE IO_THREAD"
START_IO_THREAD = "START SLAVE IO_THREAD"
STOP_SQL_THREAD = "STOP SLAVE SQL_THREAD"
START_SQL_THREAD = "START SLAVE SQL_THREAD"
RESET_REPLICA = "RESET SLAVE ALL"
SKIP_ONE = "SET GLOBAL sql_slave_skip_counter = 1"
SKIP_NONE = "SET GLOBAL sql_slave_skip_counter = 0"
DETACHED_PREFIX = "//"
MAX_DELAY = 2**31 - 1  # MariaDB's largest MASTER_DELAY


# --- replica ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replication:
    """The default replication connection as these operations need it; ``master_host`` as
    the server says it (``//host`` once detached)."""

    master_host: str
    master_port: int
    io_state: str  # Yes, No, Connecting
    sql_state: str
    last_sql_errno: int = 0
    last_sql_error: str = ""
    last_io_error: str = ""
    gtid_mode: str = ""  # Using_Gtid lowercased: slave_pos, current_pos, no
    exec_file: str = ""  # Relay_Master_Log_File: the master's binlog the SQL thread is in
    exec_pos: int = 0
    read_file: str = ""
    read_pos: int = 0
    sql_delay: int = 0
    gtid_io_pos: str = ""
    gtid_slave_pos: str = ""

    @property
    def io_running(self) -> bool:
        return self.io_state == "Yes"

    @property
    def sql_running(self) -> bool:
        return self.sql_state == "Yes"

    @property
    def io_active(self) -> bool:
        """Running or trying to (``Connecting``): STOP SLAVE IO_THREAD has something to stop."""
        return self.io_state not in {"", "No"}

    @property
    def detached(self) -> bool:
        return is_detached(self.master_host)

    @property
    def master_text(self) -> str:
        return f"{self.master_host}:{self.master_port}"

    def fields(self) -> dict[str, Any]:
        """The fields of orchestrator's instance JSON this connection decides."""
        coordinates = {
            "ExecBinlogCoordinates": {"LogFile": self.exec_file, "LogPos": self.exec_pos},
            "ReadBinlogCoordinates": {"LogFile": self.read_file, "LogPos": self.read_pos},
        }
        return {
            "MasterKey": {"Hostname": self.master_host, "Port": self.master_port},
            "IsDetachedMaster": self.detached,
            "SQLDelay": self.sql_delay,
            "LastSQLError": self.last_sql_error,
            "LastIOError": self.last_io_error,
            **{name: value | {"Type": 0} for name, value in coordinates.items()},
        }


NO_REPLICATION_FIELDS: dict[str, Any] = {
    "MasterKey": {"Hostname": "", "Port": 0},
    "IsDetachedMaster": False,
    "SQLDelay": 0,
    "LastSQLError": "",
    "LastIOError": "",
}


def parse_replication(rows: Iterable[Row]) -> Replication | None:
    """The default connection's row of ``SHOW ALL SLAVES STATUS`` (or ``SHOW SLAVE STATUS``);
    None when there is none, or ``RESET SLAVE`` left it without a master host."""
    row = next((r for r in rows if text_value(r.get("Connection_name")) == ""), None)
    if row is None or not text_value(row.get("Master_Host")).strip():
        return None
    return Replication(
        master_host=text_value(row.get("Master_Host")).strip(),
        master_port=int_value(row.get("Master_Port")),
        io_state=text_value(row.get("Slave_IO_Running")),
        sql_state=text_value(row.get("Slave_SQL_Running")),
        last_sql_errno=int_value(row.get("Last_SQL_Errno")),
        last_sql_error=text_value(row.get("Last_SQL_Error")),
        last_io_error=text_value(row.get("Last_IO_Error")),
        gtid_mode=text_value(row.get("Using_Gtid")).strip().lower(),
        exec_file=text_value(row.get("Relay_Master_Log_File")),
        exec_pos=int_value(row.get("Exec_Master_Log_Pos")),
        read_file=text_value(row.get("Master_Log_File")),
        read_pos=int_value(row.get("Read_Master_Log_Pos")),
        sql_delay=int_value(row.get("SQL_Delay")),
        gtid_io_pos=text_value(row.get("Gtid_IO_Pos")).replace("\n", "").strip(),
        gtid_slave_pos=text_value(row.get("Gtid_Slave_Pos")).replace("\n", "").strip(),
    )


def is_detached(host: str) -> bool:
    return host.startswith(DETACHED_PREFIX)


def detached_host(host: str) -> str:
    """orchestrator's reversible detach: ``//host`` cannot resolve, and keeps the host."""
    return host if is_detached(host) else DETACHED_PREFIX + host


def reattached_host(host: str) -> str:
    return host.removeprefix(DETACHED_PREFIX)


def change_host_sql(
    host: str, gtid_mode: str = "", coordinates: tuple[str, int] | None = None
) -> str:
    """``CHANGE MASTER TO master_host`` (port, user and password unchanged). A GTID replica is
    given its mode again, so it resumes from its GTID position; a file:pos replica is given
    its executed coordinates, or it would start over from the master's first binary log."""
    sql = f"CHANGE MASTER TO master_host={quote(host)}"
    if gtid_mode in {"slave_pos", "current_pos"}:
        return sql + f", master_use_gtid={gtid_mode}"
    if coordinates is not None:
        sql += f", master_log_file={quote(coordinates[0])}, master_log_pos={int(coordinates[1])}"
    return sql


def uses_gtid(replication: Replication) -> bool:
    return replication.gtid_mode in {"slave_pos", "current_pos"}


def thread_statements(replication: Replication) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What stops the threads that run, and what starts them again afterwards (orchestrator's
    GetReplicationRestartPreserveStatements): a thread that was stopped stays stopped."""
    io, sql = replication.io_active, replication.sql_running
    if io and sql:
        return (STOP_REPLICA,), (START_REPLICA,)
    if io:
        return (STOP_IO_THREAD,), (START_IO_THREAD,)
    if sql:
        return (STOP_SQL_THREAD,), (START_SQL_THREAD,)
    return (), ()


# --- delay ------------------------------------------------------------------------------------


def parse_seconds(text: str) -> int:
    """``delay-replication``'s seconds: a whole number from 0 to MariaDB's maximum."""
    value = text.strip()
    if not value.isdigit():
        raise ValueError(f"Invalid value provided for seconds: {text!r} (a whole number >= 0)")
    seconds = int(value)
    if seconds > MAX_DELAY:
        raise ValueError(f"Invalid value provided for seconds: {seconds} > {MAX_DELAY}")
    return seconds


def delay_sql(seconds: int) -> str:
    return f"CHANGE MASTER TO master_delay={int(seconds)}"


# --- skip-query -------------------------------------------------------------------------------


def skip_refusal(
    key: InstanceKey, replication: Replication | None, *, mysql_gtid: bool
) -> str | None:
    """Why ``skip-query`` must not run, or None.

    MariaDB skips exactly the failing transaction with ``sql_slave_skip_counter = 1`` (the
    counter counts event groups, GTID or not); MySQL with GTID would need an empty transaction
    under the failing GTID instead, which is not done here.
    """
    if replication is None:
        return f"instance is not a replica: {key}"
    if replication.sql_running:
        return f"Replication SQL thread is running on {key}"
    if not replication.last_sql_error and not replication.last_sql_errno:
        return f"No SQL error on {key}"
    if mysql_gtid:
        return f"{key} replicates with MySQL GTID: skip-query is not supported there"
    return None


# --- binary logs ------------------------------------------------------------------------------


def parse_binary_logs(rows: Iterable[Row]) -> list[str]:
    """``SHOW BINARY LOGS``: the file names, oldest first."""
    return [text_value(row.get("Log_name")) for row in rows if row.get("Log_name")]


_SEQUENCE = re.compile(r"^(.*)\.(\d+)$")


def binlog_order(name: str) -> tuple[str, int]:
    """``mariadb-bin.000012`` -> (``mariadb-bin``, 12), to compare files of one server."""
    match = _SEQUENCE.match(name)
    if match is None:
        return name, -1
    return match.group(1), int(match.group(2))


def parse_replica_hosts(rows: Iterable[Row]) -> tuple[list[InstanceKey], list[int]]:
    """``SHOW SLAVE HOSTS``: the replicas that name themselves (``report_host``), and the
    server ids of those that do not (their needs cannot be checked)."""
    named: list[InstanceKey] = []
    unnamed: list[int] = []
    for row in rows:
        host, port = text_value(row.get("Host")).strip(), int_value(row.get("Port"))
        try:
            named.append(InstanceKey(host=host, port=port))
        except ValueError:
            unnamed.append(int_value(row.get("Server_id")))
    return named, unnamed


def purge_refusal(
    key: InstanceKey,
    target: str,
    logs: list[str],
    needs: Mapping[str, Replication | str],
    *,
    start: MariaGtidPosition | None = None,
) -> str | None:
    """Why ``PURGE BINARY LOGS TO target`` must not run, or None.

    ``needs``: each replica of the instance, with its replication or why it could not be read
    (unless forced, that refuses too: its need is unknown). ``start``: the binlog state where
    ``target`` begins (its ``Gtid_list`` event, as a position).

    A GTID replica reconnects from what it applied, so it needs nothing before ``target`` when
    its ``gtid_slave_pos`` has reached ``start`` in every domain. Otherwise, as orchestrator,
    the master file its SQL thread is in (``Relay_Master_Log_File``) must be ``target`` or a
    later one; a replica without one (it has not executed anything since CHANGE MASTER) refuses.
    """
    if target not in logs:
        return f"binary log {target} not found on {key} (it has {', '.join(logs) or 'none'})"
    stem, number = binlog_order(target)
    for replica, need in sorted(needs.items(), key=lambda item: item[0]):
        if isinstance(need, str):
            return f"cannot tell which binary log replica {replica} needs: {need}"
        if start is not None and need.gtid_mode in {"slave_pos", "current_pos"}:
            try:
                applied = MariaGtidPosition.parse(need.gtid_slave_pos)
            except InvalidGtid:
                applied = None
            if applied is not None:
                if all(applied.seq_no(d) >= start.seq_no(d) for d in start):
                    continue
                return (
                    f"Unsafe to purge binary logs on {key} up to {target} because replica "
                    f"{replica} has only applied up to {need.gtid_slave_pos or 'nothing'} "
                    f"({target} starts after {start})"
                )
        file_stem, file_number = binlog_order(need.exec_file)
        if not need.exec_file or file_stem != stem or file_number < number:
            return (
                f"Unsafe to purge binary logs on {key} up to {target} because replica "
                f"{replica} has only applied up to {need.exec_file}:{need.exec_pos}"
            )
    return None


def purge_sql(target: str) -> str:
    return f"PURGE BINARY LOGS TO {quote(target)}"
