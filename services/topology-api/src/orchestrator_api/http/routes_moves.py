"""GTID-aware moves (issue 6): ``move-below-gtid`` (and the ``move-gtid`` name
orchestrator-client uses), ``move-up``, ``repoint``, ``can-replicate-from``, and ``move-below``
(issue 10: below a sibling, GTID only); ``relocate`` is registered in
:mod:`orchestrator_api.http.routes` and answers through :func:`moved` too.

Each is forwarded to the active recovery worker on ``orchestrator.v1.command.<operation>``
(``orchestrator_recovery.operations.moves``), which validates (the target has every transaction the
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
from orchestrator_api.http.registration import add_mutation
from orchestrator_api.http.routes_operations import STATE_FIELDS
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import compile_pattern

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
    state = reply.details if isinstance(reply.details, dict) else {}
    details = await instance_json(context, node.key, state)
    return wire.ok_envelope(reply.message or f"{operation}: done on {node.key}", details)


async def instance_json(context: ApiContext, key: InstanceKey, state: dict[str, Any]) -> Any:
    """The stored instance JSON of ``key`` (after asking discovery to refresh it,
    best-effort) with the replication fields the worker read back (``state``); ``state``
    alone when the store does not know ``key``."""
    if context.discovery is not None:
        with suppress(ApiError):  # the answer stands without it: the worker read the server
            await context.ask_discovery("refresh", key)
    view = await context.view()
    fresh = view.instance(key)
    if fresh is None:
        return state
    now, poll = context.clock(), context.settings.InstancePollSeconds
    details: dict[str, Any] = json.loads(context.answers.instance(view, fresh, now=now, poll=poll))
    details.update({name: state[name] for name in MOVE_FIELDS if name in state})
    return details


def _register(path: str, name: str, handler: Any) -> None:
    handler.__name__ = name
    add_mutation(router, path, handler)


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
_below("move-below", "move-below")  # the destination is the sibling (orchestrator's siblingHost)


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


# --- moves of many replicas (relocate-replicas, take-master, make-co-master, ...) ------------
# Details: a list of instance JSON (relocate/move-up/repoint-replicas), the destination's key
# (move-replicas-gtid, as orchestrator), or one instance JSON (take-siblings, take-master,
# make-co-master: the instance; regroup: the promoted replica).


async def many(
    context: ApiContext,
    operation: str,
    host: str,
    port: str,
    user: str,
    *,
    below: tuple[str, str] | None = None,
    pattern: str = "",
) -> Any:
    view, node = await context.instance(host, port)
    destination = ""
    if below is not None:
        _, target = await context.instance(*below)
        destination = str(target.key)
    arguments = {"replicas": ",".join(str(key) for key in node.replicas)}
    if pattern:
        compile_pattern(pattern)  # a bad or too long one: 400 here, not a refusal from the worker
        arguments["pattern"] = pattern
    master = view.instance(node.snapshot.master_key) if node.snapshot.master_key else None
    if master is not None:
        arguments["siblings"] = ",".join(str(key) for key in master.replicas)
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(node.key),
            destination=destination,
            cluster=node.cluster_name,
            arguments=arguments,
            requested_by=user,
        )
    )
    message = reply.message or f"{operation}: done on {node.key}"
    if isinstance(reply.details, list):
        listing = []
        for state in reply.details:
            key = InstanceKey(str(state["Key"]["Hostname"]), int(state["Key"]["Port"]))
            listing.append(await instance_json(context, key, state))
        return wire.ok_envelope(message, listing)
    state = reply.details if isinstance(reply.details, dict) else {}
    if "Key" in state and "MasterKey" in state:  # one instance read back
        key = InstanceKey(str(state["Key"]["Hostname"]), int(state["Key"]["Port"]))
        return wire.ok_envelope(message, await instance_json(context, key, state))
    return wire.ok_envelope(message, reply.details)


def _many_below(route: str, operation: str) -> None:
    async def handler(  # noqa: PLR0917 - FastAPI passes path parameters by name
        host: str,
        port: str,
        below_host: str,
        below_port: str,
        context: Context,
        who: AdminAccess,
        pattern: str = "",
    ) -> Any:
        where = (below_host, below_port)
        return await many(context, operation, host, port, who.user, below=where, pattern=pattern)

    name = route.replace("-", "_")
    _register(f"/{route}/{{host}}/{{port}}/{{below_host}}/{{below_port}}", name, handler)


def _many(route: str, operation: str) -> None:
    async def handler(
        host: str, port: str, context: Context, who: AdminAccess, pattern: str = ""
    ) -> Any:
        return await many(context, operation, host, port, who.user, pattern=pattern)

    name = route.replace("-", "_")
    _register(f"/{route}/{{host}}/{{port}}", name, handler)


for _route in ("relocate-replicas", "relocate-slaves"):
    _many_below(_route, "relocate-replicas")
for _route in ("move-replicas-gtid", "move-slaves-gtid"):
    _many_below(_route, "move-replicas-gtid")
for _route, _operation in {
    "move-up-replicas": "move-up-replicas",
    "move-up-slaves": "move-up-replicas",
    "repoint-replicas": "repoint-replicas",
    "repoint-slaves": "repoint-replicas",
    "take-siblings": "take-siblings",
    "enslave-siblings": "take-siblings",
    "regroup-replicas": "regroup-replicas",
    "regroup-slaves": "regroup-replicas",
    "regroup-replicas-gtid": "regroup-replicas-gtid",
    "regroup-slaves-gtid": "regroup-replicas-gtid",
    "take-master": "take-master",
    "enslave-master": "take-master",
    "make-co-master": "make-co-master",
}.items():
    _many(_route, _operation)
# --- end moves of many replicas ---
