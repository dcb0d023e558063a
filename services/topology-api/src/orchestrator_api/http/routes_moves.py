"""GTID-aware moves (issue 6): ``move-below-gtid`` (and the ``move-gtid`` name
orchestrator-client uses), ``move-up``, ``repoint``, ``can-replicate-from``; ``relocate`` is
registered in :mod:`orchestrator_api.http.routes` and answers through :func:`moved` too.

Each is forwarded to the active recovery worker on ``orchestrator.v1.command.<operation>``
(``orchestrator_recovery.moves``), which validates (the target has every transaction the
replica has, is not its own replica, not delayed or lagging, ...), moves the replica behind its
lease with GTID, verifies it replicates, restores its previous master on failure, and audits.

The answer is orchestrator's envelope: ``{"Code": "OK", "Message": "Instance h:p relocated below
h:p", "Details": <the moved instance JSON>}``; the instance JSON is the stored instance (after
asking discovery to refresh it, best-effort) with ``MasterKey`` and the replication fields taken
from what the worker read back. ``can-replicate-from`` answers ``Message`` ``"true"`` or
``"false"`` with ``Details`` = the destination's key, as orchestrator.

Statuses: 400 bad key, 404 instance not known, 409 refused by the worker (with its reason),
503 no active recovery worker (or it lost its lease mid-way: the message says what was done).
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from fastapi import APIRouter

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.routes_operations import STATE_FIELDS
from orchestrator_shared.bus import CommandRequest

router = APIRouter(prefix="/api")

MOVE_FIELDS = (*STATE_FIELDS, "MasterKey", "UsingMariaDBGTID")


async def moved(
    context: ApiContext,
    operation: str,
    host: str,
    port: str,
    user: str,
    *,
    below: tuple[str, str] | None = None,
) -> Any:
    """Forward the move of ``host:port`` (below ``below`` when given); orchestrator's envelope
    with the moved instance JSON."""
    _, node = await context.instance(host, port)
    destination = ""
    if below is not None:
        _, target = await context.instance(*below)
        destination = str(target.key)
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(node.key),
            destination=destination,
            cluster=node.cluster_name,
            requested_by=user,
        )
    )
    if context.discovery is not None:
        with suppress(ApiError):  # the answer stands without it: the worker read the server
            await context.ask_discovery("refresh", node.key)
    view, fresh = await context.instance(host, port)
    now, poll = context.clock(), context.settings.InstancePollSeconds
    details: dict[str, Any] = json.loads(context.answers.instance(view, fresh, now=now, poll=poll))
    state = reply.details if isinstance(reply.details, dict) else {}
    details.update({name: state[name] for name in MOVE_FIELDS if name in state})
    return wire.ok_envelope(reply.message or f"{operation}: done on {node.key}", details)


def _register(path: str, name: str, handler: Any) -> None:
    handler.__name__ = name
    router.add_api_route(path, handler, methods=["GET"], operation_id=f"{name}_get")
    router.add_api_route(path, handler, methods=["POST"], operation_id=name)


def _below(route: str, operation: str) -> None:
    async def handler(  # noqa: PLR0917 - FastAPI passes path parameters by name
        host: str, port: str, below_host: str, below_port: str, context: Context, who: AdminAccess
    ) -> Any:
        return await moved(context, operation, host, port, who.user, below=(below_host, below_port))

    name = route.replace("-", "_")
    _register(f"/{route}/{{host}}/{{port}}/{{below_host}}/{{below_port}}", name, handler)


def _alone(route: str, operation: str) -> None:
    async def handler(host: str, port: str, context: Context, who: AdminAccess) -> Any:
        return await moved(context, operation, host, port, who.user)

    name = route.replace("-", "_") + "_alone"
    _register(f"/{route}/{{host}}/{{port}}", name, handler)


_below("move-below-gtid", "move-below-gtid")
_below("move-gtid", "move-below-gtid")
_below("repoint", "repoint")
_alone("repoint", "repoint")  # to its current master
_alone("move-up", "move-up")


@router.get(
    "/can-replicate-from/{host}/{port}/{below_host}/{below_port}",
    operation_id="can_replicate_from_get",
)
@router.post(
    "/can-replicate-from/{host}/{port}/{below_host}/{below_port}",
    operation_id="can_replicate_from",
)
async def can_replicate_from(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str, port: str, below_host: str, below_port: str, context: Context, who: AdminAccess
) -> Any:
    _, node = await context.instance(host, port)
    _, below = await context.instance(below_host, below_port)
    reply = await context.forward(
        CommandRequest(
            operation="can-replicate-from",
            instance=str(node.key),
            destination=str(below.key),
            cluster=node.cluster_name,
            requested_by=who.user,
        )
    )
    key = {"Hostname": below.key.host, "Port": below.key.port}
    return wire.ok_envelope(reply.message or "false", key)
