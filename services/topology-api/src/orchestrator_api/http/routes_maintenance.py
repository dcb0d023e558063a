"""Maintenance locks (issue 6): ``begin-maintenance``, ``end-maintenance`` (by instance or by
maintenance id), ``in-maintenance`` and the ``maintenance`` list.

The locks live in etcd, where every recovery worker sees them; the active worker takes, ends
and reads them (``orchestrator_recovery.operations.maintenance``) and audits the changes, so each
route is forwarded on ``orchestrator.v1.command.<operation>`` like the topology operations. While an
instance is locked, operations requested by anyone but the lock's owner are refused.

Statuses: 400 bad key, id or duration, 404 unknown instance (begin only: a lock can be ended
or checked on any key), 409 refused (already locked: the message says by whom, why, until
when; no such id), 503 no active recovery worker.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.registration import add_mutation
from orchestrator_api.http.routes import parse_duration
from orchestrator_api.http.routes_recovery_acks import MAX_ID
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.instance_key import InstanceKey

router = APIRouter(prefix="/api")


def _mutation(path: str, handler: Any) -> None:
    add_mutation(router, path, handler)


async def _ask(
    context: ApiContext,
    operation: str,
    user: str,
    key: InstanceKey | None = None,
    *,
    cluster: str = "",
    arguments: dict[str, str] | None = None,
) -> CommandReply:
    return await context.forward(
        CommandRequest(
            operation=operation,
            instance="" if key is None else str(key),
            cluster=cluster,
            arguments=arguments or {},
            requested_by=user,
        )
    )


async def begin_maintenance(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str,
    port: str,
    owner: str,
    reason: str,
    context: Context,
    who: AdminAccess,
    duration: str = Query(default=""),
) -> dict[str, Any]:
    _, node = await context.instance(host, port)
    if not owner.strip() or not reason.strip():
        raise ApiError(400, "begin-maintenance needs an owner and a reason")
    arguments = {"owner": owner, "reason": reason}
    if duration:
        arguments["duration"] = str(int(parse_duration(duration).total_seconds()))
    reply = await _ask(
        context,
        "begin-maintenance",
        who.user,
        node.key,
        cluster=node.cluster_name,
        arguments=arguments,
    )
    return wire.ok_envelope(
        reply.message or f"Maintenance begun: {node.key}", wire.instance_key_json(node.key)
    )


async def end_maintenance(
    host: str, port: str, context: Context, who: AdminAccess
) -> dict[str, Any]:
    key = context.key(host, port)
    view = await context.view()
    node = view.instance(key)
    cluster = node.cluster_name if node is not None else ""
    reply = await _ask(context, "end-maintenance", who.user, key, cluster=cluster)
    return wire.ok_envelope(
        reply.message or f"Maintenance ended: {key}", wire.instance_key_json(key)
    )


async def end_maintenance_by_id(
    maintenance_key: str, context: Context, who: AdminAccess
) -> dict[str, Any]:
    if not (maintenance_key.isascii() and maintenance_key.isdigit()) or (
        int(maintenance_key) > MAX_ID
    ):
        raise ApiError(400, f"invalid maintenance id {maintenance_key!r}: expected a number")
    reply = await _ask(context, "end-maintenance", who.user, arguments={"id": maintenance_key})
    return wire.ok_envelope(reply.message or "Maintenance ended", int(maintenance_key))


_mutation("/begin-maintenance/{host}/{port}/{owner}/{reason}", begin_maintenance)
_mutation("/end-maintenance/{host}/{port}", end_maintenance)
_mutation("/end-maintenance/{maintenance_key}", end_maintenance_by_id)


@router.get("/in-maintenance/{host}/{port}")
async def in_maintenance(host: str, port: str, context: Context, who: ReadAccess) -> Any:
    """orchestrator's answer: ``Message`` ``"true"``/``"false"``, ``Details`` the key's
    ``host:port`` while in maintenance, else ``""``."""
    key = context.key(host, port)
    reply = await _ask(context, "in-maintenance", who.user, key)
    locked = reply.message == "true"
    return wire.ok_envelope("true" if locked else "false", str(key) if locked else "")


@router.get("/maintenance")
async def maintenance(context: Context, who: ReadAccess) -> list[Any]:
    """The active locks, oldest first, as orchestrator's ``Maintenance`` rows (bare JSON);
    operations running now are listed too (owner: who asked, reason: the operation)."""
    reply = await _ask(context, "maintenance", who.user)
    return reply.details if isinstance(reply.details, list) else []
