"""Recovery operations (issue 5): manual recoveries, forced failovers and the global switch,
forwarded to the active recovery worker on ``orchestrator.v1.command.<operation>``
(docs/bus.md). The acknowledgements are in :mod:`.routes_recovery_acks`, the recovery state
reads (``active-cluster-recovery``, ``blocked-recoveries``...) in :mod:`.routes_recovery_state`.

Differences from orchestrator, on purpose: ``recover-lite`` (and ``?skipProcesses=true``) runs
the hooks like ``recover`` (the worker has no hook-less mode; the request carries the flag);
errors use the statuses of :mod:`.errors` rather than a blanket 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.registration import mutation
from orchestrator_api.http.routes_history import recovery_json
from orchestrator_api.store import RecoveryFilter, RecoveryRecord
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.instance_key import InstanceKey

router = APIRouter(prefix="/api")

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
