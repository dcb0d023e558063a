"""Setting up a sandbox's replication and waiting for it, over each node's unix socket."""

from __future__ import annotations

import time

from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_cli.sandbox.config import (
    NodeLayout,
    SandboxTLS,
    change_master_sql,
    master_setup_sql,
)
from orchestrator_shared.errors import SandboxError

POLL_S = 0.05


def _session(layout: NodeLayout) -> NodeSession:
    return NodeSession(layout.key, unix_socket=layout.socket)


def set_up_master(master: NodeLayout) -> None:
    """Users, the ``sandbox`` database and its table: before any replica attaches, so that
    every replica gets them through replication."""
    with _session(master) as session:
        for statement in master_setup_sql():
            session.rows(statement)


def attach(
    replica: NodeLayout,
    source: NodeLayout,
    tls: SandboxTLS | None = None,
    *,
    server_defaults: bool = False,
) -> None:
    """Point ``replica`` at ``source`` with GTID (``slave_pos``), over TLS when ``tls`` is
    given, and start replicating (MariaDB's default heartbeat with ``server_defaults``)."""
    with _session(replica) as session:
        session.rows(change_master_sql(source.port, tls, server_defaults=server_defaults))
        session.rows("START SLAVE")


def wait_caught_up(master: NodeLayout, replicas: list[NodeLayout], *, deadline: float) -> None:
    """Wait until each replica runs both replication threads and has applied the master's
    current ``gtid_binlog_pos``. A stopped thread with an error fails at once."""
    with _session(master) as session:
        target = str(session.value("SELECT @@gtid_binlog_pos") or "")
    pending = list(replicas)
    while pending:
        pending = [replica for replica in pending if not _is_caught_up(replica, target)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            summary = "; ".join(_summary(replica) for replica in pending)
            raise SandboxError(f"replicas did not catch up with {target}: {summary}")
        time.sleep(POLL_S)


def wait_semi_sync_clients(expected: dict[NodeLayout, int], *, deadline: float) -> None:
    """Wait until each node counts (at least) its expected number of semi-sync replicas."""
    while True:
        short = [layout for layout, count in expected.items() if _semi_sync_clients(layout) < count]
        if not short:
            return
        if time.monotonic() >= deadline:
            keys = ", ".join(layout.key for layout in short)
            raise SandboxError(f"semi-sync replicas did not connect to {keys}")
        time.sleep(POLL_S)


def _semi_sync_clients(layout: NodeLayout) -> int:
    with _session(layout) as session:
        rows = session.rows("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
    return int(rows[0][1]) if rows else 0


def _is_caught_up(replica: NodeLayout, target: str) -> bool:
    with _session(replica) as session:
        rows = session.dicts("SHOW SLAVE STATUS")
        if not rows:
            raise SandboxError(f"{replica.key} has no replication configured")
        row = rows[0]
        io, sql = row.get("Slave_IO_Running"), row.get("Slave_SQL_Running")
        error = row.get("Last_SQL_Error") or (row.get("Last_IO_Error") if io == "No" else "")
        if error:
            raise SandboxError(f"{replica.key} replication failed: {error}")
        if io != "Yes" or sql != "Yes":
            return False
        return not target or session.value(f"SELECT MASTER_GTID_WAIT('{target}', 0)") == 0


def _summary(replica: NodeLayout) -> str:
    try:
        with _session(replica) as session:
            rows = session.dicts("SHOW SLAVE STATUS")
    except SandboxError as exc:
        return str(exc)
    if not rows:
        return f"{replica.key}: no replication"
    row = rows[0]
    return (
        f"{replica.key}: IO:{row.get('Slave_IO_Running')} SQL:{row.get('Slave_SQL_Running')} "
        f"at {row.get('Gtid_IO_Pos') or '-'} {row.get('Last_IO_Error') or ''}"
    ).rstrip()
