"""The analysis code of one instance: orchestrator's first-match chain (reference §3.2).

The chain is kept in orchestrator's order so that every verdict can be traced to one row of the
table in ``docs/analysis.md``. One deliberate change makes the "holistic" rule stricter: a replica
confirms that its master is dead only if its IO thread is *not connected*. orchestrator counts a
replica with a running IO thread but a stopped SQL thread as "not replicating" and may call the
master dead although that replica still talks to it; here such a replica makes the master
*unreachable* (re-check, do not fail over). ``valid_connected`` carries that count.

The ``Galera*`` codes come after orchestrator's chain, for a reachable Galera node that has no
other code: a Galera node's replication problems (and its death) keep orchestrator's codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator_shared.analysis.codes import AnalysisCode
from orchestrator_shared.analysis.facts import ReplicaCounts
from orchestrator_shared.analysis.model import AnalysisOptions
from orchestrator_shared.snapshot import GaleraState, SemiSync


@dataclass(frozen=True, slots=True)
class Subject:
    """The analysed instance's own facts that the chain reads."""

    is_master: bool
    is_co_master: bool
    is_valid: bool
    is_partial: bool
    is_read_only: bool
    depth: int
    is_failing_to_connect: bool
    semi_sync: SemiSync
    is_stale_binlog_coordinates: bool
    galera: GaleraState | None = None
    galera_desynced_seconds: float | None = None
    """How long the Galera node has been desynced without a break (None: it is not)."""


def classify(subject: Subject, counts: ReplicaCounts, options: AnalysisOptions) -> AnalysisCode:
    """The first matching code, or ``NoProblem``."""
    if subject.is_master:
        code = _master_code(subject, counts, options)
    elif subject.is_co_master:
        code = _co_master_code(subject, counts)
    else:
        code = None
    if code is None and not subject.is_master:
        code = _intermediate_master_code(subject, counts)
    if code is None and subject.depth == 1 and subject.is_failing_to_connect:
        code = AnalysisCode.FIRST_TIER_REPLICA_FAILING_TO_CONNECT_TO_MASTER
    if code is None and subject.is_valid and subject.galera is not None:
        code = _galera_code(subject.galera, subject.galera_desynced_seconds, options)
    return code or AnalysisCode.NO_PROBLEM


def _galera_code(
    galera: GaleraState, desynced_seconds: float | None, options: AnalysisOptions
) -> AnalysisCode | None:
    """The worst of a reachable Galera node's troubles: out of the primary component (it
    serves nothing), then desynced for too long (out of flow control for that long, it may
    lag ever further), then not ``Synced``, then fewer nodes than expected."""
    if not galera.is_primary:
        return AnalysisCode.GALERA_NON_PRIMARY_COMPONENT
    too_long = options.galera_desynced_too_long_seconds
    if too_long and desynced_seconds is not None and desynced_seconds >= too_long:
        return AnalysisCode.GALERA_NODE_DESYNCED_TOO_LONG
    if not galera.is_synced:
        return AnalysisCode.GALERA_NODE_NOT_SYNCED
    expected = options.galera_expected_cluster_size
    if expected and galera.cluster_size < expected:
        return AnalysisCode.GALERA_CLUSTER_SIZE_BELOW_EXPECTED
    return None


def _nobody_sees_it(counts: ReplicaCounts) -> bool:
    return counts.valid_replicating == 0 and counts.valid_connected == 0


def _all_lagging(counts: ReplicaCounts) -> bool:
    return (
        counts.lagging == counts.replicas
        and counts.delayed < counts.replicas
        and counts.valid_connected > 0
    )


def _master_code(
    subject: Subject, counts: ReplicaCounts, options: AnalysisOptions
) -> AnalysisCode | None:
    c = counts
    if not subject.is_valid:
        if c.replicas == 0:
            return AnalysisCode.DEAD_MASTER_WITHOUT_REPLICAS
        if c.valid == c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_MASTER
        if c.valid == 0 and _nobody_sees_it(c):
            return AnalysisCode.DEAD_MASTER_AND_REPLICAS
        if 0 < c.valid < c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_MASTER_AND_SOME_REPLICAS
        if _all_lagging(c):
            return AnalysisCode.UNREACHABLE_MASTER_WITH_LAGGING_REPLICAS
        if (
            c.valid > 0
            and c.valid_connected > 0
            and (not subject.is_partial or c.failing_to_connect > 0)
        ):
            return AnalysisCode.UNREACHABLE_MASTER
    semi = subject.semi_sync
    wait = semi.master_wait_for_replica_count
    if semi.master_enabled and semi.master_status and wait > 0:
        if semi.master_clients < wait:
            if subject.is_stale_binlog_coordinates:
                return AnalysisCode.LOCKED_SEMI_SYNC_MASTER
            return AnalysisCode.LOCKED_SEMI_SYNC_MASTER_HYPOTHESIS
        if options.enforce_exact_semi_sync_replicas and semi.master_clients > wait:
            return AnalysisCode.MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS
    if not subject.is_valid:
        return None
    if subject.is_read_only and c.valid_replicating > 0 and options.recover_non_writeable_master:
        return AnalysisCode.NO_WRITEABLE_MASTER
    if c.replicas == 1 and c.valid == 1 and c.valid_replicating == 0:
        return AnalysisCode.MASTER_SINGLE_REPLICA_NOT_REPLICATING
    if c.replicas == 1 and c.valid == 0:
        return AnalysisCode.MASTER_SINGLE_REPLICA_DEAD
    if c.replicas > 1 and c.valid == c.replicas and c.valid_replicating == 0:
        return AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING
    if c.replicas > 1 and 0 < c.valid < c.replicas and c.valid_replicating == 0:
        return AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD
    return None


def _co_master_code(subject: Subject, counts: ReplicaCounts) -> AnalysisCode | None:
    c = counts
    if not subject.is_valid:
        if c.replicas > 0 and c.valid == c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_CO_MASTER
        if c.replicas > 0 and 0 < c.valid < c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_CO_MASTER_AND_SOME_REPLICAS
        if not subject.is_partial and c.valid > 0 and c.valid_connected > 0:
            return AnalysisCode.UNREACHABLE_CO_MASTER
        return None
    if c.replicas > 0 and c.valid_replicating == 0:
        return AnalysisCode.ALL_CO_MASTER_REPLICAS_NOT_REPLICATING
    return None


def _intermediate_master_code(subject: Subject, counts: ReplicaCounts) -> AnalysisCode | None:
    c = counts
    if not subject.is_valid:
        if c.replicas == 1 and c.valid == 1 and _nobody_sees_it(c):
            if c.failing_to_connect == 1:
                return AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT
            return AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA
        if c.replicas > 1 and c.valid == c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_INTERMEDIATE_MASTER
        if 0 < c.valid < c.replicas and _nobody_sees_it(c):
            return AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS
        if c.replicas > 0 and c.valid == 0:
            return AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_REPLICAS
        if _all_lagging(c):
            return AnalysisCode.UNREACHABLE_INTERMEDIATE_MASTER_WITH_LAGGING_REPLICAS
        if not subject.is_partial and c.valid > 0 and c.valid_connected > 0:
            return AnalysisCode.UNREACHABLE_INTERMEDIATE_MASTER
        return None
    if (
        c.replicas > 1
        and c.valid_replicating == 0
        and c.failing_to_connect > 0
        and c.failing_to_connect == c.valid
    ):
        return AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_FAILING_TO_CONNECT_OR_DEAD
    if c.replicas > 0 and c.valid_replicating == 0:
        return AnalysisCode.ALL_INTERMEDIATE_MASTER_REPLICAS_NOT_REPLICATING
    return None
