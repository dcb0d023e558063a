"""The live replication tree of a sandbox: one probe per node, then a pure renderer.

Reachable nodes are placed under the node their replication actually points at
(``Master_Port``); unreachable ones under the node they were built to replicate from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_cli.sandbox.config import HOST
from orchestrator_cli.sandbox.process import ProcessState
from orchestrator_shared.errors import SandboxError

_ERROR_CHARS = 120


@dataclass(frozen=True, kw_only=True)
class NodeReport:
    """What one node looked like when probed. ``problem`` is set iff it was unreachable."""

    index: int
    port: int
    configured_source_port: int | None
    problem: str | None = None
    read_only: bool = False
    gtid_binlog_pos: str = ""
    source_host: str | None = None
    source_port: int | None = None
    io_running: str = ""
    sql_running: str = ""
    lag: int | None = None
    replication_error: str = ""
    semi_sync_status: str | None = None
    semi_sync_clients: int = 0
    galera_state: str | None = None  # wsrep_local_state_comment of a Galera node
    galera_cluster: str = ""  # e.g. "Primary of 3"

    @property
    def key(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def is_replica(self) -> bool:
        return self.source_port is not None

    @property
    def parent_port(self) -> int | None:
        if self.problem is not None:
            return self.configured_source_port
        if self.source_host not in (HOST, "localhost"):
            return None
        return self.source_port


def probe(
    *,
    index: int,
    port: int,
    socket: Path,
    configured_source_port: int | None,
    process: ProcessState,
    semi_sync: bool,
    galera: bool = False,
) -> NodeReport:
    """Read one node's replication state; never raises (a failure becomes ``problem``)."""
    base: dict[str, Any] = {
        "index": index,
        "port": port,
        "configured_source_port": configured_source_port,
    }
    if process is ProcessState.GONE:
        return NodeReport(**base, problem="not running")
    if process is ProcessState.STOPPED:
        return NodeReport(**base, problem="hung (SIGSTOP)")
    key = f"{HOST}:{port}"
    try:
        with NodeSession(key, unix_socket=socket, connect_timeout=1.0, read_timeout=2.0) as s:
            read_only, gtid = s.rows("SELECT @@read_only, @@gtid_binlog_pos")[0]
            replication = s.dicts("SHOW SLAVE STATUS")
            semi: dict[str, str] = {}
            if semi_sync:
                semi = {
                    str(name).lower(): str(value)
                    for name, value in s.rows("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")
                }
            wsrep: dict[str, str] = {}
            if galera:
                wsrep = {
                    str(name).lower(): str(value)
                    for name, value in s.rows("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                }
    except SandboxError as exc:
        return NodeReport(**base, problem=str(exc).removeprefix(f"{key}: "))
    fields: dict[str, Any] = {
        "read_only": bool(read_only),
        "gtid_binlog_pos": str(gtid or ""),
    }
    if replication:
        row = replication[0]
        lag = row.get("Seconds_Behind_Master")
        fields |= {
            "source_host": str(row.get("Master_Host") or ""),
            "source_port": int(row.get("Master_Port") or 0),
            "io_running": str(row.get("Slave_IO_Running") or ""),
            "sql_running": str(row.get("Slave_SQL_Running") or ""),
            "lag": None if lag is None else int(lag),
            "replication_error": str(row.get("Last_IO_Error") or row.get("Last_SQL_Error") or ""),
        }
    if semi:
        fields |= {
            "semi_sync_status": semi.get("rpl_semi_sync_master_status", "OFF"),
            "semi_sync_clients": int(semi.get("rpl_semi_sync_master_clients", "0")),
        }
    if galera:
        fields |= {
            "galera_state": wsrep.get("wsrep_local_state_comment", "?"),
            "galera_cluster": f"{wsrep.get('wsrep_cluster_status', '?')} of "
            f"{wsrep.get('wsrep_cluster_size', '?')}",
        }
    return NodeReport(**base, **fields)


def describe(report: NodeReport) -> str:
    """``127.0.0.1:22307 [replica, ro, IO:Yes SQL:Yes, lag 0, GTID 0-1-12]``; a Galera node:
    ``127.0.0.1:22306 [galera, rw, Synced, Primary of 3, GTID 0-1-12]``."""
    if report.problem is not None:
        return f"{report.key} [unreachable: {report.problem}]"
    role = "galera" if report.galera_state is not None else "master"
    parts = ["replica" if report.is_replica else role, "ro" if report.read_only else "rw"]
    if report.galera_state is not None:
        parts.append(f"{report.galera_state}, {report.galera_cluster}")
    if report.is_replica:
        if report.parent_port is None:
            parts[0] = f"replica of {report.source_host}:{report.source_port}"
        parts.append(f"IO:{report.io_running} SQL:{report.sql_running}")
        parts.append(f"lag {'?' if report.lag is None else report.lag}")
    parts.append(f"GTID {report.gtid_binlog_pos or '-'}")
    if report.semi_sync_status is not None and (
        not report.is_replica or report.semi_sync_clients > 0
    ):
        parts.append(f"semi-sync {report.semi_sync_status}, clients {report.semi_sync_clients}")
    if report.replication_error:
        error = " ".join(report.replication_error.split())
        if len(error) > _ERROR_CHARS:
            error = error[: _ERROR_CHARS - 3] + "..."
        parts.append(f"error: {error}")
    return f"{report.key} [{', '.join(parts)}]"


def render_tree(reports: list[NodeReport]) -> str:
    """The reports as an indented tree, roots first, children in node order."""
    by_port = {report.port: report for report in reports}

    def parent_of(report: NodeReport) -> NodeReport | None:
        port = report.parent_port
        if port is None or port == report.port:
            return None
        return by_port.get(port)

    def is_in_cycle(report: NodeReport) -> bool:
        """Whether following sources from ``report`` comes back to it (co-masters)."""
        seen: set[int] = set()
        parent = parent_of(report)
        while parent is not None and parent.port not in seen:
            if parent.port == report.port:
                return True
            seen.add(parent.port)
            parent = parent_of(parent)
        return False

    children: dict[int, list[NodeReport]] = {report.port: [] for report in reports}
    roots: list[NodeReport] = []
    for report in sorted(reports, key=lambda r: r.index):
        parent = parent_of(report)
        if parent is None or is_in_cycle(report):
            roots.append(report)
        else:
            children[parent.port].append(report)

    lines: list[str] = []
    placed: set[int] = set()

    def walk(report: NodeReport, depth: int) -> None:
        if report.port in placed:
            return
        placed.add(report.port)
        prefix = "" if depth == 0 else "  " * (depth - 1) + "+ "
        lines.append(prefix + describe(report))
        for child in children[report.port]:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    for report in sorted(reports, key=lambda r: r.index):  # belt and braces: place everyone
        walk(report, 0)
    return "\n".join(lines)
