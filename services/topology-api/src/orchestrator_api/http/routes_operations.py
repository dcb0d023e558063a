"""Instance and replication control (issue 6): ``start-replica``, ``stop-replica``,
``restart-replica`` (and their ``*-slave`` synonyms), ``set-read-only``, ``set-writeable``,
``enable-/disable-semi-sync-master``, ``enable-/disable-semi-sync-replica``,
``flush-binary-logs``; ``stop-replica-nice``, ``reset-replica``, ``detach-`` and
``reattach-replica-master-host`` (with orchestrator's synonyms), ``skip-query``,
``gtid-errant-reset-master``, ``gtid-errant-inject-empty``, ``enable-gtid``, ``disable-gtid``
(issue 10: the replica switched between GTID and file:pos); and the routes with one more path
parameter: ``delay-replication/{host}/{port}/{seconds}``,
``purge-binary-logs/{host}/{port}/{logFile}[?force=true]``, plus the read-only
``locate-gtid-errant/{host}/{port}`` (``Details`` = binary log names).

Each is forwarded to the active recovery worker on ``orchestrator.v1.command.<operation>``
(``orchestrator_recovery.operations.instance``), which validates, changes the server behind its
lease and
audits. The answer is orchestrator's: ``{"Code": "OK", "Message": "Replica stopped: h:p", "Details":
<the instance JSON>}``. The instance JSON is the stored instance (after asking discovery to
refresh it, best-effort) with the fields the operation decides (``ReadOnly``, the replication
thread fields, the semi-sync flags, ``SelfBinlogCoordinates``) taken from what the worker read
back from the server, so the answer is right even before the refreshed snapshot reaches the
store.

``purge-binary-logs`` and ``gtid-errant-reset-master`` also pass the worker the replicas the
store knows of (``arguments["replicas"]``), so that a stopped replica, absent from the instance's
``SHOW SLAVE HOSTS``, is taken into account.

Statuses: 400 bad key or seconds, 404 instance not known, 409 refused by the worker (not a replica,
unreachable, a statement failed), 503 no active recovery worker (or it lost its lease mid-way).
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from fastapi import APIRouter

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.registration import add_mutation
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.topology import TopologyInstance

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
    "stop-replica-nice": "stop-replica-nice",
    "stop-slave-nice": "stop-replica-nice",
    "reset-replica": "reset-replica",
    "reset-slave": "reset-replica",
    "detach-replica-master-host": "detach-replica-master-host",
    "detach-replica": "detach-replica-master-host",
    "detach-slave": "detach-replica-master-host",
    "detach-slave-master-host": "detach-replica-master-host",
    "reattach-replica-master-host": "reattach-replica-master-host",
    "reattach-replica": "reattach-replica-master-host",
    "reattach-slave": "reattach-replica-master-host",
    "reattach-slave-master-host": "reattach-replica-master-host",
    "skip-query": "skip-query",
    "gtid-errant-reset-master": "gtid-errant-reset-master",
    "gtid-errant-inject-empty": "gtid-errant-inject-empty",
    # section 3 (issue 10)
    "enable-gtid": "enable-gtid",
    "disable-gtid": "disable-gtid",
}

MAX_DELAY = 2**31 - 1  # MariaDB's largest MASTER_DELAY

# operations told the replicas the store knows of (a stopped one is not in SHOW SLAVE HOSTS)
WITH_REPLICAS = frozenset({"gtid-errant-reset-master", "purge-binary-logs"})

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
    "MasterKey",
    "IsDetachedMaster",
    "SQLDelay",
    "LastSQLError",
    "LastIOError",
    "ExecBinlogCoordinates",
    "ReadBinlogCoordinates",
    "GtidErrant",
    "UsingMariaDBGTID",  # enable-gtid / disable-gtid
    "UsingOracleGTID",
    "UsingGtid",
)


async def _forward(
    context: ApiContext,
    operation: str,
    host: str,
    port: str,
    user: str,
    *,
    arguments: dict[str, str] | None = None,
) -> tuple[CommandReply, TopologyInstance]:
    _, node = await context.instance(host, port)
    extra = dict(arguments or {})
    if operation in WITH_REPLICAS:
        extra["replicas"] = ",".join(str(key) for key in node.replicas)
    reply = await context.forward(
        CommandRequest(
            operation=operation,
            instance=str(node.key),
            cluster=node.cluster_name,
            arguments=extra,
            requested_by=user,
        )
    )
    return reply, node


async def control(
    context: ApiContext,
    operation: str,
    host: str,
    port: str,
    user: str,
    *,
    arguments: dict[str, str] | None = None,
) -> Any:
    """Forward ``operation`` on ``host:port``; orchestrator's envelope with the instance JSON."""
    reply, node = await _forward(context, operation, host, port, user, arguments=arguments)
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

    handler.__name__ = route.replace("-", "_")
    add_mutation(router, f"/{route}/{{host}}/{{port}}", handler)


for _route, _operation in ROUTES.items():
    _register(_route, _operation)


async def _delay(host: str, port: str, seconds: str, context: Context, who: AdminAccess) -> Any:
    """Details = the seconds, as orchestrator (orchestrator-client prints them)."""
    text = seconds.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_DELAY:
        raise ApiError(400, f"Invalid value provided for seconds: {seconds!r} (0 to {MAX_DELAY})")
    operation = "delay-replication"
    reply, node = await _forward(
        context, operation, host, port, who.user, arguments={"seconds": text}
    )
    if context.discovery is not None:
        with suppress(ApiError):
            await context.ask_discovery("refresh", node.key)
    return wire.ok_envelope(reply.message or f"Replication delayed: {node.key}", reply.details)


async def _purge(  # noqa: PLR0917 - FastAPI passes the path parameters by name
    host: str, port: str, log_file: str, context: Context, who: AdminAccess, force: str = ""
) -> Any:
    """``?force=true`` skips the replica check (orchestrator's)."""
    arguments = {"logFile": log_file, "force": "true" if force == "true" else ""}
    return await control(context, "purge-binary-logs", host, port, who.user, arguments=arguments)


async def _locate(host: str, port: str, context: Context, who: ReadAccess) -> Any:
    """Read-only (no admin access needed, as orchestrator); the worker reads the binary logs."""
    reply, _ = await _forward(context, "locate-gtid-errant", host, port, who.user)
    return wire.ok_envelope(reply.message or "located errant GTID", reply.details)


for _path, _handler, _name in (
    ("/delay-replication/{host}/{port}/{seconds}", _delay, "delay_replication"),
    ("/purge-binary-logs/{host}/{port}/{log_file}", _purge, "purge_binary_logs"),
    ("/locate-gtid-errant/{host}/{port}", _locate, "locate_gtid_errant"),
):
    add_mutation(router, _path, _handler, _name)
