"""The recovery executor's SQL, per flavor, and pure readers of the rows it gets back.

Nothing here does I/O: :mod:`orchestrator_recovery.mysql` sends these statements and
:mod:`orchestrator_recovery.failover.executor` decides with these functions, so every decision the
executor takes on a row (caught up? following? may this replica follow that master?) is
unit-tested on rows recorded from MariaDB 10.11 and MySQL 8.0.

MariaDB is the flavor the sandbox runs and the tests exercise. The MySQL statements use the
8.0.23+ words (``STOP REPLICA``, ``CHANGE REPLICATION SOURCE TO``, ``SOURCE_AUTO_POSITION=1``)
and are not exercised against a server here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import GtidRelation, GtidSet, MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

# Threads that are not client sessions: never killed when an old master is fenced.
SYSTEM_USERS = frozenset({"system user", "event_scheduler"})
SYSTEM_COMMANDS = frozenset(
    {"binlog dump", "binlog dump gtid", "daemon", "killed", "slave_io", "slave_sql", "slave_worker"}
)

PROCESSLIST_SQL = (
    "SELECT id, user, command, info FROM information_schema.processlist WHERE id <> CONNECTION_ID()"
)
# A fencing statement of ours still waiting (its connection gave up on it): never killed.
_FENCING_STATEMENTS = ("set global read_only", "set global super_read_only")

# Errors of a replica's IO thread that retrying will not fix: the new master refused the
# replica's position (1236), or the replica's own settings are wrong (1593, 1595).
FATAL_IO_ERRNOS = frozenset({1236, 1593, 1595})

# MySQL error for KILL of a thread that has already gone.
UNKNOWN_THREAD_ERRNO = 1094


def quote(text: str) -> str:
    """``text`` as a single-quoted SQL string literal (backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Dialect:
    """The statements of one flavor (MariaDB, or MySQL/Percona 8.0.22+)."""

    flavor: Flavor

    @property
    def is_mariadb(self) -> bool:
        return self.flavor is Flavor.MARIADB

    # --- fencing ---------------------------------------------------------------------------

    @property
    def set_read_only_sql(self) -> str:
        if self.is_mariadb:
            return "SET GLOBAL read_only=1"
        return "SET GLOBAL super_read_only=1"  # implies read_only=1

    @property
    def set_writable_sql(self) -> str:
        return "SET GLOBAL read_only=0"  # also turns MySQL's super_read_only off

    @property
    def semi_sync_master_on_sql(self) -> str:
        if self.is_mariadb:
            return "SET GLOBAL rpl_semi_sync_master_enabled=ON"
        return "SET GLOBAL rpl_semi_sync_source_enabled=ON"

    @property
    def semi_sync_clients_sql(self) -> str:
        """One row (``Variable_name``, ``Value``): the semi-sync replicas the master counts."""
        if self.is_mariadb:
            return "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'"
        return "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_clients'"

    @staticmethod
    def kill_sql(connection_id: int) -> str:
        return f"KILL CONNECTION {int(connection_id)}"

    # --- positions -------------------------------------------------------------------------

    @property
    def positions_sql(self) -> str:
        """One row: ``binlog`` (what the server logged) and ``applied`` (what it replicated)."""
        if self.is_mariadb:
            return "SELECT @@global.gtid_binlog_pos AS binlog, @@global.gtid_slave_pos AS applied"
        return "SELECT @@global.gtid_executed AS binlog, @@global.gtid_purged AS purged"

    # --- replication threads ---------------------------------------------------------------

    @property
    def replica_status_sql(self) -> str:
        # MariaDB: SHOW ALL SLAVES STATUS adds Gtid_Slave_Pos to the row (one round trip).
        return "SHOW ALL SLAVES STATUS" if self.is_mariadb else "SHOW REPLICA STATUS"

    @property
    def stop_io_sql(self) -> str:
        return "STOP SLAVE IO_THREAD" if self.is_mariadb else "STOP REPLICA IO_THREAD"

    @property
    def start_sql_thread_sql(self) -> str:
        return "START SLAVE SQL_THREAD" if self.is_mariadb else "START REPLICA SQL_THREAD"

    @property
    def stop_replication_sql(self) -> str:
        return "STOP SLAVE" if self.is_mariadb else "STOP REPLICA"

    @property
    def start_replication_sql(self) -> str:
        return "START SLAVE" if self.is_mariadb else "START REPLICA"

    @property
    def reset_replication_sql(self) -> str:
        return "RESET SLAVE ALL" if self.is_mariadb else "RESET REPLICA ALL"

    def change_master_sql(
        self,
        master: InstanceKey,
        *,
        user: str | None = None,
        password: str | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        """Point a stopped replica at ``master`` with GTID auto-positioning; ``extra``: more
        options, written as they are (the TLS ones).

        Without ``user`` the replica keeps the replication user and password it already has
        (CHANGE MASTER leaves the options it is not given unchanged).
        """
        if self.is_mariadb:
            parts = [f"master_host={quote(master.host)}", f"master_port={int(master.port)}"]
            if user is not None:
                parts += [f"master_user={quote(user)}", f"master_password={quote(password or '')}"]
            parts += extra
            parts.append("master_use_gtid=slave_pos")
            return "CHANGE MASTER TO " + ", ".join(parts)
        parts = [f"SOURCE_HOST={quote(master.host)}", f"SOURCE_PORT={int(master.port)}"]
        if user is not None:
            parts += [f"SOURCE_USER={quote(user)}", f"SOURCE_PASSWORD={quote(password or '')}"]
        parts += extra
        parts.append("SOURCE_AUTO_POSITION=1")
        return "CHANGE REPLICATION SOURCE TO " + ", ".join(parts)


# --- values ----------------------------------------------------------------------------------


def text_value(value: Any) -> str:
    """A column's value as text ('' for NULL; bytes decoded)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def int_value(value: Any) -> int:
    """A column's value as an int (0 for NULL or not a number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _column(row: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


def _gtid_text(value: Any) -> str:
    return text_value(value).replace("\n", "").strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaStatus:
    """The facts of one SHOW SLAVE STATUS row that the executor decides on."""

    master: InstanceKey | None
    master_user: str
    io_running: str
    sql_running: str
    master_log_file: str
    read_position: tuple[str, int]
    exec_position: tuple[str, int]
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str
    using_gtid: bool
    gtid_io_pos: str
    gtid_slave_pos: str
    retrieved_gtid_set: str
    executed_gtid_set: str
    sql_delay: int

    @property
    def is_io_running(self) -> bool:
        return self.io_running == "Yes"

    @property
    def is_sql_running(self) -> bool:
        return self.sql_running == "Yes"

    def describe(self) -> str:
        """One line for a step record: where it points, its threads and errors."""
        text = f"master {self.master} IO:{self.io_running or '-'} SQL:{self.sql_running or '-'}"
        if self.last_io_errno:
            text += f" IO error {self.last_io_errno}: {self.last_io_error}"
        if self.last_sql_errno:
            text += f" SQL error {self.last_sql_errno}: {self.last_sql_error}"
        return text


def parse_replica_status(rows: Iterable[Mapping[str, Any]]) -> ReplicaStatus | None:
    """The default channel's row of SHOW ALL SLAVES STATUS / SHOW REPLICA STATUS; None when
    the server has no replication configured."""
    row = next(
        (r for r in rows if text_value(_column(r, "Connection_name", "Channel_Name")) == ""), None
    )
    if row is None:
        return None
    host = text_value(_column(row, "Master_Host", "Source_Host")).strip()
    port = int_value(_column(row, "Master_Port", "Source_Port"))
    master: InstanceKey | None
    try:
        master = InstanceKey(host=host, port=port) if host and port else None
    except ValueError:
        master = None
    using_gtid = text_value(row.get("Using_Gtid")).strip().lower()
    return ReplicaStatus(
        master=master,
        master_user=text_value(_column(row, "Master_User", "Source_User")),
        io_running=text_value(_column(row, "Slave_IO_Running", "Replica_IO_Running")),
        sql_running=text_value(_column(row, "Slave_SQL_Running", "Replica_SQL_Running")),
        master_log_file=text_value(_column(row, "Master_Log_File", "Source_Log_File")),
        read_position=(
            text_value(_column(row, "Master_Log_File", "Source_Log_File")),
            int_value(_column(row, "Read_Master_Log_Pos", "Read_Source_Log_Pos")),
        ),
        exec_position=(
            text_value(_column(row, "Relay_Master_Log_File", "Relay_Source_Log_File")),
            int_value(_column(row, "Exec_Master_Log_Pos", "Exec_Source_Log_Pos")),
        ),
        last_io_errno=int_value(row.get("Last_IO_Errno")),
        last_io_error=text_value(row.get("Last_IO_Error")),
        last_sql_errno=int_value(row.get("Last_SQL_Errno")),
        last_sql_error=text_value(row.get("Last_SQL_Error")),
        using_gtid=(using_gtid not in ("", "no")) or int_value(row.get("Auto_Position")) == 1,
        gtid_io_pos=_gtid_text(row.get("Gtid_IO_Pos")),
        gtid_slave_pos=_gtid_text(row.get("Gtid_Slave_Pos")),
        retrieved_gtid_set=_gtid_text(row.get("Retrieved_Gtid_Set")),
        executed_gtid_set=_gtid_text(row.get("Executed_Gtid_Set")),
        sql_delay=int_value(row.get("SQL_Delay")),
    )


@dataclass(frozen=True, slots=True)
class Positions:
    """What a server has: ``binlog`` (MariaDB gtid_binlog_pos / MySQL gtid_executed),
    ``applied`` (MariaDB gtid_slave_pos), ``purged`` (MySQL gtid_purged)."""

    binlog: str = ""
    applied: str = ""
    purged: str = ""


def parse_positions(rows: Iterable[Mapping[str, Any]]) -> Positions:
    row = next(iter(rows), None)
    if row is None:
        return Positions()
    return Positions(
        binlog=_gtid_text(row.get("binlog")),
        applied=_gtid_text(row.get("applied")),
        purged=_gtid_text(row.get("purged")),
    )


def parse_status_number(rows: Iterable[Mapping[str, Any]]) -> int | None:
    """The ``Value`` of a one-row ``SHOW GLOBAL STATUS LIKE ...`` as a number (None: no row,
    or not a number)."""
    for row in rows:
        text = text_value(_column(row, "Value", "VALUE")).strip()
        return int(text) if text.isdigit() else None
    return None


def client_connection_ids(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """The processlist ids to kill when fencing: every session but replication, the event
    scheduler and other server threads, and a fencing ``SET GLOBAL read_only`` still waiting
    (the fencing connection itself is not in the rows)."""
    ids: list[int] = []
    for row in rows:
        user = text_value(row.get("user") or row.get("USER")).lower()
        command = text_value(row.get("command") or row.get("COMMAND")).lower()
        info = " ".join(text_value(row.get("info") or row.get("INFO")).lower().split())
        if user in SYSTEM_USERS or command in SYSTEM_COMMANDS:
            continue
        if info.startswith(_FENCING_STATEMENTS):
            continue
        ids.append(int_value(row.get("id") or row.get("ID")))
    return [connection_id for connection_id in ids if connection_id > 0]


# --- decisions -------------------------------------------------------------------------------


class Progress(enum.Enum):
    DONE = "done"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one look at a server: done, keep waiting, or failed (with why)."""

    progress: Progress
    detail: str

    @classmethod
    def done(cls, detail: str = "") -> Check:
        return cls(Progress.DONE, detail)

    @classmethod
    def waiting(cls, detail: str) -> Check:
        return cls(Progress.WAITING, detail)

    @classmethod
    def failed(cls, detail: str) -> Check:
        return cls(Progress.FAILED, detail)


def _maria(text: str) -> MariaGtidPosition:
    return MariaGtidPosition.parse(text) if text else MariaGtidPosition()


def _mysql(text: str) -> GtidSet:
    return GtidSet.parse(text) if text else GtidSet()


def received_check(dialect: Dialect, status: ReplicaStatus, must_have: str) -> Check:
    """Has the replica *received* ``must_have`` (the fenced old master's last position)?"""
    try:
        if dialect.is_mariadb:
            received = _maria(status.gtid_io_pos)
            if received.contains(_maria(must_have)):
                return Check.done(f"received {status.gtid_io_pos}")
        else:
            got = _mysql(status.retrieved_gtid_set) | _mysql(status.executed_gtid_set)
            if got.contains(_mysql(must_have)):
                return Check.done(f"received {must_have}")
    except InvalidGtid as error:
        return Check.failed(f"unreadable GTID position: {error}")
    if status.io_running == "No":
        return Check.failed(
            f"has not received the old master's last transactions ({must_have}) and its "
            f"IO thread is not running ({status.describe()})"
        )
    return Check.waiting(f"receiving: at {status.gtid_io_pos or status.retrieved_gtid_set}")


def applied_check(dialect: Dialect, status: ReplicaStatus) -> Check:
    """Has the replica applied everything its IO thread received (its relay log)?

    MariaDB GTID: ``gtid_slave_pos`` contains ``Gtid_IO_Pos`` (the IO thread advances that
    position only once a whole transaction is in the relay log). MySQL GTID:
    ``Executed_Gtid_Set`` contains ``Retrieved_Gtid_Set``. Without GTID: the SQL thread's
    coordinates (Relay_Master_Log_File:Exec_Master_Log_Pos) equal the IO thread's
    (Master_Log_File:Read_Master_Log_Pos). A stopped SQL thread fails at once unless nothing
    is left to apply.
    """
    if status.last_sql_errno and not status.is_sql_running:
        return Check.failed(
            f"SQL thread stopped with error {status.last_sql_errno}: {status.last_sql_error}"
        )
    check = _applied(dialect, status)
    if check.progress is Progress.WAITING and not status.is_sql_running:
        return Check.failed(f"SQL thread not running, {check.detail}")
    return check


def _applied(dialect: Dialect, status: ReplicaStatus) -> Check:
    try:
        if status.using_gtid and dialect.is_mariadb:
            applied, received = _maria(status.gtid_slave_pos), _maria(status.gtid_io_pos)
            if applied.contains(received):
                return Check.done(f"applied {status.gtid_slave_pos or '(nothing)'}")
            return Check.waiting(
                f"applied {status.gtid_slave_pos or '(nothing)'} of received {status.gtid_io_pos}"
            )
        if status.using_gtid:
            missing = _mysql(status.retrieved_gtid_set) - _mysql(status.executed_gtid_set)
            if not missing:
                return Check.done(f"applied {status.executed_gtid_set}")
            return Check.waiting(f"still to apply {missing}")
    except InvalidGtid as error:
        return Check.failed(f"unreadable GTID position: {error}")
    if status.exec_position == status.read_position:
        return Check.done(f"applied up to {status.exec_position[0]}:{status.exec_position[1]}")
    return Check.waiting(
        f"executed {status.exec_position[0]}:{status.exec_position[1]} of read "
        f"{status.read_position[0]}:{status.read_position[1]}"
    )


def applied_marker(dialect: Dialect, status: ReplicaStatus) -> str:
    """What the SQL thread has applied, as text that changes whenever it applies something
    (MariaDB GTID: ``gtid_slave_pos``; MySQL GTID: ``Executed_Gtid_Set``; otherwise the exec
    coordinates): how a wait tells a slow SQL thread from a stuck one."""
    if status.using_gtid and dialect.is_mariadb:
        return status.gtid_slave_pos
    if status.using_gtid:
        return status.executed_gtid_set
    return f"{status.exec_position[0]}:{status.exec_position[1]}"


def sql_thread_start_refusal(dialect: Dialect, status: ReplicaStatus) -> str | None:
    """Why the SQL thread of a replica must not be started to apply its relay log, or None.

    MariaDB discards the relay log of a GTID replica whose IO *and* SQL threads are both
    stopped when replication starts again (it fetches everything after ``gtid_slave_pos``
    anew from its master). With the master gone, what was received but not applied would be
    lost: so the SQL thread is started while the IO thread still runs (``Connecting`` counts),
    and a replica with both threads stopped and something left to apply is refused.
    """
    if status.last_sql_errno:
        return f"SQL thread stopped with error {status.last_sql_errno}: {status.last_sql_error}"
    if (
        dialect.is_mariadb
        and status.using_gtid
        and status.io_running == "No"
        and applied_check(dialect, status).progress is not Progress.DONE
    ):
        return (
            "both replication threads are stopped with relay log left to apply "
            f"({status.gtid_slave_pos or '(nothing)'} applied of {status.gtid_io_pos}); "
            "MariaDB discards that relay log when replication starts again"
        )
    return None


def missing_on_master(dialect: Dialect, replica: Positions, master: Positions) -> str | None:
    """Why ``replica`` cannot follow ``master`` with GTID, or None if it can.

    MariaDB: everything the replica has (its applied ``gtid_slave_pos`` and its own
    ``gtid_binlog_pos``, merged per domain) must be in the master's ``gtid_binlog_pos``;
    otherwise the master would refuse the position (error 1236) or the replica holds
    transactions the master never had (errant ones, which gtid_strict_mode turns into a
    broken replica at the master's next write). MySQL: the replica's ``gtid_executed`` must
    be a subset of the master's, and the master must not have purged what the replica lacks.
    """
    try:
        if dialect.is_mariadb:
            mine = _maria(replica.applied).merged_with(_maria(replica.binlog))
            theirs = _maria(master.binlog)
            relation = mine.compare(theirs)
            if relation in (GtidRelation.AHEAD, GtidRelation.DIVERGED):
                return (
                    f"has transactions the new master lacks: replica at {mine}, "
                    f"new master at {theirs} ({relation.value})"
                )
            return None
        mine_set, theirs_set = _mysql(replica.binlog), _mysql(master.binlog)
        extra = mine_set - theirs_set
        if extra:
            return f"has transactions the new master lacks: {extra}"
        needed_but_purged = _mysql(master.purged) - mine_set
        if needed_but_purged:
            return f"needs transactions the new master has purged: {needed_but_purged}"
    except InvalidGtid as error:
        return f"unreadable GTID position: {error}"
    return None


def following_check(status: ReplicaStatus | None, master: InstanceKey) -> Check:
    """Does the replica now replicate from ``master``?

    Both threads ``Yes``, pointed at ``master``, no error, and ``Master_Log_File`` set again:
    CHANGE MASTER to a new host clears it and only the new master's first event (the rotate
    it sends once it accepted the replica's GTID position) fills it, so a replica whose
    position the master is about to refuse is not taken for a following one.
    """
    if status is None:
        return Check.failed("has no replication configured")
    if status.master != master:
        return Check.failed(f"points at {status.master}, not {master}")
    if status.last_io_errno in FATAL_IO_ERRNOS:
        return Check.failed(f"IO error {status.last_io_errno}: {status.last_io_error}")
    if status.last_sql_errno:
        return Check.failed(f"SQL error {status.last_sql_errno}: {status.last_sql_error}")
    if not status.is_sql_running:
        return Check.failed(f"SQL thread not running ({status.describe()})")
    if status.io_running == "No":
        return Check.failed(f"IO thread stopped ({status.describe()})")
    if status.is_io_running and status.master_log_file and not status.last_io_errno:
        return Check.done(f"replicating from {master}")
    return Check.waiting(status.describe())
