"""The values analysis works with: its thresholds (``AnalysisOptions``) and its verdict
(``Analysis``), plus orchestrator's ``ReplicationAnalysis`` JSON for the compatible API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from orchestrator_shared.analysis.codes import AnalysisCode, StructureWarning
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Coordinates


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisOptions:
    """Thresholds of the analysis, with orchestrator's defaults.

    ``from_settings`` takes the poll interval and the two lag thresholds from the settings
    (``InstancePollSeconds``, ``ReasonableReplicationLagSeconds``,
    ``ReasonableLockedSemiSyncMasterSeconds``), and ``EnforceExactSemiSyncReplicas``,
    ``RecoveryIgnoreHostnameFilters``, ``GaleraExpectedClusterSize``,
    ``GaleraDesyncedTooLongSeconds``; the others are
    orchestrator settings this project does not read from its config file yet.
    """

    instance_poll_seconds: float = 5.0
    reasonable_instance_check_seconds: float = 1.0
    """A probe attempted this long after the poll interval past the last sighting hangs."""
    reasonable_replication_lag_seconds: float = 10.0
    reasonable_locked_semi_sync_master_seconds: float = 10.0
    recover_non_writeable_master: bool = False
    """orchestrator's ``RecoverNonWriteableMaster``: a read-only master becomes the main code."""
    enforce_exact_semi_sync_replicas: bool = False
    """orchestrator's ``EnforceExactSemiSyncReplicas``: enables the too-many-replicas code."""
    recovery_ignore_hostname_filters: tuple[str, ...] = ()
    """orchestrator's ``RecoveryIgnoreHostnameFilters``: an instance whose host name one of
    these regular expressions matches gets no analysis at all (it is never recovered)."""
    galera_expected_cluster_size: int = 0
    """``GaleraExpectedClusterSize``: a Galera node seeing fewer nodes in its cluster is
    ``GaleraClusterSizeBelowExpected`` (0: not checked)."""
    galera_desynced_too_long_seconds: float = 600.0
    """``GaleraDesyncedTooLongSeconds``: a Galera node desynced this long without a break is
    ``GaleraNodeDesyncedTooLong`` (0: not checked; needs ``analyze(desynced_since=...)``)."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        return cls(
            instance_poll_seconds=float(settings.InstancePollSeconds),
            reasonable_replication_lag_seconds=float(settings.ReasonableReplicationLagSeconds),
            reasonable_locked_semi_sync_master_seconds=float(
                settings.locked_semi_sync_master_seconds
            ),
            **{
                "enforce_exact_semi_sync_replicas": settings.EnforceExactSemiSyncReplicas,
                "recovery_ignore_hostname_filters": settings.RecoveryIgnoreHostnameFilters,
                "galera_expected_cluster_size": settings.GaleraExpectedClusterSize,
                "galera_desynced_too_long_seconds": float(settings.GaleraDesyncedTooLongSeconds),
                **overrides,
            },
        )

    @property
    def hung_probe_seconds(self) -> float:
        """orchestrator's ``InstancePollSeconds + ReasonableInstanceCheckSeconds``."""
        return self.instance_poll_seconds + self.reasonable_instance_check_seconds

    @property
    def recently_checked_seconds(self) -> float:
        """orchestrator's ``IsRecentlyChecked``: checked within 5 poll intervals."""
        return 5 * self.instance_poll_seconds


@dataclass(frozen=True, slots=True)
class CoordinatesSeen:
    """A master's binlog coordinates and since when they have not moved (semi-sync lock check)."""

    coordinates: Coordinates
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """The verdict on one instance seen as a master of its replicas (a ``ReplicationAnalysis``).

    ``evidence`` holds, in words, the facts the verdict rests on: what the probe of the
    instance found and what each replica reported.
    """

    key: InstanceKey
    master_key: InstanceKey | None
    cluster_name: str
    cluster_alias: str
    cluster_instance_count: int
    data_center: str
    region: str
    binlog_coordinates: Coordinates | None
    is_master: bool
    is_co_master: bool
    is_read_only: bool
    last_check_valid: bool
    last_check_partial_success: bool
    is_failing_to_connect_to_master: bool
    replication_depth: int
    replicas: tuple[InstanceKey, ...]
    count_replicas: int
    count_valid_replicas: int
    count_valid_replicating_replicas: int
    count_valid_replicas_connected_to_master: int
    count_replicas_failing_to_connect_to_master: int
    count_downtimed_replicas: int
    count_delayed_replicas: int
    count_lagging_replicas: int
    count_logging_replicas: int
    count_statement_based_logging_replicas: int
    count_mixed_based_logging_replicas: int
    count_row_based_logging_replicas: int
    count_distinct_major_versions_logging_replicas: int
    count_semi_sync_replicas_enabled: int
    oracle_gtid_immediate_topology: bool
    mariadb_gtid_immediate_topology: bool
    semi_sync_master_enabled: bool
    semi_sync_master_status: bool
    semi_sync_master_wait_for_replica_count: int
    semi_sync_master_clients: int
    is_stale_binlog_coordinates: bool
    gtid_mode: str
    min_replica_gtid_mode: str
    max_replica_gtid_mode: str
    errant_gtids: Mapping[InstanceKey, str] = field(default_factory=dict)
    """Errant GTIDs of each direct replica that has some (downtimed ones included)."""
    max_replica_gtid_errant: str = ""
    """The errant GTIDs of the non-downtimed replicas, ``;``-joined (orchestrator's field)."""
    code: AnalysisCode = AnalysisCode.NO_PROBLEM
    structure: tuple[StructureWarning, ...] = ()
    is_downtimed: bool = False
    downtime_end: datetime | None = None
    downtime_remaining_seconds: int = 0
    is_replicas_downtimed: bool = False
    skippable_due_to_downtime: bool = False
    evidence: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return self.code.description

    @property
    def is_actionable(self) -> bool:
        """The code's (orchestrator's ``IsActionableRecovery``); and a Galera node outside the
        primary component with async replicas, which are relocated (docs/galera.md)."""
        if self.code is AnalysisCode.GALERA_NON_PRIMARY_COMPONENT:
            return bool(self.replicas)
        return self.code.is_actionable

    @property
    def has_problem(self) -> bool:
        return self.code is not AnalysisCode.NO_PROBLEM or bool(self.structure)

    def to_orchestrator_json(self) -> dict[str, Any]:
        """orchestrator's ``ReplicationAnalysis`` JSON (field names and types as it sends them)."""
        replicas = [_key_json(key) for key in self.replicas]
        coordinates = self.binlog_coordinates
        return {
            "AnalyzedInstanceKey": _key_json(self.key),
            "AnalyzedInstanceMasterKey": _key_json(self.master_key),
            "ClusterDetails": {
                "ClusterName": self.cluster_name,
                "ClusterAlias": self.cluster_alias,
                "ClusterDomain": self.cluster_name,
                "CountInstances": self.cluster_instance_count,
                "HeuristicLag": 0,
                "HasAutomatedMasterRecovery": False,
                "HasAutomatedIntermediateMasterRecovery": False,
            },
            "AnalyzedInstanceDataCenter": self.data_center,
            "AnalyzedInstanceRegion": self.region,
            "AnalyzedInstancePhysicalEnvironment": "",
            "AnalyzedInstanceBinlogCoordinates": {
                "LogFile": coordinates.file if coordinates else "",
                "LogPos": coordinates.position if coordinates else 0,
                "Type": 0,
            },
            "IsMaster": self.is_master,
            "IsReplicationGroupMember": False,
            "IsCoMaster": self.is_co_master,
            "LastCheckValid": self.last_check_valid,
            "LastCheckPartialSuccess": self.last_check_partial_success,
            "CountReplicas": self.count_replicas,
            "CountValidReplicas": self.count_valid_replicas,
            "CountValidReplicatingReplicas": self.count_valid_replicating_replicas,
            "CountReplicasFailingToConnectToMaster": (
                self.count_replicas_failing_to_connect_to_master
            ),
            "CountDowntimedReplicas": self.count_downtimed_replicas,
            "ReplicationDepth": self.replication_depth,
            "Replicas": replicas,
            "SlaveHosts": list(replicas),
            "IsFailingToConnectToMaster": self.is_failing_to_connect_to_master,
            "Analysis": self.code.value,
            "Description": self.description,
            "StructureAnalysis": [warning.value for warning in self.structure] or None,
            "IsDowntimed": self.is_downtimed,
            "IsReplicasDowntimed": self.is_replicas_downtimed,
            "DowntimeEndTimestamp": (
                self.downtime_end.strftime("%Y-%m-%d %H:%M:%S") if self.downtime_end else ""
            ),
            "DowntimeRemainingSeconds": self.downtime_remaining_seconds,
            "IsBinlogServer": False,
            "PseudoGTIDImmediateTopology": False,
            "OracleGTIDImmediateTopology": self.oracle_gtid_immediate_topology,
            "MariaDBGTIDImmediateTopology": self.mariadb_gtid_immediate_topology,
            "BinlogServerImmediateTopology": False,
            "SemiSyncMasterEnabled": self.semi_sync_master_enabled,
            "SemiSyncMasterStatus": self.semi_sync_master_status,
            "SemiSyncMasterWaitForReplicaCount": self.semi_sync_master_wait_for_replica_count,
            "SemiSyncMasterClients": self.semi_sync_master_clients,
            "CountSemiSyncReplicasEnabled": self.count_semi_sync_replicas_enabled,
            "CountLoggingReplicas": self.count_logging_replicas,
            "CountStatementBasedLoggingReplicas": self.count_statement_based_logging_replicas,
            "CountMixedBasedLoggingReplicas": self.count_mixed_based_logging_replicas,
            "CountRowBasedLoggingReplicas": self.count_row_based_logging_replicas,
            "CountDistinctMajorVersionsLoggingReplicas": (
                self.count_distinct_major_versions_logging_replicas
            ),
            "CountDelayedReplicas": self.count_delayed_replicas,
            "CountLaggingReplicas": self.count_lagging_replicas,
            "IsActionableRecovery": self.is_actionable,
            "ProcessingNodeHostname": "",
            "ProcessingNodeToken": "",
            "CountAdditionalAgreeingNodes": 0,
            "StartActivePeriod": "",
            "SkippableDueToDowntime": self.skippable_due_to_downtime,
            "GTIDMode": self.gtid_mode,
            "MinReplicaGTIDMode": self.min_replica_gtid_mode,
            "MaxReplicaGTIDMode": self.max_replica_gtid_mode,
            "MaxReplicaGTIDErrant": self.max_replica_gtid_errant,
            "CommandHint": "",
            "IsReadOnly": self.is_read_only,
        }


def _key_json(key: InstanceKey | None) -> dict[str, Any]:
    if key is None:
        return {"Hostname": "", "Port": 0}
    return {"Hostname": key.host, "Port": key.port}
