"""What the control operations share: reading an instance, sending statements behind the lease
guard, undoing what was done when a later step fails, and the one audit entry.

An operation is a *body* ``(links, key, steps) -> Outcome``. It reads and validates first (an
:class:`OperationRefused` raised before any statement changes nothing and is not audited), then
sends every changing statement through :meth:`Steps.send` (``guard()`` right before it). When it
changes something that a later failure must undo, it says how with :meth:`Steps.undo_with`.
:class:`Operator` runs the body and, on a failure after a change, sends the undo statements
(behind the guard too) and reports exactly what was done and undone; a lost lease sends
nothing more, not even the undo.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator_adapters.ports import Audit, Guard
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.operations.control_sql import (
    NO_REPLICATION_FIELDS,
    SHOW_ALL_REPLICAS_STATUS,
    Replication,
    parse_replication,
)
from orchestrator_recovery.operations.instance_sql import (
    SELECT_READ_ONLY,
    SHOW_BINLOG,
    SHOW_REPLICA_STATUS,
    SHOW_SEMI_SYNC,
    InstanceState,
    parse_binlog,
    parse_read_only,
    parse_replica_status,
    parse_semi_sync,
)
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import (
    InvalidInstanceKey,
    LeaseLost,
    OperationRefused,
    StepFailed,
)
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.instance_key import InstanceKey

STATEMENT_TIMEOUT = 10.0  # seconds for one statement (STOP SLAVE waits for the SQL thread)


async def read_state(links: Links, key: InstanceKey) -> InstanceState:
    """The instance as the operations see it; StatementFailed when unreachable."""
    return InstanceState(
        read_only=parse_read_only(await links.rows(key, SELECT_READ_ONLY)),
        replica=parse_replica_status(await links.rows(key, SHOW_REPLICA_STATUS)),
        semi_sync=parse_semi_sync(await links.rows(key, SHOW_SEMI_SYNC)),
        binlog=parse_binlog(await links.rows(key, SHOW_BINLOG)),
    )


def instance_key(text: str, what: str = "instance") -> InstanceKey:
    if not text:
        raise OperationRefused(f"no {what} given")
    try:
        return InstanceKey.parse(text)
    except InvalidInstanceKey as exc:
        raise OperationRefused(f"bad {what}: {exc}") from None


def operation_audit(
    request: CommandRequest,
    kind: str,
    key: InstanceKey,
    message: str,
    *,
    worker_id: str,
    ok: bool = True,
    at: datetime | None = None,
) -> AuditEvent:
    """The audit entry of an operation on ``key``: by its requester (else the worker)."""
    return AuditEvent(
        type=kind,
        message=message,
        key=str(key),
        cluster=request.cluster,
        user=request.requested_by or worker_id,
        at=at or datetime.now(UTC),
        ok=ok,
        details={"worker": worker_id},
    )


def key_json(key: InstanceKey) -> dict[str, Any]:
    return {"Hostname": key.host, "Port": key.port}


@dataclass(frozen=True, slots=True)
class Outcome:
    message: str  # the answer's Message (orchestrator's)
    audit: str  # the audit entry's message
    details: Any = None  # the answer's Details; None: the instance as read back


@dataclass
class Steps:
    """The statements one operation sent, and how to undo them if a later step fails."""

    links: Links
    guard: Guard
    done: list[str] = field(default_factory=list)
    undo: list[tuple[InstanceKey, str]] = field(default_factory=list)

    async def send(self, key: InstanceKey, sql: str) -> None:
        try:  # right after the guard, inside the lease: a lost lease sends nothing
            await self.links.fenced(key, sql, self.guard)
        except StatementFailed as exc:
            raise StepFailed(f"{sql} on {key}: {exc.message}") from None
        self.done.append(sql)

    def undo_with(self, key: InstanceKey, statements: Sequence[str]) -> None:
        """From now on, a failure is undone by ``statements`` (in this order) on ``key``."""
        self.undo = [(key, sql) for sql in statements]

    def text(self) -> str:
        return " and ".join(self.done) or "nothing"


Body = Callable[[Links, InstanceKey, Steps], Awaitable[Outcome]]


class Operator:
    """Runs operation bodies for one worker: links, guard, undo, audit, answer."""

    def __init__(
        self,
        *,
        access: MySQLAccess,
        guard: Guard,
        audit: Audit,
        worker_id: str,
        statement_timeout: float = STATEMENT_TIMEOUT,
    ) -> None:
        self.access = access
        self.guard = guard
        self._audit = audit
        self.worker_id = worker_id
        self.statement_timeout = statement_timeout

    def links(self) -> Links:
        return Links(self.access, statement_timeout=self.statement_timeout)

    async def run(self, name: str, request: CommandRequest, body: Body) -> CommandReply:
        key = instance_key(request.instance)
        async with self.links() as links:
            steps = Steps(links, self.guard)
            try:
                outcome = await body(links, key, steps)
            except LeaseLost as exc:
                if not steps.done:
                    raise
                text = f"{key}: {steps.text()} done, then: {exc}; nothing more was sent"
                await self.publish(name, request, key, text, ok=False)
                raise LeaseLost(text) from None
            except (StepFailed, StatementFailed, OperationRefused) as exc:
                if not steps.done:
                    if isinstance(exc, OperationRefused):
                        raise
                    raise OperationRefused(f"{name} on {key} failed: {exc}") from None
                text, lost = await self._undo(name, key, steps, exc)
                await self.publish(name, request, key, text, ok=False)
                if lost:
                    raise LeaseLost(text) from None
                raise OperationRefused(text) from None
            await self.publish(name, request, key, outcome.audit, ok=True)
            details = outcome.details
            if details is None:
                details = await self.details(links, key)
        return CommandReply(
            ok=True, operation=request.operation, message=outcome.message, details=details
        )

    async def _undo(
        self, name: str, key: InstanceKey, steps: Steps, failure: Exception
    ) -> tuple[str, bool]:
        head = f"{name} on {key} failed after {steps.text()}: {failure}"
        if not steps.undo:
            return head, False
        undone: list[str] = []
        try:
            for target, sql in steps.undo:
                await steps.links.fenced(target, sql, self.guard)
                undone.append(sql)
        except (LeaseLost, StatementFailed) as exc:
            shown = " and ".join(undone) or "nothing"
            text = f"{head}; undoing it failed after {shown}: {exc}; {key} left as it is now"
            return text, isinstance(exc, LeaseLost)
        return f"{head}; undone with {' and '.join(undone)}", False

    async def replication(self, links: Links, key: InstanceKey) -> Replication | None:
        """The instance's replication; OperationRefused when it cannot be read."""
        try:
            return parse_replication(await links.rows(key, SHOW_ALL_REPLICAS_STATUS))
        except StatementFailed as exc:
            raise OperationRefused(f"cannot read {key}: {exc.message}") from None

    async def details(self, links: Links, key: InstanceKey) -> dict[str, Any]:
        """``Key`` and the fields of orchestrator's instance JSON read back from the server."""
        try:
            state = await read_state(links, key)
            replication = parse_replication(await links.rows(key, SHOW_ALL_REPLICAS_STATUS))
        except StatementFailed as exc:
            raise OperationRefused(f"done on {key}, but it could not be read back: {exc}") from None
        fields = replication.fields() if replication is not None else NO_REPLICATION_FIELDS
        return {"Key": key_json(key), **state.details(), **fields}

    async def publish(
        self,
        name: str,
        request: CommandRequest,
        key: InstanceKey,
        message: str,
        *,
        ok: bool,
    ) -> None:
        await self._audit(
            operation_audit(request, name, key, message, worker_id=self.worker_id, ok=ok)
        )
