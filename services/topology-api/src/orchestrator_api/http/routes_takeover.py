"""Planned master changes (issue 6): ``graceful-master-takeover``, ``graceful-master-takeover-auto``
and ``force-master-takeover``.

The cluster is named by a hint (name, alias, or any member's ``host/port``); the designated
replica, when given, by ``designatedHost/designatedPort``. The request goes to the active
recovery worker (``orchestrator_recovery.operations.takeover``; ``force-master-takeover`` is the
forced
failover of ``orchestrator_recovery.operations.commands`` with a chosen successor), which checks,
acts behind its lease, rolls back on failure and answers. The answer is orchestrator's
``TopologyRecovery`` in ``Details`` (``SuccessorKey`` is what orchestrator-client prints), plus
``WriteUnavailableMillis`` (old master read-only → new master writable, as the worker timed
it) and ``Notes`` (what went wrong with the demoted master, if anything).

Statuses: 400 bad key, 404 unknown cluster, 409 refused (with the reason: no target
indicated, not a direct replica, a promotion rule, lag, a failed step rolled back), 503 no
active recovery worker or its lease lost mid-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess
from orchestrator_api.http.registration import add_mutation
from orchestrator_api.http.routes_recovery import topology_recovery
from orchestrator_shared.bus import CommandRequest

router = APIRouter(prefix="/api")

MESSAGES = {
    "graceful-master-takeover": "graceful-master-takeover: successor promoted",
    "graceful-master-takeover-auto": "graceful-master-takeover-auto: successor promoted",
    "force-master-takeover": "Master taken over",
}


async def take_over(
    context: ApiContext,
    operation: str,
    hint: str,
    designated: tuple[str, str] | None,
    who: str,
) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    master = view.topology.clusters[name].master
    # Parsed, not looked up: an unknown designated replica gets the worker's "must be directly
    # replicating from the master", as orchestrator answers.
    destination = str(context.key(*designated)) if designated is not None else ""
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(master),
            destination=destination,
            cluster=name,
            requested_by=who,
        )
    )
    recovery = await topology_recovery(context, reply, master, name)
    details = reply.details if isinstance(reply.details, dict) else {}
    for extra in ("WriteUnavailableMillis", "Notes"):
        if extra in details:
            recovery[extra] = details[extra]
    entry = recovery.get("AnalysisEntry")
    if isinstance(entry, dict):
        entry["CommandHint"] = operation
    return wire.ok_envelope(MESSAGES[operation], recovery)


Handler = Callable[..., Awaitable[Any]]


def _register(path: str, name: str, handler: Handler) -> None:
    handler.__name__ = name
    add_mutation(router, path, handler)


def _routes(operation: str, *, designated_required: bool) -> None:
    name = operation.replace("-", "_")

    async def by_hint(hint: str, context: Context, who: AdminAccess) -> Any:
        return await take_over(context, operation, hint, None, who.user)

    async def by_instance(host: str, port: str, context: Context, who: AdminAccess) -> Any:
        return await take_over(context, operation, str(context.key(host, port)), None, who.user)

    async def by_hint_to(
        hint: str, designated_host: str, designated_port: str, context: Context, who: AdminAccess
    ) -> Any:
        designated = (designated_host, designated_port)
        return await take_over(context, operation, hint, designated, who.user)

    async def by_instance_to(  # noqa: PLR0917 - FastAPI passes path parameters by name
        host: str,
        port: str,
        designated_host: str,
        designated_port: str,
        context: Context,
        who: AdminAccess,
    ) -> Any:
        hint = str(context.key(host, port))
        designated = (designated_host, designated_port)
        return await take_over(context, operation, hint, designated, who.user)

    if not designated_required:
        _register(f"/{operation}/{{hint}}", f"{name}_hint", by_hint)
        _register(f"/{operation}/{{host}}/{{port}}", f"{name}_instance", by_instance)
    _register(
        f"/{operation}/{{hint}}/{{designated_host}}/{{designated_port}}",
        f"{name}_hint_to",
        by_hint_to,
    )
    _register(
        f"/{operation}/{{host}}/{{port}}/{{designated_host}}/{{designated_port}}",
        f"{name}_instance_to",
        by_instance_to,
    )


_routes("graceful-master-takeover", designated_required=False)
_routes("graceful-master-takeover-auto", designated_required=False)
_routes("force-master-takeover", designated_required=True)
