"""Instance and replication control (issue 6): ``start-replica``, ``stop-replica``,
``restart-replica`` (and their ``*-slave`` synonyms), ``set-read-only``, ``set-writeable``,
``enable-/disable-semi-sync-master``, ``enable-/disable-semi-sync-replica``,
``flush-binary-logs``.

Each is forwarded to the active recovery worker on ``orchestrator.v1.command.<operation>``
(``orchestrator_recovery.operations``), which validates, changes the server behind its lease and
audits. The answer is orchestrator's: ``{"Code": "OK", "Message": "Replica stopped: h:p", "Details":
<the instance JSON>}``. The instance JSON is the stored instance (after asking discovery to
refresh it, best-effort) with the fields the operation decides (``ReadOnly``, the replication
thread fields, the semi-sync flags, ``SelfBinlogCoordinates``) taken from what the worker read
back from the server, so the answer is right even before the refreshed snapshot reaches the
store.

Statuses: 400 bad key, 404 instance not known, 409 refused by the worker (not a replica,
unreachable, a statement failed), 503 no active recovery worker (or it lost its lease mid-way).
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
from orchestrator_shared.bus import CommandRequest

router = APIRouter(prefix="/api")

# route -> the worker's operation (orchestrator's names and their legacy synonyms)
ROUTES: dict[str, str] = {
    "start-replica": "start-replica",
    "start-slave": "start-replica",
    "stop-replica": "stop-replica",
    "stop-slave": "stop-replica",
    "restart-replica": "restart-replica",
    "restart-slave": "restart-replica",
    "set-read-only": "set-read-only",
    "set-writeable": "set-writeable",
    "enable-semi-sync-master": "enable-semi-sync-master",
    "disable-semi-sync-master": "disable-semi-sync-master",
    "enable-semi-sync-replica": "enable-semi-sync-replica",
    "disable-semi-sync-replica": "disable-semi-sync-replica",
    "flush-binary-logs": "flush-binary-logs",
}

# the fields of the worker's details that override the stored instance
STATE_FIELDS = (
    "ReadOnly",
    "Slave_SQL_Running",
    "ReplicationSQLThreadRuning",
    "Slave_IO_Running",
    "ReplicationIOThreadRuning",
    "ReplicationSQLThreadState",
    "ReplicationIOThreadState",
    "SemiSyncMasterEnabled",
    "SemiSyncReplicaEnabled",
    "SelfBinlogCoordinates",
)


async def control(context: ApiContext, operation: str, host: str, port: str, user: str) -> Any:
    """Forward ``operation`` on ``host:port``; orchestrator's envelope with the instance JSON."""
    _, node = await context.instance(host, port)
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(node.key),
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
    details.update({name: state[name] for name in STATE_FIELDS if name in state})
    return wire.ok_envelope(reply.message or f"{operation}: done on {node.key}", details)


def _register(route: str, operation: str) -> None:
    async def handler(host: str, port: str, context: Context, who: AdminAccess) -> Any:
        return await control(context, operation, host, port, who.user)

    name = route.replace("-", "_")
    handler.__name__ = name
    path = f"/{route}/{{host}}/{{port}}"
    router.add_api_route(path, handler, methods=["GET"], operation_id=f"{name}_get")
    router.add_api_route(path, handler, methods=["POST"], operation_id=name)


for _route, _operation in ROUTES.items():
    _register(_route, _operation)
