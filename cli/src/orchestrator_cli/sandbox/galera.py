"""The Galera part of a sandbox (``sandbox up --galera N``): checks, seeding, waiting.

Joiners are seeded rather than sent a snapshot (SST). ``up`` bootstraps node 0 once as a new
cluster and shuts it down cleanly: its ``grastate.dat`` and InnoDB then both record the new
cluster's UUID and seqno. Copying that datadir to the other Galera nodes lets them join by
IST (a few events from node 0's gcache) in about a second instead of a mariabackup SST each
(the SST script sleeps 10 s before streaming, and node 0 can only give one SST at a time).
A fresh template datadir is not enough: its InnoDB has no wsrep position, so a joiner would
need an SST whatever its ``grastate.dat`` says.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_cli.sandbox.config import BINLOG_BASENAME, GALERA_PROVIDER, NodeLayout
from orchestrator_shared.errors import SandboxError

POLL_S = 0.1
# What a Galera node needs besides mariadbd: the provider, and the mariabackup SST method's
# tools for a node that rejoins after a crash with too much to catch up by IST.
_SST_TOOLS = ("mariadb-backup", "mbstream", "socat")
_STATUS = (
    "wsrep_ready",
    "wsrep_connected",
    "wsrep_local_state_comment",
    "wsrep_cluster_status",
    "wsrep_cluster_size",
    "wsrep_cluster_state_uuid",
    "wsrep_incoming_addresses",
)
_BINLOGS = f"{BINLOG_BASENAME}.*"
# Files of node 0's datadir a joiner must not inherit: its binlogs (each node writes its own),
# its gcache and its last view (each node has its own).
_NOT_SEEDED = (_BINLOGS, "galera.cache", "gvwstate.dat")


def check_prerequisites() -> None:
    """One line naming what is missing (Debian packages galera-4, mariadb-backup, socat)."""
    if not GALERA_PROVIDER.is_file():
        raise SandboxError(f"no Galera provider at {GALERA_PROVIDER} (install galera-4)")
    missing = [tool for tool in _SST_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SandboxError(
            f"Galera state transfer needs {', '.join(missing)} on PATH "
            "(install mariadb-backup and socat)"
        )


def seed_joiners(seed: Path, joiners: list[Path]) -> None:
    """Copy the cleanly shut down bootstrap node's datadir ``seed`` to each joiner datadir,
    each joiner marked not safe to bootstrap; drop the seed's binlogs so that every node,
    the seed included, starts a binlog of its own."""
    try:
        for binlog in seed.glob(_BINLOGS):
            binlog.unlink()
        for datadir in joiners:
            shutil.rmtree(datadir, ignore_errors=True)
            shutil.copytree(seed, datadir, ignore=shutil.ignore_patterns(*_NOT_SEEDED))
            state = datadir / "grastate.dat"
            state.write_text(
                state.read_text().replace("safe_to_bootstrap: 1", "safe_to_bootstrap: 0")
            )
    except OSError as exc:
        raise SandboxError(f"cannot seed the Galera joiners from {seed}: {exc}") from exc


def status(layout: NodeLayout) -> dict[str, str]:
    """The node's ``wsrep_*`` status variables that say whether it is in the cluster."""
    names = ", ".join(f"'{name}'" for name in _STATUS)
    with NodeSession(layout.key, unix_socket=layout.socket, connect_timeout=1.0) as session:
        rows = session.rows(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    return {str(name).lower(): str(value) for name, value in rows}


def is_synced(state: dict[str, str], cluster_size: int | None = None) -> bool:
    """Synced, ready, in the primary component (of ``cluster_size`` nodes when given)."""
    return (
        state.get("wsrep_local_state_comment") == "Synced"
        and state.get("wsrep_ready") == "ON"
        and state.get("wsrep_cluster_status") == "Primary"
        and (cluster_size is None or state.get("wsrep_cluster_size") == str(cluster_size))
    )


def wait_synced(
    layouts: list[NodeLayout], *, deadline: float, cluster_size: int | None = None
) -> None:
    """Wait until every node in ``layouts`` is Synced in a primary component of
    ``cluster_size`` nodes (any size when None); raise with their state otherwise."""
    pending = list(layouts)
    while pending:
        pending = [layout for layout in pending if not _synced(layout, cluster_size)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise SandboxError(
                "Galera nodes not synced in time: "
                + "; ".join(_summary(layout) for layout in pending)
            )
        time.sleep(POLL_S)


def _synced(layout: NodeLayout, cluster_size: int | None) -> bool:
    try:
        return is_synced(status(layout), cluster_size)
    except SandboxError:
        return False


def _summary(layout: NodeLayout) -> str:
    try:
        state = status(layout)
    except SandboxError as exc:
        return str(exc)
    return (
        f"{layout.key}: {state.get('wsrep_local_state_comment', '?')}, "
        f"{state.get('wsrep_cluster_status', '?')} of {state.get('wsrep_cluster_size', '?')}"
    )
