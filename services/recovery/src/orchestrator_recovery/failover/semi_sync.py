"""Carrying out a semi-sync recovery (:class:`~orchestrator_shared.recovery.SemiSyncPlan`).

Each replica the plan names is changed with the ``enable-semi-sync-replica`` /
``disable-semi-sync-replica`` operation (:mod:`orchestrator_recovery.operations.instance`): the
flag set
behind the leadership guard and, since the replica replicates, its IO thread restarted so that
the master sees the change; each one is audited as that operation. As orchestrator, every
replica to enable goes first and the ones to disable after, so the master never has fewer
semi-sync replicas than it had. Unlike orchestrator:

* when an enable fails, no replica is disabled (turning one off could then lock the master);
* the outcome is checked: the master must count the semi-sync replicas the plan aims for
  (``Rpl_semi_sync_master_clients``) within ``verify_timeout``.
"""

from __future__ import annotations

import asyncio
import time

from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.ports import Handler, SemiSyncResult
from orchestrator_recovery.sql import Dialect, parse_status_number
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.recovery import SemiSyncPlan
from orchestrator_shared.snapshot import Flavor

__all__ = ["DEFAULT_SEMI_SYNC_VERIFY_TIMEOUT", "carry_out_semi_sync"]

DEFAULT_SEMI_SYNC_VERIFY_TIMEOUT = 5.0
"""How long the master gets to count the semi-sync replicas the plan aims for."""
_POLL = 0.1


async def carry_out_semi_sync(
    plan: SemiSyncPlan,
    *,
    enable: Handler,
    disable: Handler,
    access: MySQLAccess,
    requested_by: str,
    verify_timeout: float = DEFAULT_SEMI_SYNC_VERIFY_TIMEOUT,
) -> SemiSyncResult:
    """Enable, then disable, semi-sync on the plan's replicas; then watch the master's count.

    A lost lease (``LeaseLost``) propagates as it is: nothing more is sent."""
    changed: dict[str, bool] = {}
    failed: dict[str, str] = {}

    async def change(handler: Handler, key: InstanceKey, operation: str, on: bool) -> None:
        request = CommandRequest(
            operation=operation, instance=str(key), cluster=plan.cluster, requested_by=requested_by
        )
        try:
            await handler(request)
        except OperationRefused as exc:
            failed[str(key)] = str(exc)
            return
        changed[str(key)] = on

    for key in plan.enable:
        await change(enable, key, "enable-semi-sync-replica", True)
    if plan.disable and failed:
        for key in plan.disable:
            failed[str(key)] = (
                "not disabled: an enable failed, and turning it off could lock the master"
            )
    else:
        for key in plan.disable:
            await change(disable, key, "disable-semi-sync-replica", False)
    clients = await _watch_clients(plan, access, verify_timeout)
    reached = clients is not None and plan.is_reached(clients)
    counted = "cannot be read" if clients is None else str(clients)
    detail = f"{plan.master} counts {counted} semi-sync replicas (wanted {plan.target})" + (
        "" if reached else f" after {verify_timeout:g}s"
    )
    return SemiSyncResult(changed=changed, failed=failed, reached=reached, detail=detail)


async def _watch_clients(plan: SemiSyncPlan, access: MySQLAccess, within: float) -> int | None:
    """The master's count of semi-sync replicas once it is as the plan wants, or as it is at
    the end of ``within`` seconds (None: it could not be read)."""
    flavor = plan.flavor if plan.flavor is not Flavor.UNKNOWN else Flavor.MARIADB
    statement = Dialect(flavor).semi_sync_clients_sql
    deadline = time.monotonic() + within
    clients: int | None = None
    async with Links(access, statement_timeout=2.0) as links:
        while True:
            try:
                clients = parse_status_number(await links.rows(plan.master, statement))
            except StatementFailed:
                clients = None
            if (clients is not None and plan.is_reached(clients)) or time.monotonic() >= deadline:
                return clients
            await asyncio.sleep(_POLL)
