"""Structure warnings: what makes a topology risky to fail over, whatever its health.

orchestrator's rules (reference §3.2), with one MariaDB addition: ``DifferentGTIDModes`` also
fires when a MariaDB master's replicas mix GTID (``Using_Gtid`` ``Slave_Pos``/``Current_Pos``)
and file:pos replication (``Using_Gtid: No``), MariaDB's form of a GTID-mode mismatch (MariaDB
has no ``gtid_mode``, so orchestrator's test never fires there).
"""

from __future__ import annotations

from orchestrator_shared.analysis.codes import StructureWarning
from orchestrator_shared.analysis.facts import ReplicaCounts
from orchestrator_shared.snapshot import SemiSync

W = StructureWarning


def structure_warnings(
    *,
    is_master: bool,
    is_read_only: bool,
    gtid_mode: str,
    semi_sync: SemiSync,
    counts: ReplicaCounts,
    has_errant_replica: bool,
) -> tuple[StructureWarning, ...]:
    c = counts
    found: list[StructureWarning] = []
    if is_master and c.logging == 0 and c.replicas > 1:
        found.append(W.NO_LOGGING_REPLICAS)
    if is_master and c.replicas > 1 and not c.oracle_gtid_topology and not c.mariadb_gtid_topology:
        found.append(W.NO_FAILOVER_SUPPORT)
    if is_master and c.statement_logging > 0 and c.mixed_logging > 0:
        found.append(W.STATEMENT_AND_MIXED_LOGGING_REPLICAS)
    if is_master and c.statement_logging > 0 and c.row_logging > 0:
        found.append(W.STATEMENT_AND_ROW_LOGGING_REPLICAS)
    if is_master and c.mixed_logging > 0 and c.row_logging > 0:
        found.append(W.MIXED_AND_ROW_LOGGING_REPLICAS)
    if is_master and c.distinct_logging_major_versions > 1:
        found.append(W.MULTIPLE_MAJOR_VERSIONS_LOGGING_REPLICAS)
    mode = gtid_mode.upper()
    if c.replicas > 0 and (
        mode != c.min_gtid_mode or mode != c.max_gtid_mode or c.has_mixed_mariadb_gtid_use
    ):
        found.append(W.DIFFERENT_GTID_MODES)
    if has_errant_replica:
        found.append(W.ERRANT_GTID)
    if is_master and is_read_only:
        found.append(W.NO_WRITEABLE_MASTER)
    if (
        is_master
        and semi_sync.master_enabled
        and not semi_sync.master_status
        and semi_sync.master_wait_for_replica_count > 0
        and semi_sync.master_clients < semi_sync.master_wait_for_replica_count
    ):
        found.append(W.NOT_ENOUGH_VALID_SEMI_SYNC_REPLICAS)
    return tuple(found)
