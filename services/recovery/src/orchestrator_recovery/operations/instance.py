"""Instance and replication control operations (issue 6): ``start-replica``, ``stop-replica``,
``restart-replica``, ``set-read-only``, ``set-writeable``, ``enable-/disable-semi-sync-master``,
``enable-/disable-semi-sync-replica``, ``flush-binary-logs``.

topology-api forwards them on ``orchestrator.v1.command.<operation>`` with ``instance`` =
``host:port``; the active worker answers
(:class:`~orchestrator_recovery.operations.commands.CommandResponder`
takes these handlers as ``operations``). Each handler:

1. reads the instance (``@@global.read_only``, ``SHOW SLAVE STATUS``, the semi-sync flags,
   ``SHOW MASTER STATUS``): an unreachable instance, a replication operation on an instance that
   is not a replica (orchestrator's "instance is not a replica"), semi-sync where it is not
   available, or a flush with binary logging off, is refused before anything changes;
2. calls the lease ``guard()`` right before each statement that changes the server (a lost lease
   raises :class:`LeaseLost`: the statement is not sent);
3. reads the instance again and answers with what the server now says (``details`` carries the
   fields of orchestrator's instance JSON that the operation decides, and ``Key``);
4. publishes one :class:`AuditEvent` (``ok=False`` when the operation failed after a change).

``restart-replica`` is STOP then START; ``enable-/disable-semi-sync-replica`` on a replica whose IO
thread runs is SET then ``STOP``/``START SLAVE IO_THREAD`` (as orchestrator, so the flag takes
effect). If a later statement cannot be sent (lease lost) or fails, the error says exactly which
statements were done and that replication was left stopped (a worker that lost its lease must
not touch the server again, even to restore it).

As in orchestrator, ``set-writeable`` is allowed on a replica and on a master alike, and a
redundant operation (stopping a stopped replica) is not an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator_adapters.ports import Audit, Guard
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.operations.base import (
    Operator,
    instance_key,
    operation_audit,
    read_state,
)
from orchestrator_recovery.operations.binlog import BinaryLogs
from orchestrator_recovery.operations.control import NICE_WAIT, Control
from orchestrator_recovery.operations.errant import CONVERGE, ErrantGtids
from orchestrator_recovery.operations.gtid import GtidModes
from orchestrator_recovery.operations.instance_sql import (
    FLUSH_BINARY_LOGS,
    SET_READ_ONLY,
    SET_WRITEABLE,
    START_IO_THREAD,
    START_REPLICA,
    STOP_IO_THREAD,
    STOP_REPLICA,
    InstanceState,
    set_semi_sync,
)
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from orchestrator_shared.instance_key import InstanceKey

STATEMENT_TIMEOUT = 10.0  # seconds for one statement (STOP SLAVE waits for the SQL thread)
START_SETTLE = 2.0  # seconds to let START SLAVE's threads report Yes before answering


Plan = Callable[[InstanceKey, InstanceState], tuple[str, ...]]


def _fixed(*statements: str, replica: bool = False) -> Plan:
    """The same statements every time; on a replica only when ``replica``."""

    def plan(key: InstanceKey, state: InstanceState) -> tuple[str, ...]:
        if replica and state.replica is None:
            raise OperationRefused(f"{key} is not a replica")
        return statements

    return plan


def _semi_sync(side: str, enabled: bool) -> Plan:
    """orchestrator's SetSemiSyncMaster/Replica: set the flag; a replica whose IO thread runs
    restarts it so that the flag takes effect (``STOP``/``START SLAVE IO_THREAD``)."""

    def plan(key: InstanceKey, state: InstanceState) -> tuple[str, ...]:
        if state.semi_sync is None:
            raise OperationRefused(f"semi-sync is not available on {key}")
        statement = set_semi_sync(side, enabled)
        if side == "slave" and state.replica is not None and state.replica.io_running:
            return (statement, STOP_IO_THREAD, START_IO_THREAD)
        return (statement,)

    return plan


def _flush(key: InstanceKey, state: InstanceState) -> tuple[str, ...]:
    if state.binlog is None:
        raise OperationRefused(f"{key} has no binary log (log_bin is off)")
    return (FLUSH_BINARY_LOGS,)


@dataclass(frozen=True, slots=True)
class _Operation:
    name: str
    plan: Plan
    message: str  # orchestrator's; {key} is the instance
    audit_text: str
    expect_running: bool = False  # after the statements, wait for both threads to run


OPERATIONS: tuple[_Operation, ...] = (
    _Operation(
        "start-replica",
        _fixed(START_REPLICA, replica=True),
        "Replica started: {key}",
        "started replication",
        expect_running=True,
    ),
    _Operation(
        "stop-replica",
        _fixed(STOP_REPLICA, replica=True),
        "Replica stopped: {key}",
        "stopped replication",
    ),
    _Operation(
        "restart-replica",
        _fixed(STOP_REPLICA, START_REPLICA, replica=True),
        "Replica restarted: {key}",
        "restarted replication",
        expect_running=True,
    ),
    _Operation("set-read-only", _fixed(SET_READ_ONLY), "Server set as read-only", "set read-only"),
    _Operation("set-writeable", _fixed(SET_WRITEABLE), "Server set as writeable", "set writeable"),
    _Operation(
        "enable-semi-sync-master",
        _semi_sync("master", enabled=True),
        "master semi-sync set to true",
        "enabled semi-sync master",
    ),
    _Operation(
        "disable-semi-sync-master",
        _semi_sync("master", enabled=False),
        "master semi-sync set to false",
        "disabled semi-sync master",
    ),
    _Operation(
        "enable-semi-sync-replica",
        _semi_sync("slave", enabled=True),
        "replica semi-sync set to true",
        "enabled semi-sync replica",
    ),
    _Operation(
        "disable-semi-sync-replica",
        _semi_sync("slave", enabled=False),
        "replica semi-sync set to false",
        "disabled semi-sync replica",
    ),
    _Operation("flush-binary-logs", _flush, "Binary logs flushed on: {key}", "flushed binary logs"),
)


class _Runner:
    def __init__(
        self,
        operation: _Operation,
        *,
        access: MySQLAccess,
        guard: Guard,
        audit: Audit,
        worker_id: str,
        statement_timeout: float,
    ) -> None:
        self._op = operation
        self._access = access
        self._guard = guard
        self._audit = audit
        self._worker_id = worker_id
        self._timeout = statement_timeout

    async def __call__(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        async with Links(self._access, statement_timeout=self._timeout) as links:
            try:
                before = await read_state(links, key)
            except StatementFailed as exc:
                raise OperationRefused(f"cannot read {key}: {exc.message}") from None
            statements = self._op.plan(key, before)
            done: list[str] = []
            try:
                for statement in statements:
                    # right after the guard, inside the lease: a lost lease sends nothing
                    await links.fenced(key, statement, self._guard)
                    done.append(statement)
            except (LeaseLost, StatementFailed) as exc:
                if not done:
                    raise
                text = f"{key}: {' and '.join(done)} done, then: {exc}"
                if done[-1].startswith("STOP"):
                    text += "; replication left stopped"
                await self._publish(request, key, text, ok=False)
                if isinstance(exc, LeaseLost):
                    raise LeaseLost(text) from None
                raise OperationRefused(text) from None
            await self._publish(request, key, f"{self._op.audit_text} on {key}", ok=True)
            after = await self._settle(links, key)
        details = {"Key": {"Hostname": key.host, "Port": key.port}, **after.details()}
        message = self._op.message.format(key=key)
        return CommandReply(ok=True, operation=request.operation, message=message, details=details)

    async def _settle(self, links: Links, key: InstanceKey) -> InstanceState:
        """The state after the statements; after a START, wait (briefly) for both threads."""
        deadline = time.monotonic() + START_SETTLE
        while True:
            try:
                state = await read_state(links, key)
            except StatementFailed as exc:
                raise OperationRefused(
                    f"{self._op.audit_text} on {key}, but it could not be read back: {exc.message}"
                ) from None
            if not self._op.expect_running or state.replica is None:
                return state
            if state.replica.running or time.monotonic() >= deadline:
                return state
            await asyncio.sleep(0.05)

    async def _publish(
        self, request: CommandRequest, key: InstanceKey, message: str, *, ok: bool
    ) -> None:
        await self._audit(
            operation_audit(request, self._op.name, key, message, worker_id=self._worker_id, ok=ok)
        )


def instance_operations(
    *,
    access: MySQLAccess,
    guard: Guard,
    audit: Audit,
    worker_id: str,
    statement_timeout: float = STATEMENT_TIMEOUT,
    nice_wait: float = NICE_WAIT,
    converge: float = CONVERGE,
) -> dict[str, Handler]:
    """The handlers, by operation name, for :class:`CommandResponder`'s ``operations``: these,
    and those of :mod:`~orchestrator_recovery.operations.control`,
    :mod:`~orchestrator_recovery.operations.binlog`,
    :mod:`~orchestrator_recovery.operations.errant` and
    :mod:`~orchestrator_recovery.operations.gtid`."""
    operator = Operator(
        access=access,
        guard=guard,
        audit=audit,
        worker_id=worker_id,
        statement_timeout=statement_timeout,
    )
    basic: dict[str, Handler] = {
        operation.name: _Runner(
            operation,
            access=access,
            guard=guard,
            audit=audit,
            worker_id=worker_id,
            statement_timeout=statement_timeout,
        )
        for operation in OPERATIONS
    }
    return (
        basic
        | Control(operator, nice_wait=nice_wait).handlers()
        | BinaryLogs(operator).handlers()
        | ErrantGtids(operator, converge=converge).handlers()
        | GtidModes(operator).handlers()
    )
