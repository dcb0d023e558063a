"""What the store keeps besides snapshots: plain, immutable rows (no I/O).

Times are timezone-aware ``datetime`` values in UTC (a naive one given to the store is taken as
UTC); the database keeps them as Unix seconds.
These are storage rows, not wire shapes: the API turns them into orchestrator's JSON.
Downtime and promotion candidates are shared values (``orchestrator_shared.operator_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestrator_shared.instance_key import InstanceKey


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    """One cluster as ``clusters-info`` lists it: named after its master."""

    name: str
    alias: str
    domain: str
    master: InstanceKey
    count_instances: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log. ``id`` is assigned by the store (0 before)."""

    at: datetime
    type: str
    message: str
    key: InstanceKey | None = None
    cluster: str = ""
    user: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class FailureDetection:
    """A registered failure detection, shaped after orchestrator's topology_failure_detection.

    ``analysis`` is the analysis entry as JSON text (orchestrator's ReplicationAnalysis), kept
    as the recovery service sent it.
    """

    key: InstanceKey
    cluster: str
    analysis_code: str
    detected_at: datetime
    cluster_alias: str = ""
    is_actionable: bool = True
    processing_node: str = ""
    processing_token: str = ""
    related_recovery_id: int = 0
    analysis: str = "{}"
    id: int = 0


@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """One recovery, shaped after orchestrator's TopologyRecovery; keyed by ``uid``.

    Recording the same ``uid`` again (started, then completed) updates the row.
    """

    uid: str
    key: InstanceKey
    cluster: str
    analysis_code: str
    started_at: datetime
    cluster_alias: str = ""
    type: str = ""
    recovery_type: str = ""
    ended_at: datetime | None = None
    is_active: bool = True
    is_successful: bool = False
    successor_key: InstanceKey | None = None
    successor_alias: str = ""
    lost_replicas: tuple[InstanceKey, ...] = ()
    participating_instances: tuple[InstanceKey, ...] = ()
    all_errors: tuple[str, ...] = ()
    processing_node: str = ""
    processing_token: str = ""
    fencing_token: int = 0
    acknowledged: bool = False
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    acknowledged_comment: str = ""
    last_detection_id: int = 0
    related_recovery_id: int = 0
    analysis: str = "{}"
    id: int = 0


@dataclass(frozen=True, slots=True)
class GlobalRecoveries:
    """The global recovery kill switch as users see it (``check-global-recoveries``)."""

    enabled: bool
    changed_at: datetime | None = None
    changed_by: str = ""


@dataclass(frozen=True, slots=True)
class RecoveryFilter:
    """Filters of ``audit-recovery``; all given ones must hold."""

    id: int | None = None
    uid: str | None = None
    cluster: str | None = None
    cluster_alias: str | None = None
    key: InstanceKey | None = None
    unacknowledged_only: bool = False
    limit: int = 50
    offset: int = 0
