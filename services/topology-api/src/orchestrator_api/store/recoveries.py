"""Recovery events from the bus into the store: failure detections, recovery history, and what
a completed master recovery changes for operators.

``orchestrator.v1.recovery.<cluster>.<phase>`` (CloudEvents, see ``orchestrator_shared.events``):

* ``detected`` → a failure detection (``/api/audit-failure-detection``);
* every phase → the recovery's row, keyed by its id (``/api/audit-recovery``): active until
  ``completed`` / ``failed`` / ``blocked``, successful when completed with a successor;
* every phase → one step of the recovery (``/api/audit-recovery-steps/{uid}``);
* ``completed`` of a master recovery or takeover → the cluster's succession is recorded (its old
  name and alias follow the successor, see :mod:`.aliases`), the alias and domain set by
  operators move to the successor's cluster (the cluster is named after its master, so its name
  changed), a downtime of the successor ends, and the failed master, unless a graceful takeover
  put it back to work as a replica, is downtimed (``lost-in-recovery``) for ``lost_downtime``;
* ``completed`` of any recovery → every replica it lost is downtimed likewise.

Applying an event twice gives the same rows (a redelivered event changes nothing), except a
redelivered ``detected``, which is recorded once per delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from orchestrator_api.store import Store
from orchestrator_api.store.aliases import LOST_IN_RECOVERY, Succession
from orchestrator_api.store.lineage import RecoveryStep
from orchestrator_api.store.models import FailureDetection, RecoveryRecord
from orchestrator_shared.clock_skew import aware
from orchestrator_shared.events import (
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
    describe_recovery,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Downtime

MASTER_ANALYSES = frozenset({"DeadMaster", "DeadMasterAndSomeReplicas"})
# recovered on the master itself, with no successor (docs/recovery.md, semi-sync recoveries)
SEMI_SYNC_ANALYSES = frozenset({"LockedSemiSyncMaster", "MasterWithTooManySemiSyncReplicas"})
ENDED = frozenset({RecoveryPhase.COMPLETED, RecoveryPhase.FAILED, RecoveryPhase.BLOCKED})
# operations after which the old master replicates from the new one (it is not lost)
GRACEFUL_TAKEOVERS = frozenset({"graceful-master-takeover", "graceful-master-takeover-auto"})


async def apply_recovery_events(
    store: Store, events: Sequence[RecoveryEvent], *, lost_downtime: timedelta
) -> None:
    for event in events:
        await _apply(store, event, lost_downtime=lost_downtime)


async def _apply(store: Store, event: RecoveryEvent, *, lost_downtime: timedelta) -> None:
    data = event.data
    phase = event.phase
    at = aware(event.time)
    failed = InstanceKey.parse(data.failed)
    if phase is RecoveryPhase.DETECTED:
        await store.record_failure_detection(
            FailureDetection(
                key=failed,
                cluster=data.cluster,
                analysis_code=data.analysis,
                detected_at=at,
                cluster_alias=data.cluster_alias,
                processing_node=data.worker,
                processing_token=str(data.fencing_token),
            )
        )
    successor = InstanceKey.parse(data.successor) if data.successor else None
    lost = tuple(InstanceKey.parse(key) for key in sorted(data.lost))
    repointed = tuple(InstanceKey.parse(key) for key in data.repointed)
    errors = [data.reason] if data.reason else []
    errors += [f"{key}: {why}" for key, why in sorted(data.lost.items())]
    await store.record_recovery(
        RecoveryRecord(
            uid=data.recovery_id,
            key=failed,
            cluster=data.cluster,
            analysis_code=data.analysis,
            started_at=aware(data.started_at) if data.started_at is not None else at,
            cluster_alias=data.cluster_alias,
            type="MasterRecovery"
            if data.analysis in MASTER_ANALYSES | SEMI_SYNC_ANALYSES
            else "IntermediateMasterRecovery",
            recovery_type=phase.value,
            ended_at=aware(data.ended_at) if data.ended_at is not None else None,
            is_active=phase not in ENDED,
            # a master recovery succeeds with a successor; a relocation (a dead intermediate
            # master's, a failed Galera node's) when it completed
            is_successful=phase is RecoveryPhase.COMPLETED
            and (successor is not None or data.analysis not in MASTER_ANALYSES or data.galera),
            successor_key=successor,
            lost_replicas=lost,
            participating_instances=(failed, *((successor,) if successor else ()), *repointed),
            all_errors=tuple(errors),
            processing_node=data.worker,
            processing_token=str(data.fencing_token),
            fencing_token=data.fencing_token,
        )
    )
    await store.record_recovery_step(
        RecoveryStep(recovery_uid=data.recovery_id, at=at, message=describe_recovery(phase, data))
    )
    if phase is not RecoveryPhase.COMPLETED:
        return
    downtimed = list(lost)  # a relocation (no successor) loses replicas too
    if successor is not None and data.analysis in MASTER_ANALYSES:  # the cluster's name changed
        await store.record_succession(
            Succession(
                cluster=data.cluster,
                successor=successor,
                at=aware(data.ended_at) if data.ended_at is not None else at,
                alias=await _alias_before(store, data),
                recovery_uid=data.recovery_id,
                command=data.command,
            )
        )
        await _move_cluster_settings(store, data.cluster, str(successor))
        await store.end_downtime(successor)  # as orchestrator: the new master is not downtimed
        if data.command not in GRACEFUL_TAKEOVERS:
            downtimed.insert(0, failed)
    for key in downtimed if lost_downtime > timedelta(0) else ():
        await store.begin_downtime(
            Downtime(
                key=key,
                owner=data.worker or "orchestrator",
                reason=LOST_IN_RECOVERY,
                begins_at=at,
                ends_at=at + lost_downtime,
            )
        )


async def _alias_before(store: Store, data: RecoveryData) -> str:
    """The alias the cluster had before its master changed: what this store shows, unless it
    already shows the name (the successor's cluster holds the alias by now), then what the
    worker saw; "" when it had none."""
    summary = (await store.view()).summaries.get(data.cluster)
    for alias in (summary.alias if summary is not None else "", data.cluster_alias):
        if alias and alias != data.cluster:
            return alias
    return ""


async def _move_cluster_settings(store: Store, old: str, new: str) -> None:
    if old == new:
        return
    setting = (await store.view()).settings.get(old)
    if setting is None:
        return
    if setting.alias_override:
        # the alias follows the master: the old one (now a cluster of its own) gives it up
        await store.set_cluster_alias(old, "")
        await store.set_cluster_alias(new, setting.alias_override)
    if setting.domain:
        await store.set_cluster_domain(new, setting.domain)
