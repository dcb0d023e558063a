"""The probe's SQL and pure parsers of the rows it returns.

The SQL text for MariaDB and MySQL lives here, next to the functions that turn the rows into
snapshot fields; nothing in this module does I/O, so every parser is unit-tested on rows
recorded from MariaDB 10.11 and MySQL 8.

One probe is, in one round trip when the server's flavor is known (a multi-statement batch):

1. ``SHOW GLOBAL VARIABLES WHERE Variable_name IN (...)``: identity, read_only, binlog and GTID
   state, semi-sync and wsrep settings. Mandatory: if it fails, the probe fails. Asking by name
   works on both flavors; a variable a server does not have is simply absent.
2. ``SHOW GLOBAL STATUS WHERE Variable_name IN (...)``: uptime, semi-sync and Galera status.
   The Galera names ride along in these two statements, so a Galera node costs no extra round
   trip and a server without wsrep only a few more short rows (MariaDB) or none (MySQL).
3. ``SHOW MASTER STATUS`` (``SHOW BINARY LOG STATUS`` on MySQL 8.2+): own binlog coordinates.
4. ``SHOW ALL SLAVES STATUS`` on MariaDB (every channel, multi-source included),
   ``SHOW REPLICA STATUS`` on MySQL 8.0.22+ (one row per channel), else ``SHOW SLAVE STATUS``.
5. ``SHOW SLAVE HOSTS`` (``SHOW REPLICAS`` on MySQL 8.0.22+): replicas that report themselves.
6. the binlog dump threads in the processlist: replicas that do not report themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    Coordinates,
    Flavor,
    GaleraState,
    ReplicationChannel,
    SemiSync,
    ThreadState,
)

VARIABLE_NAMES: tuple[str, ...] = (
    "hostname",
    "report_host",
    "report_port",
    "port",
    "server_id",
    "server_uuid",
    "version",
    "version_comment",
    "read_only",
    "super_read_only",
    "slave_net_timeout",
    "binlog_format",
    "binlog_row_image",
    "log_bin",
    "log_slave_updates",
    "log_replica_updates",
    "gtid_mode",
    "gtid_executed",
    "gtid_purged",
    "gtid_domain_id",
    "gtid_binlog_pos",
    "gtid_current_pos",
    "gtid_slave_pos",
    "gtid_strict_mode",
    "rpl_semi_sync_master_enabled",
    "rpl_semi_sync_slave_enabled",
    "rpl_semi_sync_master_timeout",
    "rpl_semi_sync_master_wait_for_slave_count",
    "rpl_semi_sync_source_enabled",
    "rpl_semi_sync_replica_enabled",
    "rpl_semi_sync_source_timeout",
    "rpl_semi_sync_source_wait_for_replica_count",
    "wsrep_on",
    "wsrep_cluster_name",
    "wsrep_node_name",
    "wsrep_desync",
    "wsrep_gtid_domain_id",
)

STATUS_NAMES: tuple[str, ...] = (
    "Uptime",
    "Rpl_semi_sync_master_status",
    "Rpl_semi_sync_master_clients",
    "Rpl_semi_sync_slave_status",
    "Rpl_semi_sync_source_status",
    "Rpl_semi_sync_source_clients",
    "Rpl_semi_sync_replica_status",
    "wsrep_cluster_state_uuid",
    "wsrep_cluster_size",
    "wsrep_cluster_status",
    "wsrep_local_state_comment",
    "wsrep_ready",
    "wsrep_connected",
    "wsrep_desync_count",
    "wsrep_incoming_addresses",
)


def _in_list(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


VARIABLES_SQL = f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({_in_list(VARIABLE_NAMES)})"
STATUS_SQL = f"SHOW GLOBAL STATUS WHERE Variable_name IN ({_in_list(STATUS_NAMES)})"
DUMP_THREADS_SQL = (
    "SELECT SUBSTRING_INDEX(host, ':', 1) AS host FROM information_schema.processlist"
    " WHERE command IN ('Binlog Dump', 'Binlog Dump GTID')"
)
LIVENESS_SQL = "SELECT 1"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What to ask a server, once its flavor and version are known."""

    flavor: Flavor
    version: tuple[int, int, int]

    @classmethod
    def of(cls, variables: Mapping[str, str]) -> Dialect:
        version_text = variables.get("version", "")
        return cls(flavor=detect_flavor(variables), version=parse_version(version_text))

    @property
    def is_mariadb(self) -> bool:
        return self.flavor is Flavor.MARIADB

    @property
    def master_status_sql(self) -> str:
        if not self.is_mariadb and self.version >= (8, 2, 0):
            return "SHOW BINARY LOG STATUS"
        return "SHOW MASTER STATUS"

    @property
    def replica_status_sql(self) -> str:
        if self.is_mariadb:
            return "SHOW ALL SLAVES STATUS"
        if self.version >= (8, 0, 22):
            return "SHOW REPLICA STATUS"
        return "SHOW SLAVE STATUS"

    @property
    def replica_hosts_sql(self) -> str:
        if not self.is_mariadb and self.version >= (8, 0, 22):
            return "SHOW REPLICAS"
        return "SHOW SLAVE HOSTS"

    def statements(self) -> tuple[str, ...]:
        """The probe's statements, in the order :class:`ProbeRows` expects them."""
        return (
            VARIABLES_SQL,
            STATUS_SQL,
            self.master_status_sql,
            self.replica_status_sql,
            self.replica_hosts_sql,
            DUMP_THREADS_SQL,
        )


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.search(text)
    if match is None:
        return (0, 0, 0)
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


def detect_flavor(variables: Mapping[str, str]) -> Flavor:
    version = variables.get("version", "")
    comment = variables.get("version_comment", "")
    if "mariadb" in version.lower() or "mariadb" in comment.lower():
        return Flavor.MARIADB
    if "percona" in comment.lower():
        return Flavor.PERCONA
    if version:
        return Flavor.MYSQL
    return Flavor.UNKNOWN


# --- small value parsers -------------------------------------------------------------------


def as_bool(value: Any) -> bool:
    """MySQL's ways of saying yes: ON, 1, YES, TRUE (any case)."""
    if value is None:
        return False
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip().upper() in ("ON", "1", "YES", "TRUE")


def as_int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def as_optional_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def name_value_rows(rows: Iterable[Sequence[Any]]) -> dict[str, str]:
    """``SHOW VARIABLES``/``SHOW STATUS`` rows as a dict (names lowercased)."""
    return {as_text(row[0]).lower(): as_text(row[1]) for row in rows}


def _column(row: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present in the row: MySQL 8 renamed Master→Source, Slave→Replica."""
    for name in names:
        if name in row:
            return row[name]
    return None


def _coordinates(file_value: Any, position_value: Any) -> Coordinates | None:
    file = as_text(file_value)
    if not file:
        return None
    return Coordinates(file=file, position=as_int(position_value))


# --- row parsers ---------------------------------------------------------------------------


def parse_master_status(rows: Sequence[Mapping[str, Any]]) -> Coordinates | None:
    if not rows:
        return None
    row = rows[0]
    return _coordinates(row.get("File"), row.get("Position"))


def parse_replica_status(row: Mapping[str, Any]) -> ReplicationChannel:
    """One row of SHOW ALL SLAVES STATUS (MariaDB) or SHOW [SLAVE|REPLICA] STATUS (MySQL)."""
    host = as_text(_column(row, "Master_Host", "Source_Host"))
    # orchestrator's detach-replica-master-host writes "//host": the master it was detached from
    detached = host.startswith("//")
    host = host.removeprefix("//")
    port = as_int(_column(row, "Master_Port", "Source_Port"), 3306)
    io_running = as_text(_column(row, "Slave_IO_Running", "Replica_IO_Running"))
    sql_running = as_text(_column(row, "Slave_SQL_Running", "Replica_SQL_Running"))
    seconds_behind = as_optional_int(_column(row, "Seconds_Behind_Master", "Seconds_Behind_Source"))
    if seconds_behind is not None and seconds_behind < 0:
        seconds_behind = 0
    filters = (
        "Replicate_Do_DB",
        "Replicate_Ignore_DB",
        "Replicate_Do_Table",
        "Replicate_Ignore_Table",
        "Replicate_Wild_Do_Table",
        "Replicate_Wild_Ignore_Table",
    )
    return ReplicationChannel(
        name=as_text(_column(row, "Connection_name", "Channel_Name", "Channel_name")),
        master_key=str(InstanceKey(host=host.lower(), port=port)) if host else "unknown:3306",
        master_detached=detached,
        master_user=as_text(_column(row, "Master_User", "Source_User")),
        io_running=io_running,
        sql_running=sql_running,
        io_thread=ThreadState.from_status(io_running),
        sql_thread=ThreadState.from_status(sql_running),
        io_state_text=as_text(_column(row, "Slave_IO_State", "Replica_IO_State")),
        sql_state_text=as_text(
            _column(row, "Slave_SQL_Running_State", "Replica_SQL_Running_State")
        ),
        last_io_errno=as_int(row.get("Last_IO_Errno")),
        last_io_error=as_text(row.get("Last_IO_Error")),
        last_sql_errno=as_int(row.get("Last_SQL_Errno")),
        last_sql_error=as_text(row.get("Last_SQL_Error")),
        read_coordinates=_coordinates(
            _column(row, "Master_Log_File", "Source_Log_File"),
            _column(row, "Read_Master_Log_Pos", "Read_Source_Log_Pos"),
        ),
        exec_coordinates=_coordinates(
            _column(row, "Relay_Master_Log_File", "Relay_Source_Log_File"),
            _column(row, "Exec_Master_Log_Pos", "Exec_Source_Log_Pos"),
        ),
        relay_coordinates=_coordinates(row.get("Relay_Log_File"), row.get("Relay_Log_Pos")),
        seconds_behind_master=seconds_behind,
        sql_delay=as_int(row.get("SQL_Delay")),
        master_server_id=as_int(_column(row, "Master_Server_Id", "Source_Server_Id")),
        master_uuid=as_text(_column(row, "Master_UUID", "Source_UUID")),
        using_gtid=as_text(row.get("Using_Gtid")),
        gtid_io_pos=as_text(row.get("Gtid_IO_Pos")).replace("\n", ""),
        auto_position=as_bool(row.get("Auto_Position")),
        retrieved_gtid_set=as_text(row.get("Retrieved_Gtid_Set")).replace("\n", ""),
        executed_gtid_set=as_text(row.get("Executed_Gtid_Set")).replace("\n", ""),
        has_replication_filters=any(as_text(row.get(name)) for name in filters),
        master_ssl_allowed=as_bool(_column(row, "Master_SSL_Allowed", "Source_SSL_Allowed")),
        heartbeat_period=_optional_float(row.get("Slave_heartbeat_period")),
    )


def _optional_float(value: object) -> float | None:
    """A number the server printed (``30.000``), or None when it printed none."""
    if value is None or value == "":
        return None
    try:
        return float(as_text(value))
    except ValueError:
        return None


def parse_replica_hosts(
    rows: Sequence[Mapping[str, Any]],
    *,
    dump_thread_hosts: Sequence[str],
    own_port: int,
    trust_show_slave_hosts: bool,
) -> tuple[str, ...]:
    """Replica keys from SHOW SLAVE HOSTS, completed from the binlog dump threads.

    SHOW SLAVE HOSTS lists replicas that set ``report_host``; their ``Port`` is ``report_port``.
    Replicas that do not report themselves are only visible as binlog dump threads, which give
    the connecting host but not its port: as orchestrator does, we assume the master's port.
    That guess is made only for dump threads SHOW SLAVE HOSTS leaves unaccounted for, and never
    when ``DiscoverByShowSlaveHosts`` says to trust SHOW SLAVE HOSTS alone.
    """
    keys: list[str] = []
    for row in rows:
        host = as_text(row.get("Host")).strip().lower()
        port = as_int(row.get("Port"), 0)
        if host and 0 < port <= 65535:
            keys.append(str(InstanceKey(host=host, port=port)))
    if not trust_show_slave_hosts and len(dump_thread_hosts) > len(keys):
        reported_hosts = {InstanceKey.parse(key).host for key in keys}
        for raw_host in dump_thread_hosts:
            host = raw_host.strip().lower()
            if host and host not in reported_hosts:
                keys.append(str(InstanceKey(host=host, port=own_port)))
    return tuple(sorted(set(keys)))


def parse_semi_sync(variables: Mapping[str, str], status: Mapping[str, str]) -> SemiSync:
    def var(*names: str) -> str | None:
        return next((variables[name] for name in names if name in variables), None)

    def stat(*names: str) -> str | None:
        return next((status[name] for name in names if name in status), None)

    master_enabled = var("rpl_semi_sync_master_enabled", "rpl_semi_sync_source_enabled")
    return SemiSync(
        available=master_enabled is not None,
        master_enabled=as_bool(master_enabled),
        replica_enabled=as_bool(
            var("rpl_semi_sync_slave_enabled", "rpl_semi_sync_replica_enabled")
        ),
        master_status=as_bool(stat("rpl_semi_sync_master_status", "rpl_semi_sync_source_status")),
        replica_status=as_bool(stat("rpl_semi_sync_slave_status", "rpl_semi_sync_replica_status")),
        master_clients=as_int(stat("rpl_semi_sync_master_clients", "rpl_semi_sync_source_clients")),
        master_timeout_ms=as_int(
            var("rpl_semi_sync_master_timeout", "rpl_semi_sync_source_timeout")
        ),
        master_wait_for_replica_count=as_int(
            var(
                "rpl_semi_sync_master_wait_for_slave_count",
                "rpl_semi_sync_source_wait_for_replica_count",
            ),
            1,
        ),
    )


def parse_galera(variables: Mapping[str, str], status: Mapping[str, str]) -> GaleraState | None:
    """The node's Galera state; None unless the server runs wsrep (``@@wsrep_on``): a MariaDB
    without a provider still answers ``wsrep_*`` names, with ``wsrep_on=OFF``."""
    if not as_bool(variables.get("wsrep_on")):
        return None
    addresses = status.get("wsrep_incoming_addresses", "")
    return GaleraState(
        cluster_name=variables.get("wsrep_cluster_name", ""),
        node_name=variables.get("wsrep_node_name", ""),
        cluster_state_uuid=status.get("wsrep_cluster_state_uuid", ""),
        cluster_size=as_int(status.get("wsrep_cluster_size")),
        cluster_status=status.get("wsrep_cluster_status", ""),
        local_state=status.get("wsrep_local_state_comment", ""),
        ready=as_bool(status.get("wsrep_ready")),
        connected=as_bool(status.get("wsrep_connected")),
        desync=as_bool(variables.get("wsrep_desync")),
        desync_count=as_int(status.get("wsrep_desync_count")),
        gtid_domain_id=as_optional_int(variables.get("wsrep_gtid_domain_id")),
        incoming_addresses=addresses,
        member_keys=parse_incoming_addresses(addresses),
    )


def parse_incoming_addresses(text: str) -> tuple[str, ...]:
    """The keys in ``wsrep_incoming_addresses`` (``host:port,host:port,...``), sorted.

    A node that could not work out its client address says ``AUTO`` (or nothing); such entries,
    and any that is not a valid ``host:port``, are skipped: they name no server to probe.
    """
    keys: set[str] = set()
    for entry in (part.strip() for part in text.split(",")):
        if not entry or entry.upper() == "AUTO":
            continue
        try:
            keys.add(str(InstanceKey.parse(entry)))
        except InvalidInstanceKey:
            continue
    return tuple(sorted(keys))


def identity_fields(variables: Mapping[str, str]) -> dict[str, Any]:
    """Snapshot fields read from the variables (everything but replication and semi-sync)."""
    flavor = detect_flavor(variables)
    is_mariadb = flavor is Flavor.MARIADB
    fields: dict[str, Any] = {
        "server_id": as_int(variables.get("server_id")),
        "server_uuid": variables.get("server_uuid", ""),
        "hostname": variables.get("hostname", ""),
        "version": variables.get("version", ""),
        "version_comment": variables.get("version_comment", ""),
        "flavor": flavor,
        "read_only": as_bool(variables.get("read_only")),
        "super_read_only": as_bool(variables.get("super_read_only")),
        "slave_net_timeout": as_optional_int(variables.get("slave_net_timeout")),
        "log_bin": as_bool(variables.get("log_bin")),
        "log_slave_updates": as_bool(
            variables.get("log_slave_updates", variables.get("log_replica_updates"))
        ),
        "binlog_format": variables.get("binlog_format", ""),
        "binlog_row_image": variables.get("binlog_row_image", ""),
    }
    if is_mariadb:
        fields.update(
            gtid_domain_id=as_optional_int(variables.get("gtid_domain_id")),
            gtid_binlog_pos=variables.get("gtid_binlog_pos", "").replace("\n", ""),
            gtid_current_pos=variables.get("gtid_current_pos", "").replace("\n", ""),
            gtid_slave_pos=variables.get("gtid_slave_pos", "").replace("\n", ""),
            gtid_strict_mode=as_bool(variables.get("gtid_strict_mode")),
        )
    else:
        fields.update(
            gtid_mode=variables.get("gtid_mode", ""),
            gtid_executed=variables.get("gtid_executed", "").replace("\n", ""),
            gtid_purged=variables.get("gtid_purged", "").replace("\n", ""),
        )
    return fields


def first_value(rows: Sequence[Sequence[Any]]) -> str | None:
    """The one value of a one-row, one-column answer (the ``Detect*Query`` settings)."""
    if not rows or not rows[0]:
        return None
    return as_text(rows[0][0])
