"""Acknowledging recoveries (issue 5): by cluster, alias, instance, id, uid, or all.

Acknowledgements do two things: the store's recovery rows are marked acknowledged (by, at,
comment) first, then the active recovery worker is asked to lift the anti-flapping block
(``ack-cluster-recoveries`` for each cluster left with no unacknowledged recovery, or
``ack-all-recoveries``). When no worker answers, the rows stay acknowledged but the answer is
the worker's error status (503, or 409 if it refused) with a message saying the block was *not*
lifted: an operator must not believe the next failure will be recovered when it will not.
Retrying is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess
from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.recovery_rows import BLOCKED, HISTORY_LIMIT, history
from orchestrator_api.http.registration import mutation
from orchestrator_api.store import RecoveryFilter
from orchestrator_api.store.view import FleetView
from orchestrator_shared.bus import CommandReply, CommandRequest

router = APIRouter(prefix="/api")

NO_COMMENT = "No acknowledge comment given"
MAX_ID = 2**63 - 1  # ids are 64-bit in both stores


def _comment(comment: str) -> str:
    text = comment.strip()
    if not text:
        raise ApiError(400, NO_COMMENT)
    return text


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
        clusters.update(r.cluster for r in await history(context, where))
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
        if await history(context, RecoveryFilter(cluster=hint)):
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


@mutation(router, "/ack-recovery/cluster/{hint}")
async def ack_cluster_recoveries(
    hint: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    return await _ack_cluster(context, hint, who.user, comment)


@mutation(router, "/ack-recovery/cluster/alias/{alias}")
async def ack_cluster_recoveries_by_alias(
    alias: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    text = _comment(comment)
    view = await context.view()
    name = view.cluster_by_alias(alias)
    if name is None:
        if not await history(context, RecoveryFilter(cluster_alias=alias)):
            raise NotFound(f"Unable to determine cluster name. clusterAlias={alias}")
        count, _ = await _acknowledge(
            context, [RecoveryFilter(cluster_alias=alias)], who=who.user, comment=text
        )
        await context.audit("ack-recovery", f"acknowledged {count}: {text}", user=who.user)
        return wire.ok_envelope("Acknowledged cluster recoveries", alias)
    return await _ack_cluster(context, name, who.user, text)


@mutation(router, "/ack-recovery/instance/{host}/{port}")
async def ack_instance_recoveries(
    host: str, port: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    key = context.key(host, port)
    text = _comment(comment)
    where = RecoveryFilter(key=key)
    view = await context.view()
    if view.instance(key) is None and not await history(context, where):
        raise NotFound(f"Cannot read instance: {key}")
    count, _ = await _acknowledge(context, [where], who=who.user, comment=text)
    await context.audit("ack-recovery", f"acknowledged {count}: {text}", key=key, user=who.user)
    return wire.ok_envelope("Acknowledged instance recoveries", wire.instance_key_json(key))


async def _ack_one(context: ApiContext, where: RecoveryFilter, who: str, comment: str) -> None:
    text = _comment(comment)
    found = await history(context, where)
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


@mutation(router, "/ack-recovery/uid/{uid}")
async def ack_recovery_by_uid(
    uid: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    await _ack_one(context, RecoveryFilter(uid=uid), who.user, comment)
    return wire.ok_envelope("Acknowledged recovery", uid)


@mutation(router, "/ack-recovery/{recovery_id}")
async def ack_recovery(
    recovery_id: str, context: Context, who: AdminAccess, comment: str = ""
) -> dict[str, Any]:
    if not (recovery_id.isascii() and recovery_id.isdigit()) or int(recovery_id) > MAX_ID:
        raise ApiError(400, f"invalid recovery id {recovery_id!r}: expected a number")
    await _ack_one(context, RecoveryFilter(id=int(recovery_id)), who.user, comment)
    return wire.ok_envelope("Acknowledged recovery", recovery_id)


@mutation(router, "/ack-all-recoveries")
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
