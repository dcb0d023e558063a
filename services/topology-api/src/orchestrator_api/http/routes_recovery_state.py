"""The recovery state, read from the store (issue 5): active and recently active recoveries of
a cluster or instance, and the recoveries anti-flapping blocked. The recovery events fill the
store (:mod:`orchestrator_api.store.recoveries`); nothing here asks the recovery workers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import ReadAccess
from orchestrator_api.http.recovery_rows import BLOCKED, HISTORY_LIMIT, history
from orchestrator_api.http.routes_history import recovery_json
from orchestrator_api.store import RecoveryFilter, RecoveryRecord
from orchestrator_api.wire.timefmt import go_datetime
from orchestrator_shared.instance_key import InstanceKey

router = APIRouter(prefix="/api")


async def _clusterhistory(context: ApiContext, cluster: str) -> list[RecoveryRecord]:
    """Recoveries recorded under ``cluster`` (history outlives a cluster's name, so an unknown
    name is not an error: orchestrator answers an empty list)."""
    names = {cluster}
    resolved = (await context.view()).resolve_cluster(cluster)
    if resolved is not None:
        names.add(resolved)
    found: list[RecoveryRecord] = []
    for name in sorted(names):
        found += await history(context, RecoveryFilter(cluster=name))
    return sorted(found, key=lambda r: r.id, reverse=True)


def _recent(context: ApiContext, records: Iterable[RecoveryRecord]) -> list[dict[str, Any]]:
    since = context.clock() - timedelta(seconds=context.settings.RecoveryPeriodBlockSeconds)
    return [
        recovery_json(r) for r in records if r.recovery_type != BLOCKED and r.started_at >= since
    ]


@router.get("/active-cluster-recovery/{cluster_name}")
async def active_cluster_recovery(
    cluster_name: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    records = await _clusterhistory(context, cluster_name)
    return [recovery_json(r) for r in records if r.is_active and r.recovery_type != BLOCKED]


@router.get("/recently-active-cluster-recovery/{cluster_name}")
async def recently_active_cluster_recovery(
    cluster_name: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    return _recent(context, await _clusterhistory(context, cluster_name))


@router.get("/recently-active-instance-recovery/{host}/{port}")
async def recently_active_instance_recovery(
    host: str, port: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    key = context.key(host, port)
    return _recent(context, await history(context, RecoveryFilter(key=key)))


def blocked_json(record: RecoveryRecord, blocking: int) -> dict[str, Any]:
    """orchestrator's ``BlockedTopologyRecovery``."""
    return {
        "FailedInstanceKey": wire.instance_key_json(record.key),
        "ClusterName": record.cluster,
        "Analysis": record.analysis_code,
        "LastBlockedTimestamp": go_datetime(record.ended_at or record.started_at),
        "BlockingRecoveryId": blocking,
    }


async def _blocked(context: ApiContext, cluster: str | None) -> list[dict[str, Any]]:
    """Unacknowledged ``blocked`` recoveries of the block period, newest per failed instance,
    each with the recovery that blocks it (the cluster's latest earlier recovery, 0 if the
    store does not know it)."""
    records = await context.store.recoveries(
        RecoveryFilter(cluster=cluster, unacknowledged_only=True, limit=HISTORY_LIMIT)
    )
    since = context.clock() - timedelta(seconds=context.settings.RecoveryPeriodBlockSeconds)
    answers: list[dict[str, Any]] = []
    seen: set[tuple[InstanceKey, str]] = set()
    for record in records:  # newest first
        if record.recovery_type != BLOCKED or record.started_at < since:
            continue
        if (record.key, record.cluster) in seen:
            continue
        seen.add((record.key, record.cluster))
        blocking = next(
            (
                r.id
                for r in records
                if r.cluster == record.cluster and r.recovery_type != BLOCKED and r.id < record.id
            ),
            record.related_recovery_id,
        )
        answers.append(blocked_json(record, blocking))
    return answers


@router.get("/blocked-recoveries")
async def blocked_recoveries(context: Context, _: ReadAccess) -> list[dict[str, Any]]:
    return await _blocked(context, None)


@router.get("/blocked-recoveries/cluster/{cluster_name}")
async def blocked_recoveries_of_cluster(
    cluster_name: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    return await _blocked(context, cluster_name)
