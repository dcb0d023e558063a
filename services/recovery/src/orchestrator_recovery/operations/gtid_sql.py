"""Statements of ``enable-gtid`` / ``disable-gtid`` (issue 10), beside the pure decisions:
may the replica switch, where is it, and which statements switch it and switch it back.

MariaDB: ``CHANGE MASTER TO master_use_gtid=slave_pos`` / ``master_use_gtid=no,
master_log_file=..., master_log_pos=...``. MySQL (8.0.23+ words, not exercised against a server
here): ``CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1`` / ``=0, SOURCE_LOG_FILE=...,
SOURCE_LOG_POS=...``.

Where a MariaDB replica is, is told twice: by its executed coordinates on its master
(``Relay_Master_Log_File``:``Exec_Master_Log_Pos``) and by ``gtid_slave_pos``. The switch is
safe only when both name the same place, which the master answers:
``BINLOG_GTID_POS(file, pos)`` is the GTID position of that binary log position. When they
differ (a replica set up from a backup that never applied a transaction since, a position not
yet known after connecting with GTID), switching would make it skip or repeat transactions: it
is refused (:func:`position_mismatch`).

Nothing here touches a server: :mod:`orchestrator_recovery.operations.gtid` sends the
statements and hands the rows to these functions, which unit tests feed directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator_recovery.sql import Dialect, ReplicaStatus, int_value, quote, text_value
from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey

Row = Mapping[str, Any]

SELECT_VERSION = "SELECT @@global.version AS version"
SELECT_GTID_MODE = "SELECT @@global.gtid_mode AS gtid_mode"  # MySQL only


# --- reading ----------------------------------------------------------------------------------


def binlog_gtid_pos_sql(file: str, position: int) -> str:
    """MariaDB: the GTID position of ``file:position`` in the server's binary log."""
    return f"SELECT BINLOG_GTID_POS({quote(file)}, {int(position)}) AS position"


def parse_binlog_gtid_pos(rows: Iterable[Row]) -> str | None:
    """The answer of :func:`binlog_gtid_pos_sql`; None for NULL (no such file or position)."""
    row = next(iter(rows), None)
    if row is None or row.get("position") is None:
        return None
    return text_value(row["position"]).replace("\n", "").strip()


def parse_gtid_mode(rows: Iterable[Row]) -> str:
    """MySQL ``@@global.gtid_mode`` (``ON``, ``OFF``, ...)."""
    row = next(iter(rows), None)
    return text_value((row or {}).get("gtid_mode")).strip().upper()


def gtid_fields(rows: Iterable[Row]) -> dict[str, Any]:
    """The fields of orchestrator's instance JSON that say how the default connection uses
    GTID (``UsingGtid``: MariaDB's ``Using_Gtid`` as the server shows it)."""
    row = next(
        (r for r in rows if text_value(r.get("Connection_name") or r.get("Channel_Name")) == ""),
        None,
    )
    using = text_value((row or {}).get("Using_Gtid")).strip()
    return {
        "UsingMariaDBGTID": using not in ("", "No"),
        "UsingOracleGTID": int_value((row or {}).get("Auto_Position")) == 1,
        "UsingGtid": using,
    }


# --- decisions --------------------------------------------------------------------------------


def _not_switchable(key: InstanceKey, status: ReplicaStatus | None) -> str | None:
    if status is None:
        return f"instance is not a replica: {key}"
    if status.master is None:
        return (
            f"{key} has no master it can reach (detached, or reset): reattach it to its master "
            "first"
        )
    return None


def enable_refusal(
    key: InstanceKey, status: ReplicaStatus | None, dialect: Dialect, gtid_mode: str = ""
) -> str | None:
    """Why ``enable-gtid`` must not run on ``key``, or None (``gtid_mode``: MySQL's)."""
    why = _not_switchable(key, status)
    if why is not None:
        return why
    assert status is not None
    if status.using_gtid:
        return f"{key} already uses GTID"  # orchestrator's words
    if not dialect.is_mariadb and gtid_mode != "ON":
        return (
            f"{key} has gtid_mode={gtid_mode or 'unknown'}: SOURCE_AUTO_POSITION=1 needs "
            "gtid_mode=ON (on the replica and its source)"
        )
    return None


def disable_refusal(key: InstanceKey, status: ReplicaStatus | None) -> str | None:
    """Why ``disable-gtid`` must not run on ``key``, or None."""
    why = _not_switchable(key, status)
    if why is not None:
        return why
    assert status is not None
    if not status.using_gtid:
        return f"{key} is not using GTID"  # orchestrator's words
    return None


def position_mismatch(
    key: InstanceKey, master: InstanceKey, status: ReplicaStatus, at_position: str | None
) -> str | None:
    """Why the executed coordinates of ``status`` and its ``gtid_slave_pos`` do not name the
    same transaction (``at_position``: ``BINLOG_GTID_POS`` of the coordinates on ``master``,
    None when it answered NULL); None when they do.

    Only the master's domains count: ``gtid_slave_pos`` may remember domains of former
    masters."""
    file, position = status.exec_position
    if not file:
        return f"{key} has no executed coordinates (Relay_Master_Log_File is empty)"
    where = f"{key} executed up to {file}:{position} of {master}"
    if at_position is None:
        return (
            f"{where}, which {master} cannot map to a GTID position (BINLOG_GTID_POS is NULL: "
            "the binary log is gone, or the position is not an event's end)"
        )
    try:
        there = MariaGtidPosition.parse(at_position) if at_position else MariaGtidPosition()
        mine = (
            MariaGtidPosition.parse(status.gtid_slave_pos)
            if status.gtid_slave_pos
            else MariaGtidPosition()
        )
    except InvalidGtid as exc:
        return f"unreadable GTID position: {exc}"
    differing = sorted(domain for domain in there if mine.get(domain) != there[domain])
    if differing:
        return (
            f"{where}, which is GTID position {at_position} there, but its gtid_slave_pos is "
            f"{status.gtid_slave_pos or 'empty'} (domain {', '.join(map(str, differing))})"
        )
    return None


# --- statements -------------------------------------------------------------------------------


def thread_statements(
    dialect: Dialect, status: ReplicaStatus
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What stops the threads that run (a ``Connecting`` IO thread counts), and what starts
    them again afterwards: a stopped thread stays stopped."""
    word = "SLAVE" if dialect.is_mariadb else "REPLICA"
    io, sql = status.io_running not in ("", "No"), status.is_sql_running
    if io and sql:
        return (f"STOP {word}",), (f"START {word}",)
    if io or sql:
        thread = "IO_THREAD" if io else "SQL_THREAD"
        return (f"STOP {word} {thread}",), (f"START {word} {thread}",)
    return (), ()


def enable_sql(dialect: Dialect) -> str:
    """Switch a stopped replica to GTID, keeping its master."""
    if dialect.is_mariadb:
        return "CHANGE MASTER TO master_use_gtid=slave_pos"
    return "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1"


def gtid_sql(dialect: Dialect, mode: str) -> str:
    """Back to GTID in ``mode`` (MariaDB ``slave_pos`` or ``current_pos``; MySQL: on)."""
    if dialect.is_mariadb:
        if mode not in ("slave_pos", "current_pos"):
            raise ValueError(f"no master_use_gtid mode {mode!r}")
        return f"CHANGE MASTER TO master_use_gtid={mode}"
    return enable_sql(dialect)


def file_pos_sql(dialect: Dialect, file: str, position: int) -> str:
    """Switch a stopped replica to file:pos replication at ``file:position`` of its master."""
    if dialect.is_mariadb:
        return (
            f"CHANGE MASTER TO master_use_gtid=no, master_log_file={quote(file)}, "
            f"master_log_pos={int(position)}"
        )
    return (
        f"CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=0, SOURCE_LOG_FILE={quote(file)}, "
        f"SOURCE_LOG_POS={int(position)}"
    )
