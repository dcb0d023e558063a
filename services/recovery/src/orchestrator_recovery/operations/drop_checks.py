"""Drop checks for the web UI (issue 11): may R go below each other instance of its cluster?
Read-only: nothing is changed, nothing is locked, nothing is audited.

* ``can-relocate`` (``instance`` = R, ``arguments["targets"]`` = the other instances of R's
  cluster, as topology-api knows them): for each target T, the checks ``relocate`` applies
  before it changes anything (:func:`~orchestrator_recovery.operations.moves_sql.refusal`, with T's
  chain of masters for "T is R's own replica or descendant", then
  :func:`~orchestrator_recovery.operations.moves_sql.missing`: T has every transaction R has), but
  without giving T time to catch up: a T behind R now is refused, with the reason;
* ``can-relocate-replicas`` (also ``arguments["replicas"]``: R's replicas topology-api knows):
  for each T, the checks ``relocate-replicas`` applies (every replica of R but T itself passes
  the ``relocate`` checks below T; an unreadable replica refuses the move); the reason names
  the first replica refused.

Every server involved (R, the targets, R's replicas, and the masters of their chains) is read
once (two statements: :data:`~orchestrator_recovery.operations.moves_sql.CHECK_VARIABLES_SQL` and
the
replica status), concurrently, with a short deadline (``timeout`` seconds to connect and for each
statement), so a cluster of 200 answers in a fraction of a second; a server that does not
answer refuses the moves that need it, with its error as the reason.

With ``locks`` (the maintenance locks in etcd, read once per call), R or T held by someone else's
maintenance or by a running operation refuses the move with the lock's description, as
``relocate`` would.

The reply's ``details``: ``[{"Key": {"Hostname", "Port"}, "Allowed": bool, "Reason": str}]``,
one per target, in the order given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.operations.base import instance_key, key_json
from orchestrator_recovery.operations.maintenance import Lock, blocking
from orchestrator_recovery.operations.moves import MAX_CHAIN, server_of
from orchestrator_recovery.operations.moves_sql import (
    CHECK_VARIABLES_SQL,
    REASONABLE_LAG_SECONDS,
    Server,
    flavor_dialect,
    missing,
    refusal,
    split_variables,
)
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey

CHECK_TIMEOUT = 1.0  # seconds to connect to a server, and for each statement

# what was read of each server: the server, or why it could not be read
Read = Mapping[InstanceKey, Server | str]


@dataclass(frozen=True, slots=True)
class Verdict:
    key: InstanceKey
    reason: str = ""  # empty: allowed

    def json(self) -> dict[str, Any]:
        return {"Key": key_json(self.key), "Allowed": not self.reason, "Reason": self.reason}


def masters_of(servers: Read, target: Server) -> list[InstanceKey]:
    """The target's masters, nearest first, as far as ``servers`` knows them."""
    chain: list[InstanceKey] = []
    current = target.master
    while current is not None and current not in chain and len(chain) < MAX_CHAIN:
        chain.append(current)
        found = servers.get(current)
        current = found.master if isinstance(found, Server) else None
    return chain


def relocate_refusal(servers: Read, key: InstanceKey, target_key: InstanceKey, max_lag: int) -> str:
    """Why ``relocate`` would refuse ``key`` below ``target_key`` now ("" when it would not)."""
    if key == target_key:
        return f"cannot move {key} below itself"
    replica, target = servers[key], servers[target_key]
    if isinstance(replica, str):
        return replica
    if isinstance(target, str):
        return target
    why = refusal(replica, target, descendants=masters_of(servers, target), max_lag=max_lag)
    return why or missing(replica, target) or ""


def replicas_refusal(
    servers: Read,
    top: InstanceKey,
    replicas: Sequence[InstanceKey],
    target_key: InstanceKey,
    max_lag: int,
) -> str:
    """Why ``relocate-replicas`` would refuse the replicas of ``top`` below ``target_key``."""
    if target_key == top:
        return f"cannot relocate the replicas of {top} below {top} itself"
    target = servers[target_key]
    if isinstance(target, str):
        return target
    moving = [key for key in replicas if key != target_key]
    if not moving:
        return f"{top} has no replica to move below {target_key}"
    for key in moving:
        why = relocate_refusal(servers, key, target_key, max_lag)
        if why:
            return f"{key}: {why}"
    return ""


def replicas_of(servers: Read, top: InstanceKey, known: Iterable[InstanceKey]) -> list[InstanceKey]:
    """``top``'s replicas: the servers read replicating from it, and the ``known`` ones that
    could not be read (they could not be told apart from a replica, so they refuse the move,
    as in ``relocate-replicas``)."""
    found = {
        key
        for key, server in servers.items()
        if isinstance(server, Server) and server.master == top
    }
    found |= {key for key in known if isinstance(servers.get(key), str)}
    return sorted(found - {top}, key=str)


async def read_quickly(links: Links, key: InstanceKey) -> Server:
    """What :func:`~orchestrator_recovery.operations.moves.read_server` reads, in two statements
    instead of three; OperationRefused when the server cannot be read."""
    try:
        variables, positions = split_variables(await links.rows(key, CHECK_VARIABLES_SQL))
        status_rows = await links.rows(key, flavor_dialect(variables).replica_status_sql)
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read {key}: {exc.message}") from None
    try:
        return server_of(key, variables, positions, status_rows)
    except ValueError as exc:
        raise OperationRefused(f"cannot read {key}: {exc}") from None


def _keys(text: str, what: str) -> list[InstanceKey]:
    return [instance_key(part.strip(), what) for part in text.split(",") if part.strip()]


class DropChecks:
    def __init__(
        self,
        *,
        access: MySQLAccess,
        max_lag: int = REASONABLE_LAG_SECONDS,
        timeout: float = CHECK_TIMEOUT,
        locks: Callable[[], Awaitable[Sequence[Lock]]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._access = replace(access, connect_timeout=min(access.connect_timeout, timeout))
        self._max_lag = max_lag
        self._timeout = timeout
        self._locks = locks
        self._clock = clock

    async def held(self, requested_by: str) -> dict[InstanceKey, str]:
        """Why each locked instance cannot be moved or moved below now (empty without
        ``locks``)."""
        if self._locks is None:
            return {}
        return held_instances(await self._locks(), requested_by, self._clock())

    async def read(self, keys: Iterable[InstanceKey]) -> dict[InstanceKey, Server | str]:
        """Each of ``keys`` and the masters of their chains, once, concurrently."""
        servers: dict[InstanceKey, Server | str] = {}
        async with Links(self._access, statement_timeout=self._timeout) as links:

            async def one(key: InstanceKey) -> None:
                try:
                    servers[key] = await read_quickly(links, key)
                except OperationRefused as exc:
                    servers[key] = str(exc)

            wanted = set(keys)
            for _ in range(MAX_CHAIN):
                async with asyncio.TaskGroup() as group:
                    for key in wanted:
                        group.create_task(one(key))
                wanted = {
                    server.master
                    for server in servers.values()
                    if isinstance(server, Server) and server.master and server.master not in servers
                }
                if not wanted:
                    break
        return servers

    async def can_relocate(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        targets = [t for t in _keys(request.arguments.get("targets", ""), "target") if t != key]
        servers, held = await asyncio.gather(
            self.read([key, *targets]), self.held(request.requested_by)
        )
        verdicts = [
            Verdict(
                t, held.get(key) or held.get(t) or relocate_refusal(servers, key, t, self._max_lag)
            )
            for t in targets
        ]
        return _reply(request, key, verdicts)

    async def can_relocate_replicas(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        targets = [t for t in _keys(request.arguments.get("targets", ""), "target") if t != key]
        known = _keys(request.arguments.get("replicas", ""), "replica")
        servers, held = await asyncio.gather(
            self.read([key, *targets, *known]), self.held(request.requested_by)
        )
        replicas = replicas_of(servers, key, known)
        busy = next((held[r] for r in replicas if r in held), "")
        verdicts = [
            Verdict(
                t,
                busy or held.get(t) or replicas_refusal(servers, key, replicas, t, self._max_lag),
            )
            for t in targets
        ]
        return _reply(request, key, verdicts)

    def handlers(self) -> dict[str, Handler]:
        return {
            "can-relocate": self.can_relocate,
            "can-relocate-replicas": self.can_relocate_replicas,
        }


def held_instances(
    locks: Iterable[Lock], requested_by: str, now: datetime
) -> dict[InstanceKey, str]:
    """Instance -> why it is not free for ``requested_by``: a running operation's lock, or
    someone else's maintenance in force (the first such lock of each instance)."""
    held: dict[InstanceKey, str] = {}
    for lock in locks:
        if lock.transient or blocking([lock], requested_by, now) is not None:
            held.setdefault(lock.key, lock.describe())
    return held


def _reply(request: CommandRequest, key: InstanceKey, verdicts: Sequence[Verdict]) -> CommandReply:
    allowed = sum(1 for verdict in verdicts if not verdict.reason)
    return CommandReply(
        ok=True,
        operation=request.operation,
        message=f"{allowed} of {len(verdicts)} targets allowed for {key}",
        details=[verdict.json() for verdict in verdicts],
    )
