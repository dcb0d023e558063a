"""Recovery operations (issue 5): manual recoveries, the global switch, acknowledgements, and
the recovery state reads (``active-cluster-recovery``, ``blocked-recoveries``...).

What changes a topology or the recovery state kept in etcd is forwarded to the active recovery
worker on ``orchestrator.v1.command.<operation>`` (docs/bus.md); reads come from the store,
which the recovery events fill (:mod:`orchestrator_api.store.recoveries`).

Acknowledgements do both: the store's recovery rows are marked acknowledged (by, at, comment)
first, then the worker is asked to lift the anti-flapping block (``ack-cluster-recoveries`` for
each cluster left with no unacknowledged recovery, or ``ack-all-recoveries``). When no worker
answers, the rows stay acknowledged but the answer is the worker's error status (503, or 409 if
it refused) with a message saying the block was *not* lifted: an operator must not believe the
next failure will be recovered when it will not. Retrying is safe.

Differences from orchestrator, on purpose: ``recover-lite`` (and ``?skipProcesses=true``) runs
the hooks like ``recover`` (the worker has no hook-less mode; the request carries the flag);
errors use the statuses of :mod:`.errors` rather than a blanket 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.registration import mutation
from orchestrator_api.http.routes_history import recovery_json
from orchestrator_api.store import RecoveryFilter, RecoveryRecord
from orchestrator_api.store.view import FleetView
from orchestrator_api.wire.timefmt import go_datetime
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.instance_key import InstanceKey

router = APIRouter(prefix="/api")

BLOCKED = "blocked"  # RecoveryRecord.recovery_type of a recovery refused by anti-flapping
HISTORY_LIMIT = 1000  # rows read to answer a recovery-state question
NO_COMMENT = "No acknowledge comment given"
MAX_ID = 2**63 - 1  # ids are 64-bit in both stores

SkipProcesses = Annotated[bool, Query(alias="skipProcesses")]

Handler = Callable[..., Awaitable[Any]]


def _mutation(path: str) -> Callable[[Handler], Handler]:
    return mutation(router, path)


# --- manual recoveries ----------------------------------------------------------------------


async def _recover(
    context: ApiContext,
    who: str,
    host: str,
    port: str,
    candidate: tuple[str, str] | None,
    *,
    skip_processes: bool,
) -> dict[str, Any]:
    _, node = await context.instance(host, port)
    destination = ""
    if candidate is not None:
        _, promoted = await context.instance(*candidate)
        if promoted.key == node.key:
            raise ApiError(400, f"cannot promote {node.key} in its own recovery")
        destination = str(promoted.key)
    reply = await context.forward(
        CommandRequest(
            operation="recover",
            instance=str(node.key),
            destination=destination,
            cluster=node.cluster_name,
            arguments={"skipProcesses": "true"} if skip_processes else {},
            requested_by=who,
        )
    )
    successor = _successor(reply)
    if successor is None:  # a dead intermediate master: its replicas moved, nobody promoted
        return wire.ok_envelope(
            f"Recovery executed on {node.key}; no instance promoted: {reply.message}", None
        )
    return wire.ok_envelope(f"Recovery executed on {node.key}", successor)


def _successor(reply: CommandReply) -> dict[str, Any] | None:
    details = reply.details if isinstance(reply.details, dict) else {}
    key = details.get("SuccessorKey")
    if isinstance(key, dict) and key.get("Hostname"):
        return {"Hostname": str(key["Hostname"]), "Port": int(key["Port"])}
    return None


@_mutation("/recover/{host}/{port}")
async def recover(
    host: str, port: str, context: Context, who: AdminAccess, skip_processes: SkipProcesses = False
) -> dict[str, Any]:
    return await _recover(context, who.user, host, port, None, skip_processes=skip_processes)


@_mutation("/recover/{host}/{port}/{candidate_host}/{candidate_port}")
async def recover_to_candidate(  # noqa: PLR0917 - FastAPI passes them by name
    host: str,
    port: str,
    candidate_host: str,
    candidate_port: str,
    context: Context,
    who: AdminAccess,
    skip_processes: SkipProcesses = False,
) -> dict[str, Any]:
    candidate = (candidate_host, candidate_port)
    return await _recover(context, who.user, host, port, candidate, skip_processes=skip_processes)


@_mutation("/recover-lite/{host}/{port}")
async def recover_lite(host: str, port: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    return await _recover(context, who.user, host, port, None, skip_processes=True)


@_mutation("/recover-lite/{host}/{port}/{candidate_host}/{candidate_port}")
async def recover_lite_to_candidate(  # noqa: PLR0917 - FastAPI passes them by name
    host: str,
    port: str,
    candidate_host: str,
    candidate_port: str,
    context: Context,
    who: AdminAccess,
) -> dict[str, Any]:
    candidate = (candidate_host, candidate_port)
    return await _recover(context, who.user, host, port, candidate, skip_processes=True)


async def _force_master_failover(context: ApiContext, hint: str, who: str) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    master = view.topology.clusters[name].master
    reply = await context.forward(
        CommandRequest(
            operation="force-master-failover",
            instance=str(master),
            cluster=name,
            requested_by=who,
        )
    )
    recovery = await topology_recovery(context, reply, master, name)
    if recovery["SuccessorKey"] is None:
        raise ApiError(409, f"Master not failed over: {reply.message or 'no successor promoted'}")
    return wire.ok_envelope("Master failed over", recovery)


async def topology_recovery(
    context: ApiContext, reply: CommandReply, master: InstanceKey, cluster: str
) -> dict[str, Any]:
    """orchestrator's ``TopologyRecovery`` for a forced failover: the stored row when the
    recovery events already reached the store, else what the worker's reply says."""
    details = reply.details if isinstance(reply.details, dict) else {}
    uid = str(details.get("Id", ""))
    stored = await context.store.recoveries(RecoveryFilter(uid=uid, limit=1)) if uid else []
    if stored:
        answer = recovery_json(stored[0])
    else:
        answer = recovery_json(
            RecoveryRecord(
                uid=uid,
                key=master,
                cluster=cluster,
                analysis_code="DeadMaster",
                started_at=context.clock(),
                type="MasterRecovery",
                is_active=False,
                is_successful=True,
                processing_token=str(details.get("FencingToken", "")),
            )
        )
    answer["SuccessorKey"] = _successor(reply)
    lost = details.get("LostReplicas")
    if isinstance(lost, list):
        answer["LostReplicas"] = [k for k in lost if isinstance(k, dict)]
    answer["FencingToken"] = details.get("FencingToken", 0)
    return answer


@_mutation("/force-master-failover/{host}/{port}")
async def force_master_failover_of_instance(
    host: str, port: str, context: Context, who: AdminAccess
) -> dict[str, Any]:
    return await _force_master_failover(context, str(context.key(host, port)), who.user)


@_mutation("/force-master-failover/{hint}")
async def force_master_failover(hint: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    return await _force_master_failover(context, hint, who.user)


# --- the global switch (kept in etcd by the worker) ------------------------------------------


async def _switch(context: ApiContext, operation: str, who: str) -> dict[str, Any]:
    reply = await context.forward(CommandRequest(operation=operation, requested_by=who))
    state = str(reply.details)
    if state in {"enabled", "disabled"} and operation != "check-global-recoveries":
        # the store's copy is for display only; the worker reads etcd
        await context.store.set_global_recoveries(state == "enabled", by=who, at=context.clock())
        await context.audit(operation, state, user=who)
    return wire.ok_envelope(reply.message or f"Global recoveries {state}", state)


@_mutation("/disable-global-recoveries")
async def disable_global_recoveries(context: Context, who: AdminAccess) -> dict[str, Any]:
    return await _switch(context, "disable-global-recoveries", who.user)


@_mutation("/enable-global-recoveries")
async def enable_global_recoveries(context: Context, who: AdminAccess) -> dict[str, Any]:
    return await _switch(context, "enable-global-recoveries", who.user)


@router.get("/check-global-recoveries")
async def check_global_recoveries(context: Context, who: ReadAccess) -> dict[str, Any]:
    return await _switch(context, "check-global-recoveries", who.user)


# --- acknowledgements -----------------------------------------------------------------------


def _comment(comment: str) -> str:
    text = comment.strip()
    if not text:
        raise ApiError(400, NO_COMMENT)
    return text


async def _history(context: ApiContext, where: RecoveryFilter) -> list[RecoveryRecord]:
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


async def _acknowledge(
    context: ApiContext,
    filters: Iterable[RecoveryFilter],
    *,
    who: str,
    comment: str,
    lift: Iterable[str] = (),
) -> tuple[int, list[str]]:
    """Acknowledge the stored recoveries matching any of ``filters``, then ask the worker to
    lift the block of every cluster (those of the matched recoveries, plus ``lift``) left with
    no unacknowledged recovery. How many rows were acknowledged, and the clusters lifted."""
    filters = list(filters)
    clusters = set(lift)
    for where in filters:
        clusters.update(r.cluster for r in await _history(context, where))
    count = 0
    for where in filters:
        count += await context.store.acknowledge_recoveries(
            where, by=who, comment=comment, at=context.clock()
        )
    lifted = []
    for cluster in sorted(clusters):
        pending = await context.store.recoveries(
            RecoveryFilter(cluster=cluster, unacknowledged_only=True, limit=HISTORY_LIMIT)
        )
        if any(r.recovery_type != BLOCKED for r in pending):
            continue  # another recovery of the cluster still holds the block
        await _lift(
            context,
            CommandRequest(operation="ack-cluster-recoveries", cluster=cluster, requested_by=who),
            count,
        )
        lifted.append(cluster)
    return count, lifted


async def _lift(context: ApiContext, request: CommandRequest, count: int) -> CommandReply:
    try:
        return await context.forward(request)
    except ApiError as exc:
        what = f" of {request.cluster}" if request.cluster else ""
        raise ApiError(
            exc.status,
            f"acknowledged {count} recoveries in the store, but the anti-flapping block{what} "
            f"was NOT lifted ({exc.message}); the next failure will not be recovered "
            "automatically until it is: retry once a recovery worker runs",
        ) from None


async def _cluster_filters(
    context: ApiContext, view: FleetView, hint: str
) -> tuple[str, list[RecoveryFilter]]:
    """The recoveries of the cluster ``hint`` names: recorded under its current name, under
    its alias (a recovery that promoted a new master was recorded under the old master's
    name; the alias moved with it), or under ``hint`` itself (an old cluster name that only
    history knows)."""
    name = view.resolve_cluster(hint)
    if name is None:
        if await _history(context, RecoveryFilter(cluster=hint)):
            return hint, [RecoveryFilter(cluster=hint)]
        raise NotFound(f"Unable to determine cluster name. hint={hint}")
    filters = [RecoveryFilter(cluster=name)]
    summary = view.summaries.get(name)
    if summary is not None and summary.alias and summary.alias != name:
        filters.append(RecoveryFilter(cluster_alias=summary.alias))
    return name, filters


async def _ack_cluster(context: ApiContext, hint: str, who: str, comment: str) -> dict[str, Any]:
    text = _comment(comment)
    view = await context.view()
    name, filters = await _cluster_filters(context, view, hint)
    count, lifted = await _acknowledge(context, filters, who=who, comment=text, lift=[name])
    await context.audit(
        "ack-recovery",
        f"acknowledged {count} recoveries, lifted {', '.join(lifted) or 'nothing'}: {text}",
        cluster=name,
        user=who,
    )
    return wire.ok_envelope("Acknowledged cluster recoveries", name)


@_mutation("/ack-recovery/cluster/{hint}")
async def ack_cluster_recoveries(
    hint: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    return await _ack_cluster(context, hint, who.user, comment)


@_mutation("/ack-recovery/cluster/alias/{alias}")
async def ack_cluster_recoveries_by_alias(
    alias: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    text = _comment(comment)
    view = await context.view()
    name = view.cluster_by_alias(alias)
    if name is None:
        if not await _history(context, RecoveryFilter(cluster_alias=alias)):
            raise NotFound(f"Unable to determine cluster name. clusterAlias={alias}")
        count, _ = await _acknowledge(
            context, [RecoveryFilter(cluster_alias=alias)], who=who.user, comment=text
        )
        await context.audit("ack-recovery", f"acknowledged {count}: {text}", user=who.user)
        return wire.ok_envelope("Acknowledged cluster recoveries", alias)
    return await _ack_cluster(context, name, who.user, text)


@_mutation("/ack-recovery/instance/{host}/{port}")
async def ack_instance_recoveries(
    host: str, port: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    key = context.key(host, port)
    text = _comment(comment)
    where = RecoveryFilter(key=key)
    view = await context.view()
    if view.instance(key) is None and not await _history(context, where):
        raise NotFound(f"Cannot read instance: {key}")
    count, _ = await _acknowledge(context, [where], who=who.user, comment=text)
    await context.audit("ack-recovery", f"acknowledged {count}: {text}", key=key, user=who.user)
    return wire.ok_envelope("Acknowledged instance recoveries", wire.instance_key_json(key))


async def _ack_one(context: ApiContext, where: RecoveryFilter, who: str, comment: str) -> None:
    text = _comment(comment)
    found = await _history(context, where)
    if not found:
        what = f"id {where.id}" if where.id is not None else f"uid {where.uid}"
        raise NotFound(f"no recovery with {what}")
    await _acknowledge(context, [where], who=who, comment=text)
    await context.audit(
        "ack-recovery",
        f"acknowledged recovery {found[0].id} ({found[0].uid}): {text}",
        key=found[0].key,
        cluster=found[0].cluster,
        user=who,
    )


@_mutation("/ack-recovery/uid/{uid}")
async def ack_recovery_by_uid(
    uid: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    await _ack_one(context, RecoveryFilter(uid=uid), who.user, comment)
    return wire.ok_envelope("Acknowledged recovery", uid)


@_mutation("/ack-recovery/{recovery_id}")
async def ack_recovery(
    recovery_id: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    if not (recovery_id.isascii() and recovery_id.isdigit()) or int(recovery_id) > MAX_ID:
        raise ApiError(400, f"invalid recovery id {recovery_id!r}: expected a number")
    await _ack_one(context, RecoveryFilter(id=int(recovery_id)), who.user, comment)
    return wire.ok_envelope("Acknowledged recovery", recovery_id)


@_mutation("/ack-all-recoveries")
async def ack_all_recoveries(
    context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    text = _comment(comment)
    count = await context.store.acknowledge_recoveries(
        RecoveryFilter(), by=who.user, comment=text, at=context.clock()
    )
    await context.audit("ack-recovery", f"acknowledged all ({count}): {text}", user=who.user)
    await _lift(
        context, CommandRequest(operation="ack-all-recoveries", requested_by=who.user), count
    )
    return wire.ok_envelope("Acknowledged all recoveries", text)


# --- recovery state (from the store) --------------------------------------------------------


async def _cluster_history(context: ApiContext, cluster: str) -> list[RecoveryRecord]:
    """Recoveries recorded under ``cluster`` (history outlives a cluster's name, so an unknown
    name is not an error: orchestrator answers an empty list)."""
    names = {cluster}
    resolved = (await context.view()).resolve_cluster(cluster)
    if resolved is not None:
        names.add(resolved)
    found: list[RecoveryRecord] = []
    for name in sorted(names):
        found += await _history(context, RecoveryFilter(cluster=name))
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
    records = await _cluster_history(context, cluster_name)
    return [recovery_json(r) for r in records if r.is_active and r.recovery_type != BLOCKED]


@router.get("/recently-active-cluster-recovery/{cluster_name}")
async def recently_active_cluster_recovery(
    cluster_name: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    return _recent(context, await _cluster_history(context, cluster_name))


@router.get("/recently-active-instance-recovery/{host}/{port}")
async def recently_active_instance_recovery(
    host: str, port: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    key = context.key(host, port)
    return _recent(context, await _history(context, RecoveryFilter(key=key)))


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
