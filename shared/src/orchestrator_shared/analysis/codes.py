"""The analysis codes and structure warnings, spelled exactly as orchestrator spells them.

``AnalysisCode`` is the one verdict per analysed instance (orchestrator's ``Analysis`` field);
``StructureWarning`` lists what is risky about the topology below it even when nothing has
failed (``StructureAnalysis``). Group Replication, binlog-server and NDB codes are not here: this
project does not handle those topologies (see ``docs/analysis.md``). The ``Galera*`` codes are
new (orchestrator has no Galera logic); no Galera node is ever failed over, and only
``GaleraNonPrimaryComponent`` of a node with async replicas is acted on: they are relocated
(docs/galera.md).
"""

from __future__ import annotations

from enum import StrEnum


class AnalysisCode(StrEnum):
    NO_PROBLEM = "NoProblem"
    DEAD_MASTER_WITHOUT_REPLICAS = "DeadMasterWithoutReplicas"
    DEAD_MASTER = "DeadMaster"
    DEAD_MASTER_AND_REPLICAS = "DeadMasterAndReplicas"
    DEAD_MASTER_AND_SOME_REPLICAS = "DeadMasterAndSomeReplicas"
    UNREACHABLE_MASTER_WITH_LAGGING_REPLICAS = "UnreachableMasterWithLaggingReplicas"
    UNREACHABLE_MASTER = "UnreachableMaster"
    LOCKED_SEMI_SYNC_MASTER_HYPOTHESIS = "LockedSemiSyncMasterHypothesis"
    LOCKED_SEMI_SYNC_MASTER = "LockedSemiSyncMaster"
    MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS = "MasterWithTooManySemiSyncReplicas"
    NO_WRITEABLE_MASTER = "NoWriteableMasterStructureWarning"
    MASTER_SINGLE_REPLICA_NOT_REPLICATING = "MasterSingleReplicaNotReplicating"
    MASTER_SINGLE_REPLICA_DEAD = "MasterSingleReplicaDead"
    ALL_MASTER_REPLICAS_NOT_REPLICATING = "AllMasterReplicasNotReplicating"
    ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD = "AllMasterReplicasNotReplicatingOrDead"
    DEAD_CO_MASTER = "DeadCoMaster"
    DEAD_CO_MASTER_AND_SOME_REPLICAS = "DeadCoMasterAndSomeReplicas"
    UNREACHABLE_CO_MASTER = "UnreachableCoMaster"
    ALL_CO_MASTER_REPLICAS_NOT_REPLICATING = "AllCoMasterReplicasNotReplicating"
    DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT = (
        "DeadIntermediateMasterWithSingleReplicaFailingToConnect"
    )
    DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA = "DeadIntermediateMasterWithSingleReplica"
    DEAD_INTERMEDIATE_MASTER = "DeadIntermediateMaster"
    DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS = "DeadIntermediateMasterAndSomeReplicas"
    DEAD_INTERMEDIATE_MASTER_AND_REPLICAS = "DeadIntermediateMasterAndReplicas"
    UNREACHABLE_INTERMEDIATE_MASTER_WITH_LAGGING_REPLICAS = (
        "UnreachableIntermediateMasterWithLaggingReplicas"
    )
    UNREACHABLE_INTERMEDIATE_MASTER = "UnreachableIntermediateMaster"
    ALL_INTERMEDIATE_MASTER_REPLICAS_FAILING_TO_CONNECT_OR_DEAD = (
        "AllIntermediateMasterReplicasFailingToConnectOrDead"
    )
    ALL_INTERMEDIATE_MASTER_REPLICAS_NOT_REPLICATING = "AllIntermediateMasterReplicasNotReplicating"
    FIRST_TIER_REPLICA_FAILING_TO_CONNECT_TO_MASTER = "FirstTierReplicaFailingToConnectToMaster"
    GALERA_NON_PRIMARY_COMPONENT = "GaleraNonPrimaryComponent"
    GALERA_NODE_DESYNCED_TOO_LONG = "GaleraNodeDesyncedTooLong"
    GALERA_NODE_NOT_SYNCED = "GaleraNodeNotSynced"
    GALERA_CLUSTER_SIZE_BELOW_EXPECTED = "GaleraClusterSizeBelowExpected"

    @property
    def description(self) -> str:
        """orchestrator's one-line ``Description`` of the code."""
        return _DESCRIPTIONS[self]

    @property
    def is_actionable(self) -> bool:
        """Whether orchestrator has a recovery for it (``IsActionableRecovery``)."""
        return self in ACTIONABLE_CODES


class StructureWarning(StrEnum):
    NO_LOGGING_REPLICAS = "NoLoggingReplicasStructureWarning"
    NO_FAILOVER_SUPPORT = "NoFailoverSupportStructureWarning"
    STATEMENT_AND_MIXED_LOGGING_REPLICAS = "StatementAndMixedLoggingReplicasStructureWarning"
    STATEMENT_AND_ROW_LOGGING_REPLICAS = "StatementAndRowLoggingReplicasStructureWarning"
    MIXED_AND_ROW_LOGGING_REPLICAS = "MixedAndRowLoggingReplicasStructureWarning"
    MULTIPLE_MAJOR_VERSIONS_LOGGING_REPLICAS = (
        "MultipleMajorVersionsLoggingReplicasStructureWarning"
    )
    DIFFERENT_GTID_MODES = "DifferentGTIDModesStructureWarning"
    ERRANT_GTID = "ErrantGTIDStructureWarning"
    NO_WRITEABLE_MASTER = "NoWriteableMasterStructureWarning"
    NOT_ENOUGH_VALID_SEMI_SYNC_REPLICAS = "NotEnoughValidSemiSyncReplicasStructureWarning"


ACTIONABLE_CODES: frozenset[AnalysisCode] = frozenset(
    {
        AnalysisCode.DEAD_MASTER,
        AnalysisCode.DEAD_MASTER_AND_SOME_REPLICAS,
        AnalysisCode.LOCKED_SEMI_SYNC_MASTER,
        AnalysisCode.MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS,
        AnalysisCode.NO_WRITEABLE_MASTER,
        AnalysisCode.DEAD_CO_MASTER,
        AnalysisCode.DEAD_CO_MASTER_AND_SOME_REPLICAS,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS,
        AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_FAILING_TO_CONNECT_OR_DEAD,
    }
)
"""Codes with a recovery handler in orchestrator (``getCheckAndRecoverFunction``)."""

REPLICA_SIDE_CODES: frozenset[AnalysisCode] = frozenset(
    {
        AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING,
        AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD,
        AnalysisCode.MASTER_SINGLE_REPLICA_DEAD,
        AnalysisCode.ALL_CO_MASTER_REPLICAS_NOT_REPLICATING,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_REPLICAS,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS,
        AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_FAILING_TO_CONNECT_OR_DEAD,
        AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_NOT_REPLICATING,
    }
)
"""Codes about the replicas' side: skippable when every replica is downtimed."""

_DESCRIPTIONS: dict[AnalysisCode, str] = {
    AnalysisCode.NO_PROBLEM: "",
    AnalysisCode.DEAD_MASTER_WITHOUT_REPLICAS: (
        "Master cannot be reached by orchestrator and has no replica"
    ),
    AnalysisCode.DEAD_MASTER: (
        "Master cannot be reached by orchestrator and none of its replicas is replicating"
    ),
    AnalysisCode.DEAD_MASTER_AND_REPLICAS: (
        "Master cannot be reached by orchestrator and none of its replicas is replicating"
    ),
    AnalysisCode.DEAD_MASTER_AND_SOME_REPLICAS: (
        "Master cannot be reached by orchestrator; some of its replicas are unreachable and "
        "none of its reachable replicas is replicating"
    ),
    AnalysisCode.UNREACHABLE_MASTER_WITH_LAGGING_REPLICAS: (
        "Master cannot be reached by orchestrator and all of its replicas are lagging"
    ),
    AnalysisCode.UNREACHABLE_MASTER: (
        "Master cannot be reached by orchestrator but it has replicating replicas; "
        "possibly a network/host issue"
    ),
    AnalysisCode.LOCKED_SEMI_SYNC_MASTER_HYPOTHESIS: (
        "Semi sync master seems to be locked, more samplings needed to validate"
    ),
    AnalysisCode.LOCKED_SEMI_SYNC_MASTER: (
        "Semi sync master is locked since it doesn't get enough replica acknowledgements"
    ),
    AnalysisCode.MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS: (
        "Semi sync master has more semi-sync replicas than configured"
    ),
    AnalysisCode.NO_WRITEABLE_MASTER: "Master is read-only",
    AnalysisCode.MASTER_SINGLE_REPLICA_NOT_REPLICATING: (
        "Master is reachable but its single replica is not replicating"
    ),
    AnalysisCode.MASTER_SINGLE_REPLICA_DEAD: "Master is reachable but its single replica is dead",
    AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING: (
        "Master is reachable but none of its replicas is replicating"
    ),
    AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD: (
        "Master is reachable but none of its replicas is replicating"
    ),
    AnalysisCode.DEAD_CO_MASTER: (
        "Co-master cannot be reached by orchestrator and none of its replicas is replicating"
    ),
    AnalysisCode.DEAD_CO_MASTER_AND_SOME_REPLICAS: (
        "Co-master cannot be reached by orchestrator; some of its replicas are unreachable and "
        "none of its reachable replicas is replicating"
    ),
    AnalysisCode.UNREACHABLE_CO_MASTER: (
        "Co-master cannot be reached by orchestrator but it has replicating replicas; "
        "possibly a network/host issue"
    ),
    AnalysisCode.ALL_CO_MASTER_REPLICAS_NOT_REPLICATING: (
        "Co-master is reachable but none of its replicas is replicating"
    ),
    AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT: (
        "Intermediate master cannot be reached by orchestrator and its (single) replica is "
        "failing to connect"
    ),
    AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA: (
        "Intermediate master cannot be reached by orchestrator and its (single) replica is not "
        "replicating"
    ),
    AnalysisCode.DEAD_INTERMEDIATE_MASTER: (
        "Intermediate master cannot be reached by orchestrator and none of its replicas is "
        "replicating"
    ),
    AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS: (
        "Intermediate master cannot be reached by orchestrator; some of its replicas are "
        "unreachable and none of its reachable replicas is replicating"
    ),
    AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_REPLICAS: (
        "Intermediate master cannot be reached by orchestrator and all of its replicas are "
        "unreachable"
    ),
    AnalysisCode.UNREACHABLE_INTERMEDIATE_MASTER_WITH_LAGGING_REPLICAS: (
        "Intermediate master cannot be reached by orchestrator and all of its replicas are lagging"
    ),
    AnalysisCode.UNREACHABLE_INTERMEDIATE_MASTER: (
        "Intermediate master cannot be reached by orchestrator but it has replicating replicas; "
        "possibly a network/host issue"
    ),
    AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_FAILING_TO_CONNECT_OR_DEAD: (
        "Intermediate master is reachable but all of its replicas are failing to connect"
    ),
    AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_NOT_REPLICATING: (
        "Intermediate master is reachable but none of its replicas is replicating"
    ),
    AnalysisCode.FIRST_TIER_REPLICA_FAILING_TO_CONNECT_TO_MASTER: (
        "1st tier replica (directly replicating from topology master) is unable to connect to "
        "the master"
    ),
    AnalysisCode.GALERA_NON_PRIMARY_COMPONENT: (
        "Galera node is reachable but not in the primary component: it refuses queries"
    ),
    AnalysisCode.GALERA_NODE_DESYNCED_TOO_LONG: (
        "Galera node has been desynced for GaleraDesyncedTooLongSeconds or longer: out of flow "
        "control, it may fall ever further behind its cluster"
    ),
    AnalysisCode.GALERA_NODE_NOT_SYNCED: (
        "Galera node is reachable but not Synced with its cluster (joining, donor or desynced)"
    ),
    AnalysisCode.GALERA_CLUSTER_SIZE_BELOW_EXPECTED: (
        "Galera node sees fewer nodes in its cluster than GaleraExpectedClusterSize"
    ),
}
