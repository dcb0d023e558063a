"""The web UI's drop checks (issue 11): while an instance R is dragged, which instances of its
cluster may it (or its replicas) be dropped on?

* ``GET /api/can-relocate/{host}/{port}``: for each other instance T of R's cluster, may
  ``relocate`` move R below T;
* ``GET /api/can-relocate-replicas/{host}/{port}``: may ``relocate-replicas`` move all of R's
  replicas below T.

Both answer ``[{"Key": {"Hostname", "Port"}, "Allowed": bool, "Reason": str}]``, computed by
the active recovery worker (``orchestrator.v1.command.can-relocate[-replicas]``,
:mod:`orchestrator_recovery.operations.drop_checks`) with the checks the moves themselves apply, on
the servers as they are now. Read-only (nothing changes, nothing is locked): the read role.
400 bad key, 404 unknown instance, 503 no active recovery worker (or no answer in time).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import ReadAccess
from orchestrator_shared.bus import CommandRequest

router = APIRouter(prefix="/api")

CHECK_WAIT_SECONDS = 5.0  # the worker reads every server with a 1 s deadline


async def _checked(
    context: ApiContext, operation: str, host: str, port: str, user: str
) -> list[Any]:
    view, node = await context.instance(host, port)
    targets = [other.key for other in view.cluster_instances(node.cluster_name)]
    arguments = {"targets": ",".join(str(key) for key in targets if key != node.key)}
    if operation == "can-relocate-replicas":
        arguments["replicas"] = ",".join(str(key) for key in node.replicas)
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(node.key),
            cluster=node.cluster_name,
            arguments=arguments,
            requested_by=user,
        ),
        wait=CHECK_WAIT_SECONDS,
    )
    return list(reply.details) if isinstance(reply.details, list) else []


@router.get("/can-relocate/{host}/{port}")
async def can_relocate(host: str, port: str, context: Context, who: ReadAccess) -> list[Any]:
    return await _checked(context, "can-relocate", host, port, who.user)


@router.get("/can-relocate-replicas/{host}/{port}")
async def can_relocate_replicas(
    host: str, port: str, context: Context, who: ReadAccess
) -> list[Any]:
    return await _checked(context, "can-relocate-replicas", host, port, who.user)
