"""Moves of many replicas (issue 6), GTID only, built on the single move of
:class:`~orchestrator_recovery.operations.moves.Mover` (validate, then STOP / CHANGE MASTER / START
behind the lease guard, verify, restore on failure):

- ``relocate-replicas`` / ``move-replicas-gtid``: the replicas of I (``pattern``-filtered; the
  destination D itself skipped) below D;
- ``move-up-replicas``: the replicas of I below I's master;
- ``repoint-replicas``: the replicas of I back to I;
- ``take-siblings``: the other replicas of I's master below I;
- ``regroup-replicas`` (``regroup-replicas-gtid``): the most up-to-date replica of I that can be
  a master (:func:`~orchestrator_recovery.operations.moves_many_rules.choose_promoted`) takes its
  siblings; those that cannot replicate from it are *lost* (left where they are);
- ``take-master``: I swaps places with its master M (M itself a replica of G): I moves below
  G, then M below I; if the second step fails, M is back below G and I is moved back below M.
  After a successful one, ``PostTakeMasterProcesses`` run (``after_take_master``); a failing
  hook is audited and does not undo the move;
- ``make-co-master``: the cluster master M replicates from its read-only replica I.

The replicas of an instance are the ones it names in ``SHOW SLAVE HOSTS`` plus the ones
topology-api knows (``arguments["replicas"]``, ``["siblings"]`` for take-siblings), each kept
only when it does replicate from the instance (a dead instance: the known ones pointing at it).

All or nothing up front: every replica is validated before the first one moves; when any of
them cannot move (orchestrator would move the others and list errors) nothing is changed and
the refusal names each one with its reason: narrow the set with ``pattern``. The moves then run
one replica at a time; when one fails, that replica is restored (by the single move), the ones
already moved stay moved, the rest are not tried, and the error says exactly which is which.
Regroup is the exception, by definition: the siblings that cannot move are counted as lost.

One :class:`AuditEvent` per operation once something changed (or on success), and one
(``pattern-refused``) for a ``pattern`` refused here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import instance_key, key_json
from orchestrator_recovery.operations.control_sql import SHOW_REPLICA_HOSTS, parse_replica_hosts
from orchestrator_recovery.operations.moves import MoveFailed, Mover, read_server
from orchestrator_recovery.operations.moves_co_master import CoMaster
from orchestrator_recovery.operations.moves_many_rules import (
    choose_promoted,
    selected,
    take_master_refusal,
)
from orchestrator_recovery.operations.moves_sql import Server
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from orchestrator_shared.instance_key import InstanceKey


def _known(text: str) -> list[InstanceKey]:
    return [instance_key(part.strip(), "replica") for part in text.split(",") if part.strip()]


def _names(keys: Sequence[InstanceKey]) -> str:
    return ", ".join(map(str, keys)) or "none"


AfterTakeMaster = Callable[[InstanceKey, InstanceKey, str], Awaitable[None]]
"""Called with (the instance, its former master now below it, the cluster) after a successful
``take-master``: the ``PostTakeMasterProcesses`` hooks."""


class ManyMoves:
    """Runs the moves of many replicas with one :class:`Mover`; one instance serves every
    handler, each operation opens its own connections."""

    def __init__(
        self,
        mover: Mover,
        co_master: CoMaster,
        *,
        after_take_master: AfterTakeMaster | None = None,
    ) -> None:
        self._mover = mover
        self._co_master = co_master
        self._after_take_master = after_take_master

    # --- reading -------------------------------------------------------------------------

    async def replicas(
        self,
        links: Links,
        top: InstanceKey,
        request: CommandRequest,
        *,
        listed: str = "replicas",
        filtered: bool = True,
        skip: frozenset[InstanceKey] = frozenset(),
    ) -> list[Server]:
        """The replicas of ``top`` selected by the request's ``pattern`` (when ``filtered``),
        but ``skip``; an unreadable one is refused (it cannot be moved, nor told apart from a
        replica). ``top`` itself may be down: its replicas are then the ones the request's
        ``listed`` argument names (those topology-api knows) that still point at it."""
        known = _known(request.arguments.get(listed, ""))
        pattern = request.arguments.get("pattern", "") if filtered else ""
        try:
            named, _ = parse_replica_hosts(await links.rows(top, SHOW_REPLICA_HOSTS))
        except StatementFailed:
            named = []
        try:
            chosen = selected([*named, *known], pattern)
        except OperationRefused as exc:
            # the API answers a bad pattern 400 before sending anything: one arriving here
            # skipped that check (another signer, an older API), so it goes in the audit
            text = f"{request.operation} of {top}: {exc}"
            await self._mover.publish("pattern-refused", request, top, text, ok=False)
            raise
        servers: list[Server] = []
        for key in chosen:
            if key in skip or key == top:
                continue
            server = await read_server(links, key)
            if server.master == top:  # SHOW SLAVE HOSTS may still list one that moved away
                servers.append(server)
        return servers

    # --- moving --------------------------------------------------------------------------

    async def move_all(
        self,
        links: Links,
        request: CommandRequest,
        what: str,
        replicas: Sequence[Server],
        target: InstanceKey,
    ) -> list[InstanceKey]:
        """Validate all, then move each below ``target``; the keys moved (all of them)."""
        refused: list[str] = []
        valid: list[Server] = []
        for server in replicas:
            try:
                valid.append(await self._mover.validate(links, server.key, target))
            except OperationRefused as exc:
                refused.append(f"{server.key}: {exc}")
        if refused:
            raise OperationRefused(
                f"{what}: nothing moved: {len(refused)} of {len(replicas)} replicas cannot move "
                f"below {target}: {'; '.join(refused)}"
            )
        return await self.shift_all(links, request, what, valid, target)

    async def shift_all(
        self,
        links: Links,
        request: CommandRequest,
        what: str,
        valid: Sequence[Server],
        target: InstanceKey,
    ) -> list[InstanceKey]:
        moved: list[InstanceKey] = []
        for index, replica in enumerate(valid):
            try:
                await self._mover.shift(links, replica, target)
            except (MoveFailed, LeaseLost) as exc:
                failure = (
                    exc.text
                    if isinstance(exc, MoveFailed)
                    else f"the lease was lost before moving {replica.key} ({exc})"
                )
                lost = isinstance(exc, LeaseLost) or (
                    isinstance(exc, MoveFailed) and exc.lease_lost
                )
                rest = [s.key for s in valid[index + 1 :]]
                text = (
                    f"{what}: moved {len(moved)} of {len(valid)} below {target} "
                    f"({_names(moved)}), then {failure}; not tried: {_names(rest)}"
                )
                if moved or isinstance(exc, MoveFailed):
                    await self._mover.publish(
                        request.operation, request, replica.key, text, ok=False
                    )
                raise (LeaseLost(text) if lost else OperationRefused(text)) from None
            moved.append(replica.key)
        return moved

    async def _listing(self, links: Links, keys: Sequence[InstanceKey]) -> list[dict[str, Any]]:
        return [await self._mover.details(links, key) for key in keys]

    async def _done(
        self, request: CommandRequest, key: InstanceKey, text: str, message: str, details: object
    ) -> CommandReply:
        await self._mover.publish(request.operation, request, key, text, ok=True)
        return CommandReply(ok=True, operation=request.operation, message=message, details=details)

    # --- the operations ------------------------------------------------------------------

    async def relocate_replicas(self, request: CommandRequest, *, gtid: bool) -> CommandReply:
        top = instance_key(request.instance)
        below = instance_key(request.destination, "destination")
        if below == top:
            raise OperationRefused(
                f"cannot relocate the replicas of {top} below {top} itself (see repoint-replicas)"
            )
        async with self._mover.links() as links:
            await read_server(links, below)  # refused when unreachable, even with no replica
            replicas = await self.replicas(links, top, request, skip=frozenset({below}))
            moved = await self.move_all(links, request, request.operation, replicas, below)
            listing = await self._listing(links, moved)
        text = f"moved {len(moved)} replicas of {top} below {below}: {_names(moved)}"
        if gtid:
            message = f"Moved {len(moved)} replicas of {top} below {below} via GTID"
            return await self._done(request, top, text, message, key_json(below))
        message = f"Relocated {len(moved)} replicas of {top} below {below}"
        return await self._done(request, top, text, message, listing)

    async def move_up_replicas(self, request: CommandRequest) -> CommandReply:
        top = instance_key(request.instance)
        async with self._mover.links() as links:
            server = await read_server(links, top)
            if server.master is None:
                raise OperationRefused(f"{top} is not a replica: its replicas cannot move up")
            replicas = await self.replicas(links, top, request)
            moved = await self.move_all(links, request, "move-up-replicas", replicas, server.master)
            listing = await self._listing(links, moved)
        text = f"moved up {len(moved)} replicas of {top} below {server.master}: {_names(moved)}"
        message = f"Moved up {len(moved)} replicas of {top}"
        return await self._done(request, top, text, message, listing)

    async def repoint_replicas(self, request: CommandRequest) -> CommandReply:
        top = instance_key(request.instance)
        async with self._mover.links() as links:
            replicas = await self.replicas(links, top, request)
            moved = await self.move_all(links, request, "repoint-replicas", replicas, top)
            listing = await self._listing(links, moved)
        text = f"repointed {len(moved)} replicas of {top}: {_names(moved)}"
        message = f"Repointed {len(moved)} replicas of {top}"
        return await self._done(request, top, text, message, listing)

    async def take_siblings(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        async with self._mover.links() as links:
            server = await read_server(links, key)
            if server.master is None:
                raise OperationRefused(f"{key} is not a replica: it has no siblings")
            siblings = await self.replicas(
                links,
                server.master,
                request,
                listed="siblings",
                filtered=False,
                skip=frozenset({key}),
            )
            moved = await self.move_all(links, request, "take-siblings", siblings, key)
            details = await self._mover.details(links, key)
        text = f"{key} took {len(moved)} siblings: {_names(moved)}"
        return await self._done(request, key, text, f"Took {len(moved)} siblings of {key}", details)

    async def regroup(self, request: CommandRequest) -> CommandReply:
        top = instance_key(request.instance)
        async with self._mover.links() as links:
            replicas = await self.replicas(links, top, request, filtered=False)
            if not replicas:
                raise OperationRefused(f"{top} has no replicas to regroup")
            choice = choose_promoted(replicas)
            promoted = choice.promoted
            if promoted is None:
                reasons = "; ".join(f"{k}: {why}" for k, why in choice.passed_over.items())
                raise OperationRefused(f"no replica of {top} can take its siblings: {reasons}")
            movable: list[Server] = []
            lost: list[str] = []
            for server in replicas:
                if server.key == promoted.key:
                    continue
                try:
                    movable.append(await self._mover.validate(links, server.key, promoted.key))
                except OperationRefused as exc:
                    lost.append(f"{server.key}: {exc}")
            what = f"regroup-replicas of {top} (promoted {promoted.key})"
            moved = await self.shift_all(links, request, what, movable, promoted.key)
            details = await self._mover.details(links, promoted.key)
        text = (
            f"promoted {promoted.key} among the replicas of {top}; moved: {_names(moved)}; "
            f"lost: {'; '.join(lost) or 'none'}"
        )
        message = f"promoted replica: {promoted.key}, lost: {len(lost)}, moved: {len(moved)}"
        return await self._done(request, top, text, message, details)

    async def take_master(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        async with self._mover.links() as links:
            instance = await read_server(links, key)
            if instance.master is None:
                raise OperationRefused(f"{key} is not a replica")
            master = await read_server(links, instance.master)
            why = take_master_refusal(instance, master, max_lag=self._mover.max_lag)
            if why is not None:
                raise OperationRefused(why)
            assert master.master is not None
            grand = master.master
            first = await self._mover.validate(links, key, grand)
            try:
                await self._mover.shift(links, first, grand)
            except MoveFailed as exc:
                await self._mover.publish("take-master", request, key, exc.text, ok=False)
                raise exc.error() from None
            try:
                second = await self._mover.validate(links, master.key, key)
                await self._mover.shift(links, second, key)
            except (OperationRefused, MoveFailed, LeaseLost) as exc:
                text = await self._undo_take(links, key, master.key, grand, exc)
                await self._mover.publish("take-master", request, key, text, ok=False)
                lost = isinstance(exc, LeaseLost) or (
                    isinstance(exc, MoveFailed) and exc.lease_lost
                )
                raise (LeaseLost(text) if lost else OperationRefused(text)) from None
            details = await self._mover.details(links, key)
        text = f"{key} took its master {master.key}: now below {grand}, {master.key} below it"
        reply = await self._done(request, key, text, f"{key} took its master", details)
        if self._after_take_master is not None:
            await self._after_take_master(key, master.key, request.cluster)
        return reply

    async def _undo_take(
        self,
        links: Links,
        key: InstanceKey,
        master: InstanceKey,
        grand: InstanceKey,
        failure: Exception,
    ) -> str:
        """After ``key`` moved below ``grand`` but ``master`` could not move below it: ``key``
        back below ``master`` (``master`` was restored below ``grand`` by its own move)."""
        head = f"take-master: {key} moved below {grand}, then moving {master} below it failed: "
        head += failure.text if isinstance(failure, MoveFailed) else str(failure)
        if isinstance(failure, LeaseLost) or (
            isinstance(failure, MoveFailed) and failure.lease_lost
        ):
            return f"{head}; lease lost: {key} left below {grand}"
        try:
            back = await self._mover.validate(links, key, master)
            await self._mover.shift(links, back, master)
        except (OperationRefused, MoveFailed, LeaseLost) as exc:
            shown = exc.text if isinstance(exc, MoveFailed) else str(exc)
            return f"{head}; moving {key} back below {master} failed too: {shown}"
        return f"{head}; {key} moved back below {master}"

    # --- handlers ------------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        async def relocate(request: CommandRequest) -> CommandReply:
            return await self.relocate_replicas(request, gtid=False)

        async def gtid(request: CommandRequest) -> CommandReply:
            return await self.relocate_replicas(request, gtid=True)

        return {
            "relocate-replicas": relocate,
            "move-replicas-gtid": gtid,
            "move-up-replicas": self.move_up_replicas,
            "repoint-replicas": self.repoint_replicas,
            "take-siblings": self.take_siblings,
            "regroup-replicas": self.regroup,
            "regroup-replicas-gtid": self.regroup,
            "take-master": self.take_master,
            "make-co-master": self._co_master.make,
        }
