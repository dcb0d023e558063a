"""The store's recovery rows as the recovery routes read them: the acknowledgements
(:mod:`.routes_recovery_acks`) and the recovery-state reads (:mod:`.routes_recovery_state`)
look at the same history, with the same bound and the same notion of a blocked recovery."""

from __future__ import annotations

from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import RecoveryFilter, RecoveryRecord

BLOCKED = "blocked"  # RecoveryRecord.recovery_type of a recovery refused by anti-flapping
HISTORY_LIMIT = 1000  # rows read to answer a recovery-state question


async def history(context: ApiContext, where: RecoveryFilter) -> list[RecoveryRecord]:
    """The recoveries matching ``where``, newest first, at most :data:`HISTORY_LIMIT`."""
    return await context.store.recoveries(
        RecoveryFilter(
            id=where.id,
            uid=where.uid,
            cluster=where.cluster,
            cluster_alias=where.cluster_alias,
            key=where.key,
            limit=HISTORY_LIMIT,
        )
    )
