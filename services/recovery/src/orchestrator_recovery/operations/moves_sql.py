"""What the GTID moves (``relocate``, ``move-below-gtid``, ``move-up``, ``repoint``,
``can-replicate-from``) read from a server, and the pure decisions they take on it.

Nothing here touches a server: :mod:`orchestrator_recovery.operations.moves` runs
:data:`SERVER_SQL`, the
replica status and the positions, and hands the rows to :func:`parse_server`; unit tests feed
the parsers and :func:`refusal` directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator_recovery.sql import (
    Dialect,
    Positions,
    ReplicaStatus,
    missing_on_master,
    text_value,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

REASONABLE_LAG_SECONDS = 20  # orchestrator's ReasonableMaintenanceReplicationLagSeconds default

SERVER_SQL = (
    "SELECT @@global.version AS version, @@global.log_bin AS log_bin, "
    "@@global.log_slave_updates AS log_slave_updates, @@global.binlog_format AS binlog_format"
)

# what SERVER_SQL and the positions query of either flavor read, in one statement (a variable
# the server does not have is simply not listed): the drop checks read whole clusters with it
CHECK_VARIABLES_SQL = (
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'log_bin', 'log_slave_updates', "
    "'binlog_format', 'gtid_binlog_pos', 'gtid_slave_pos', 'gtid_executed', 'gtid_purged')"
)

_VERSION = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class Server:
    """One instance as a move sees it."""

    key: InstanceKey
    version: str
    log_bin: bool
    log_slave_updates: bool
    binlog_format: str
    replica: ReplicaStatus | None  # None: not a replica
    positions: Positions
    lag: int | None = None  # Seconds_Behind_Master; None when unknown (not replicating)
    gtid_mode: str = ""  # MariaDB Using_Gtid, lowercased: slave_pos, current_pos, no

    @property
    def dialect(self) -> Dialect:
        return Dialect(Flavor.MARIADB if "mariadb" in self.version.lower() else Flavor.MYSQL)

    @property
    def master(self) -> InstanceKey | None:
        return self.replica.master if self.replica is not None else None


def _flag(value: Any) -> bool:
    return str(value).strip().upper() in {"1", "ON", "YES", "TRUE"}


def parse_server(  # noqa: PLR0917 - one argument per query answered
    key: InstanceKey,
    variables: Iterable[Mapping[str, Any]],
    replica: ReplicaStatus | None,
    positions: Positions,
    lag: int | None,
    gtid_mode: str = "",
) -> Server:
    row = next(iter(variables), None)
    if row is None:
        raise ValueError(f"{key}: no answer to the variables query")
    return Server(
        key=key,
        version=str(row.get("version") or ""),
        log_bin=_flag(row.get("log_bin")),
        log_slave_updates=_flag(row.get("log_slave_updates")),
        binlog_format=str(row.get("binlog_format") or "").upper(),
        replica=replica,
        positions=positions,
        lag=lag,
        gtid_mode=gtid_mode,
    )


def parse_lag(rows: Iterable[Mapping[str, Any]]) -> int | None:
    """``Seconds_Behind_Master`` of the default connection (None: NULL, or not a replica)."""
    for row in rows:
        if str(row.get("Connection_name") or "") != "":
            continue
        value = row.get("Seconds_Behind_Master")
        return None if value is None else int(value)
    return None


def parse_gtid_mode(rows: Iterable[Mapping[str, Any]]) -> str:
    """MariaDB ``Using_Gtid`` of the default connection, lowercased (``slave_pos``, ...)."""
    for row in rows:
        if str(row.get("Connection_name") or "") == "":
            return str(row.get("Using_Gtid") or "").strip().lower()
    return ""


def named_values(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``SHOW VARIABLES`` / ``SHOW STATUS`` rows as ``{name (lowercased): value}``."""
    return {str(row.get("Variable_name") or "").lower(): row.get("Value") for row in rows}


def split_variables(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of :data:`CHECK_VARIABLES_SQL` as the answers to :data:`SERVER_SQL` and to the
    flavor's positions query (``Dialect.positions_sql``) would be."""
    values = named_values(rows)
    if "version" not in values:
        return [], []
    variables = {
        name: values.get(name)
        for name in ("version", "log_bin", "log_slave_updates", "binlog_format")
    }
    if "mariadb" in str(values["version"]).lower():
        positions = {
            "binlog": values.get("gtid_binlog_pos"),
            "applied": values.get("gtid_slave_pos"),
        }
    else:
        positions = {"binlog": values.get("gtid_executed"), "purged": values.get("gtid_purged")}
    return [variables], [positions]


def flavor_dialect(variables: Iterable[Mapping[str, Any]]) -> Dialect:
    row = next(iter(variables), None)
    version = str((row or {}).get("version") or "")
    return Dialect(Flavor.MARIADB if "mariadb" in version.lower() else Flavor.MYSQL)


def version_tuple(version: str) -> tuple[int, int]:
    match = _VERSION.match(version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def refusal(
    replica: Server,
    target: Server,
    *,
    descendants: Iterable[InstanceKey] = (),
    max_lag: int = REASONABLE_LAG_SECONDS,
) -> str | None:
    """Why ``replica`` cannot replicate from ``target`` (with GTID), or None if it can.

    ``descendants``: the target's chain of masters up to the replica, when the replica is one
    of them (the target is then the replica's own replica or descendant).
    """
    if replica.key == target.key:
        return f"cannot move {replica.key} below itself"
    chain = list(descendants)
    if replica.key in chain:
        return (
            f"{target.key} replicates (directly or not) from {replica.key}: "
            "cannot move it below its own replica"
        )
    if replica.replica is None:
        return f"{replica.key} is not a replica"
    if not replica.replica.using_gtid:
        return f"{replica.key} does not replicate with GTID (Using_Gtid=No): refusing a GTID move"
    if not target.log_bin:
        return f"{target.key} does not have binary logs enabled (log_bin is off)"
    if target.replica is not None and not target.log_slave_updates:
        return f"{target.key} does not have log_slave_updates enabled"
    if replica.dialect.is_mariadb != target.dialect.is_mariadb:
        return (
            f"{target.key} ({target.version}) and {replica.key} ({replica.version}) "
            "are not of the same flavor"
        )
    if version_tuple(target.version) > version_tuple(replica.version):
        return (
            f"{target.key} has a higher version ({target.version}) "
            f"than {replica.key} ({replica.version})"
        )
    if (
        replica.log_bin
        and replica.log_slave_updates
        and replica.binlog_format == "STATEMENT"
        and target.binlog_format in {"ROW", "MIXED"}
    ):
        return f"{target.key} has binlog_format {target.binlog_format}, {replica.key} STATEMENT"
    if target.replica is not None:
        delay = target.replica.sql_delay
        if delay > replica_delay(replica) and delay > max_lag:
            return f"{target.key} is delayed (SQL_Delay {delay}s)"
        if not (target.replica.is_io_running and target.replica.is_sql_running):
            return f"{target.key} is not replicating ({target.replica.describe()})"
        if target.lag is None or target.lag > max_lag:
            shown = "unknown" if target.lag is None else f"{target.lag}s"
            return (
                f"{target.key} is lagging (Seconds_Behind_Master {shown}, more than "
                f"ReasonableMaintenanceReplicationLagSeconds={max_lag})"
            )
    return None


def sibling_refusal(replica: Server, sibling: Server) -> str | None:
    """Why ``move-below`` must not move ``replica`` below ``sibling``, before the checks of
    every GTID move (:func:`refusal`): they do not replicate from the same master
    (orchestrator's "instances are not siblings"), or one of them does not replicate with GTID
    (this move is a GTID move only; orchestrator's file:pos move-below is not done here)."""
    if replica.key == sibling.key:
        return f"cannot move {replica.key} below itself"
    if replica.master is None or replica.master != sibling.master:
        return (
            f"instances are not siblings: {replica.key}, {sibling.key} ({replica.key} "
            f"replicates from {replica.master or 'nobody'}, {sibling.key} from "
            f"{sibling.master or 'nobody'})"
        )
    for server in (replica, sibling):
        assert server.replica is not None  # both have the same master
        if not server.replica.using_gtid:
            setting = "Using_Gtid=No" if server.dialect.is_mariadb else "Auto_Position=0"
            return (
                f"{server.key} does not replicate with GTID ({setting}): move-below moves "
                f"replicas with GTID only (a file:pos move is not done here); switch it to GTID "
                f"first (orchestrator -c enable-gtid -i {server.key}), then move again"
            )
    return None


def replica_delay(server: Server) -> int:
    return server.replica.sql_delay if server.replica is not None else 0


def missing(replica: Server, target: Server) -> str | None:
    """Why ``target`` does not have every transaction ``replica`` has (it would answer
    ``CHANGE MASTER ... master_use_gtid=slave_pos`` with error 1236), or None."""
    why = missing_on_master(replica.dialect, replica.positions, target.positions)
    if why is None:
        return None
    return f"{replica.key} {why}; it would stop with error 1236"


# --- a Galera node as the target -------------------------------------------------------------

GALERA_STATUS_SQL = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_provider_name', 'wsrep_cluster_status', "
    "'wsrep_local_state_comment', 'wsrep_ready')"
)
"""A Galera node's state as a move target. MySQL answers no rows; a MariaDB without a wsrep
provider answers them all, its ``wsrep_provider_name`` empty: neither is a Galera node."""


def galera_target_refusal(target: Server, status: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a Galera node (``status``: the answer to :data:`GALERA_STATUS_SQL`) cannot be a
    replica's new master, or None (also for a server that is no Galera node).

    A node outside the primary component, or not ``Synced`` and ready, serves no queries or
    lags the cluster; one without ``log_slave_updates`` writes only its own clients'
    transactions to its binary log: a replica of it would silently miss the other nodes'."""
    values = {name: text_value(value) for name, value in named_values(status).items()}
    if not values.get("wsrep_provider_name"):
        return None
    problems: list[str] = []
    component = values.get("wsrep_cluster_status", "")
    if component != "Primary":
        problems.append(f"is not in the primary component ({component or 'unknown'})")
    state = values.get("wsrep_local_state_comment", "")
    if state != "Synced":
        problems.append(f"is not Synced ({state or 'unknown'})")
    elif values.get("wsrep_ready", "").upper() != "ON":
        problems.append("is not ready (wsrep_ready=OFF)")
    if not target.log_slave_updates:
        problems.append(
            "does not have log_slave_updates enabled: its binary log misses the transactions "
            "of the other nodes of its Galera cluster"
        )
    if not problems:
        return None
    return f"{target.key} is a Galera node that " + " and ".join(problems)
