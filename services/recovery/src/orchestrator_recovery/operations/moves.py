"""GTID-aware moves (issue 6): ``relocate``, ``move-below-gtid`` (``move-gtid``), ``move-up``,
``repoint``, ``move-below`` (issue 10) and the read-only ``can-replicate-from``;
:meth:`Mover.validate` and :meth:`Mover.shift` are also the steps of the moves of many replicas
(:mod:`.moves_many`).

Every move is "make replica R replicate from target T with GTID", T being the ``destination``
(``relocate``, ``move-below-gtid``, ``repoint``, ``move-below``), the master of R's master
(``move-up``; refused when R's master is not a replica), or R's current master (``repoint``
without destination). ``move-below`` is ``move-below-gtid`` for a T that must be R's sibling:
both replicate from the same master and with GTID
(:func:`~orchestrator_recovery.operations.moves_sql.sibling_refusal`, checked in step 1 before the
rest). A move runs in this order and changes nothing until every check passed:

1. read R and T (unreachable: refused) and T's chain of masters (R in it: T is R's own replica
   or descendant, refused); :func:`~orchestrator_recovery.operations.moves_sql.refusal`: onto
   itself, R not a replica or not on GTID, T without ``log_bin`` (or a replica without
   ``log_slave_updates``), another flavor or a higher version, a ROW target for a STATEMENT
   replica, T delayed, not replicating or lagging beyond
   ``ReasonableMaintenanceReplicationLagSeconds``; a Galera node T outside the primary
   component, not ``Synced`` and ready, or without ``log_slave_updates``
   (:func:`~orchestrator_recovery.operations.moves_sql.galera_target_refusal`);
2. T must have every transaction R has (R's ``gtid_slave_pos`` merged with its
   ``gtid_binlog_pos`` contained in T's ``gtid_binlog_pos``; otherwise R would stop with
   error 1236, or carries errant transactions): T is given ``catch_up`` seconds, then refused;
3. ``guard()``, ``STOP SLAVE``; the positions are compared again now that R is stopped (T may
   be behind what R last received): still lacking after ``catch_up`` s, R is restarted;
4. ``guard()``, ``CHANGE MASTER TO master_host, master_port, master_use_gtid=slave_pos``;
   ``guard()``, ``START SLAVE``;
5. verify within ``verify`` seconds that R replicates from T (IO and SQL threads running,
   pointed at T, no error, T's first event received);
6. on a failure in 3, 4 or 5: restore R's previous master (``STOP``, ``CHANGE MASTER`` back with
   R's previous ``master_use_gtid`` mode, ``START`` if it was running) and verify it; the report
   says R is back, or exactly where it was left. A lost lease (:class:`LeaseLost`) sends
   nothing more: the error says which statements were done.

Each move publishes one :class:`AuditEvent` once something changed. The answer is
orchestrator's: ``Instance R relocated below T`` (``moved below T via GTID``, ``moved up``,
``repointed below T``) with details ``Key``, ``MasterKey`` and the replication fields read
back. ``can-replicate-from`` answers ``"true"``/``"false"`` with ``details`` = T's key and,
on false, ``Reason``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator_adapters.ports import Audit, Guard
from orchestrator_recovery.mysql import Links, MySQLAccess, Row, StatementFailed
from orchestrator_recovery.operations.base import instance_key, operation_audit, read_state
from orchestrator_recovery.operations.moves_sql import (
    GALERA_STATUS_SQL,
    REASONABLE_LAG_SECONDS,
    SERVER_SQL,
    Server,
    flavor_dialect,
    galera_target_refusal,
    missing,
    parse_gtid_mode,
    parse_lag,
    parse_server,
    refusal,
    sibling_refusal,
)
from orchestrator_recovery.operations.replication import replicating_from
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.sql import (
    parse_positions,
    parse_replica_status,
    quote,
)
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused, StepFailed
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.redact import redact

# a move's own condition on R and T, checked before the ones every move checks: why not, or None
Precheck = Callable[[Server, Server], str | None]

STATEMENT_TIMEOUT = 10.0
CATCH_UP = 5.0  # seconds a target behind the replica is given to catch up before refusing
VERIFY = 10.0  # seconds for the moved replica to replicate from its new master
MAX_CHAIN = 16  # masters followed up from the target looking for the replica
POLL = 0.01  # checks of a move in progress: the caller waits on them


def _key_json(key: InstanceKey | None) -> dict[str, Any]:
    if key is None:
        return {"Hostname": "", "Port": 0}
    return {"Hostname": key.host, "Port": key.port}


def shown(sql: str) -> str:
    """A statement as errors and audits may show it: no password."""
    return redact(sql)


def change_master_sql(master: InstanceKey, mode: str = "slave_pos") -> str:
    """Point a stopped MariaDB replica at ``master``, keeping its user and password."""
    if mode not in {"slave_pos", "current_pos"}:
        raise ValueError(f"no master_use_gtid mode {mode!r}")
    return (
        f"CHANGE MASTER TO master_host={quote(master.host)}, master_port={int(master.port)}, "
        f"master_use_gtid={mode}"
    )


async def read_server(links: Links, key: InstanceKey) -> Server:
    """R or T as a move sees it; OperationRefused when it cannot be read."""
    try:
        variables = await links.rows(key, SERVER_SQL)
        dialect = flavor_dialect(variables)
        status_rows = await links.rows(key, dialect.replica_status_sql)
        positions = await links.rows(key, dialect.positions_sql)
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read {key}: {exc.message}") from None
    return server_of(key, variables, positions, status_rows)


def server_of(
    key: InstanceKey, variables: list[Row], positions: list[Row], status_rows: list[Row]
) -> Server:
    """A server from the answers to :data:`SERVER_SQL`, the positions query and the replica
    status."""
    return parse_server(
        key,
        variables,
        parse_replica_status(status_rows),
        parse_positions(positions),
        parse_lag(status_rows),
        parse_gtid_mode(status_rows),
    )


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    audit_text: str

    def message(self, key: InstanceKey, target: InstanceKey) -> str:
        if self.name == "relocate":
            return f"Instance {key} relocated below {target}"
        if self.name == "move-below-gtid":
            return f"Instance {key} moved below {target} via GTID"
        if self.name == "move-up":
            return f"Instance {key} moved up"
        if self.name == "move-below":
            return f"Instance {key} moved below {target}"  # orchestrator's words
        return f"Instance {key} repointed below {target}"


@dataclass(frozen=True, slots=True)
class _Previous:
    """Where the replica was before the move."""

    master: InstanceKey
    mode: str
    running: bool


class MoveFailed(Exception):
    """A move failed after the replica was changed: ``text`` says what was done and where the
    replica was left; ``lease_lost``: the lease was lost, nothing more was sent."""

    def __init__(self, text: str, *, lease_lost: bool) -> None:
        super().__init__(text)
        self.text = text
        self.lease_lost = lease_lost

    def error(self) -> Exception:
        return LeaseLost(self.text) if self.lease_lost else OperationRefused(self.text)


class Mover:
    """Runs the moves; one instance serves every handler."""

    def __init__(
        self,
        *,
        access: MySQLAccess,
        guard: Guard,
        audit: Audit,
        worker_id: str,
        statement_timeout: float = STATEMENT_TIMEOUT,
        catch_up: float = CATCH_UP,
        verify: float = VERIFY,
        max_lag: int = REASONABLE_LAG_SECONDS,
    ) -> None:
        self._access = access
        self._guard = guard
        self._audit = audit
        self._worker_id = worker_id
        self._timeout = statement_timeout
        self._catch_up = catch_up
        self._verify = verify
        self._max_lag = max_lag

    # --- checks ---------------------------------------------------------------------------

    async def _masters_of(self, links: Links, target: Server) -> list[InstanceKey]:
        """The target's masters, nearest first, as far as they can be read."""
        chain: list[InstanceKey] = []
        current = target.master
        while current is not None and current not in chain and len(chain) < MAX_CHAIN:
            chain.append(current)
            try:
                rows = await links.rows(current, target.dialect.replica_status_sql)
            except StatementFailed:
                break
            status = parse_replica_status(rows)
            current = status.master if status is not None else None
        return chain

    async def _check(self, links: Links, replica: Server, target: Server) -> None:
        why = refusal(
            replica,
            target,
            descendants=await self._masters_of(links, target),
            max_lag=self._max_lag,
        )
        if why is None:
            try:
                why = galera_target_refusal(target, await links.rows(target.key, GALERA_STATUS_SQL))
            except StatementFailed as exc:
                why = f"cannot read {target.key}: {exc.message}"
        if why is not None:
            raise OperationRefused(why)

    async def _caught_up(self, links: Links, replica: Server, target: Server) -> str | None:
        """Wait up to ``catch_up`` seconds for the target to have everything the replica has;
        the reason when it does not."""
        deadline = time.monotonic() + self._catch_up
        while True:
            why = missing(replica, target)
            if why is None or time.monotonic() >= deadline:
                return why
            await asyncio.sleep(POLL)
            replica = await read_server(links, replica.key)
            target = await read_server(links, target.key)

    async def validate(
        self,
        links: Links,
        key: InstanceKey,
        target_key: InstanceKey,
        *,
        precheck: Precheck | None = None,
    ) -> Server:
        replica = await read_server(links, key)
        if key == target_key:
            raise OperationRefused(f"cannot move {key} below itself")
        target = await read_server(links, target_key)
        why = precheck(replica, target) if precheck is not None else None
        if why is not None:
            raise OperationRefused(why)
        await self._check(links, replica, target)
        why = await self._caught_up(links, replica, target)
        if why is not None:
            raise OperationRefused(why)
        return replica

    # --- the move -------------------------------------------------------------------------

    @property
    def max_lag(self) -> int:
        return self._max_lag

    def links(self) -> Links:
        return Links(self._access, statement_timeout=self._timeout)

    async def send(self, links: Links, key: InstanceKey, sql: str, done: list[str]) -> None:
        try:  # right after the guard, inside the lease: a lost lease sends nothing
            await links.fenced(key, sql, self._guard)
        except StatementFailed as exc:
            raise StepFailed(f"{shown(sql)}: {exc.message}") from None
        done.append(sql)

    async def following(self, links: Links, key: InstanceKey, master: InstanceKey) -> str | None:
        """None once ``key`` replicates from ``master``; else why not, after ``verify`` s."""
        return await replicating_from(links, key, master, within=self._verify, poll=POLL)

    async def shift(self, links: Links, replica: Server, target_key: InstanceKey) -> InstanceKey:
        """Steps 3 to 6 for a ``replica`` :meth:`validate` accepted: its previous master.

        Raises :class:`LeaseLost` when the lease was lost before anything was sent, and
        :class:`MoveFailed` (saying exactly what was done and where the replica is) once
        something was."""
        key, old_master = replica.key, replica.master
        assert replica.replica is not None
        assert old_master is not None
        was_running = replica.replica.is_io_running or replica.replica.is_sql_running
        using = "current_pos" if replica.gtid_mode == "current_pos" else "slave_pos"
        done: list[str] = []
        try:
            await self.send(links, key, "STOP SLAVE", done)
            stopped = await read_server(links, key)
            why = await self._caught_up(links, stopped, await read_server(links, target_key))
            if why is not None:
                raise StepFailed(why)
            await self.send(links, key, change_master_sql(target_key), done)
            await self.send(links, key, "START SLAVE", done)
            why = await self.following(links, key, target_key)
            if why is not None:
                raise StepFailed(why)
        except LeaseLost as exc:
            if not done:
                raise
            text = f"{key}: {' and '.join(done)} done, then: {exc}; {key} left as it is"
            raise MoveFailed(text, lease_lost=True) from None
        except (StepFailed, OperationRefused) as exc:
            text, lost = await self._restore(
                links, key, _Previous(old_master, using, was_running), done, exc
            )
            raise MoveFailed(text, lease_lost=lost) from None
        return old_master

    async def move(
        self,
        kind: _Kind,
        request: CommandRequest,
        key: InstanceKey,
        target_key: InstanceKey,
        *,
        precheck: Precheck | None = None,
    ) -> CommandReply:
        async with self.links() as links:
            replica = await self.validate(links, key, target_key, precheck=precheck)
            try:
                old_master = await self.shift(links, replica, target_key)
            except MoveFailed as exc:
                await self.publish(kind.name, request, key, exc.text, ok=False)
                raise exc.error() from None
            text = f"{kind.audit_text} {key} below {target_key} (was below {old_master})"
            await self.publish(kind.name, request, key, text, ok=True)
            details = await self.details(links, key)
        return CommandReply(
            ok=True,
            operation=request.operation,
            message=kind.message(key, target_key),
            details=details,
        )

    async def _restore(
        self,
        links: Links,
        key: InstanceKey,
        previous: _Previous,
        done: list[str],
        failure: Exception,
    ) -> tuple[str, bool]:
        """Put R back below its previous master; what happened, exactly, as one line, and
        whether the lease was lost while restoring (nothing more was sent then)."""
        old_master, mode, was_running = previous.master, previous.mode, previous.running
        head = f"moving {key} failed: {failure}"
        if not done:
            return head + "; nothing was changed", False
        steps: list[str] = []
        try:
            changed = any(sql.startswith("CHANGE MASTER") for sql in done)
            if changed:
                await self.send(links, key, "STOP SLAVE", steps)
                await self.send(links, key, change_master_sql(old_master, mode), steps)
            if was_running:
                await self.send(links, key, "START SLAVE", steps)
                why = await self.following(links, key, old_master)
                if why is not None:
                    raise StepFailed(why)
        except (StepFailed, LeaseLost) as exc:
            shown = " and ".join(steps) or "nothing"
            text = (
                f"{head}; restoring {old_master} as its master failed after {shown}: {exc}; "
                f"{key} left as it is now"
            )
            return text, isinstance(exc, LeaseLost)
        return f"{head}; {key} restored to replicate from {old_master}", False

    async def details(self, links: Links, key: InstanceKey) -> dict[str, Any]:
        try:
            state = await read_state(links, key)
            rows = await links.rows(key, "SHOW ALL SLAVES STATUS")
        except StatementFailed as exc:
            raise OperationRefused(f"{key} moved, but it could not be read back: {exc}") from None
        status = parse_replica_status(rows)
        return {
            "Key": _key_json(key),
            "MasterKey": _key_json(status.master if status else None),
            "UsingMariaDBGTID": bool(status and status.using_gtid),
            **state.details(),
        }

    async def can_replicate_from(
        self, request: CommandRequest, key: InstanceKey, target_key: InstanceKey
    ) -> CommandReply:
        async with self.links() as links:
            reason: str | None = None
            try:
                replica = await read_server(links, key)
                if key == target_key:
                    raise OperationRefused(f"cannot move {key} below itself")
                target = await read_server(links, target_key)
                await self._check(links, replica, target)
                reason = missing(replica, target)
            except OperationRefused as exc:
                reason = str(exc)
        details: dict[str, Any] = _key_json(target_key)
        if reason is not None:
            details["Reason"] = reason
        return CommandReply(
            ok=True,
            operation=request.operation,
            message="false" if reason else "true",
            details=details,
        )

    async def publish(
        self, kind: str, request: CommandRequest, key: InstanceKey, message: str, *, ok: bool
    ) -> None:
        await self._audit(
            operation_audit(request, kind, key, message, worker_id=self._worker_id, ok=ok)
        )

    # --- handlers -------------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        relocate = _Kind("relocate", "relocated")
        gtid = _Kind("move-below-gtid", "moved (GTID)")
        up = _Kind("move-up", "moved up")
        repoint = _Kind("repoint", "repointed")
        sibling = _Kind("move-below", "moved (GTID, below its sibling)")

        async def below(kind: _Kind, request: CommandRequest) -> CommandReply:
            key = instance_key(request.instance)
            return await self.move(
                kind, request, key, instance_key(request.destination, "destination")
            )

        async def do_relocate(request: CommandRequest) -> CommandReply:
            return await below(relocate, request)

        async def do_gtid(request: CommandRequest) -> CommandReply:
            return await below(gtid, request)

        async def do_up(request: CommandRequest) -> CommandReply:
            key = instance_key(request.instance)
            async with self.links() as links:
                replica = await read_server(links, key)
                if replica.master is None:
                    raise OperationRefused(f"{key} is not a replica")
                master = await read_server(links, replica.master)
            if master.master is None:
                raise OperationRefused(
                    f"{key}'s master {master.key} is not a replica: cannot move up"
                )
            return await self.move(up, request, key, master.master)

        async def do_repoint(request: CommandRequest) -> CommandReply:
            key = instance_key(request.instance)
            if request.destination:
                return await self.move(
                    repoint, request, key, instance_key(request.destination, "destination")
                )
            async with self.links() as links:
                replica = await read_server(links, key)
            if replica.master is None:
                raise OperationRefused(f"{key} is not a replica")
            return await self.move(repoint, request, key, replica.master)

        async def do_below_sibling(request: CommandRequest) -> CommandReply:
            key = instance_key(request.instance)
            target = instance_key(request.destination, "destination")
            return await self.move(sibling, request, key, target, precheck=sibling_refusal)

        async def do_can(request: CommandRequest) -> CommandReply:
            key = instance_key(request.instance)
            return await self.can_replicate_from(
                request, key, instance_key(request.destination, "destination")
            )

        return {
            "relocate": do_relocate,
            "move-below-gtid": do_gtid,
            "move-gtid": do_gtid,
            "move-up": do_up,
            "repoint": do_repoint,
            "move-below": do_below_sibling,
            "can-replicate-from": do_can,
        }
