"""Errant GTIDs on MariaDB (issue 6): ``locate-gtid-errant``, ``gtid-errant-reset-master`` and
``gtid-errant-inject-empty``.

The errant transactions of an instance are those of its binary log that its (direct) master
does not have and that no server up the chain wrote (see
:mod:`orchestrator_recovery.operations.control_sql`). The master's position is read after the
instance's, so a transaction the master gained meanwhile is not taken for errant.

- ``locate-gtid-errant``: the binary logs holding them, oldest first. Files are read newest
  first; each file's ``Gtid_list`` event (the binlog state before it) says whether an older
  file can hold any. Each file is read in pages (``SHOW BINLOG EVENTS ... FROM ... LIMIT``), at
  most ``MAX_BINLOG_EVENTS`` events in all (then refused, saying so). Refused when there is
  none, or when some were purged already.
- ``gtid-errant-reset-master``: refused when there is none, or when the instance has replicas
  (``SHOW SLAVE HOSTS``, and the ones topology-api knows: ``arguments["replicas"]``), as
  orchestrator ("will not operate on ..."). Then replication is stopped, ``RESET MASTER``, and
  ``SET GLOBAL gtid_binlog_state`` to the former state without the errant GTIDs (MariaDB's
  counterpart of orchestrator's ``gtid_purged``). ``gtid_slave_pos`` is kept (it is checked and
  set back if it moved), the errant set is checked empty, replication started again as it was.
  The errant transactions' *data* stays: only their GTIDs are forgotten.
- ``gtid-errant-inject-empty``: on the cluster master (the top of the instance's chain, which
  must be writeable), one binlogged statement that changes nothing per errant GTID, under that
  exact GTID (session ``gtid_domain_id``, ``server_id``, ``gtid_seq_no``). The master then has
  them: every replica applies the no-op, and the errant instance skips them as its own
  (``replicate_same_server_id`` off) while its ``gtid_slave_pos`` moves past them. An errant
  GTID that *diverged* (the master already used its sequence number) cannot be injected under
  ``gtid_strict_mode``: refused, nothing is injected. The answer waits (bounded) for the instance
  to see no errant GTID and to replicate without error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import (
    Body,
    Operator,
    Outcome,
    Steps,
    instance_key,
    key_json,
)
from orchestrator_recovery.operations.binlog import replica_needs
from orchestrator_recovery.operations.control_sql import (
    SHOW_ALL_REPLICAS_STATUS,
    SHOW_BINARY_LOGS,
    SHOW_REPLICA_HOSTS,
    Replication,
    parse_binary_logs,
    parse_replica_hosts,
    parse_replication,
    thread_statements,
)
from orchestrator_recovery.operations.errant_sql import (
    GTID_SQL,
    RESET_MASTER,
    GtidState,
    Row,
    binlog_events_sql,
    errant_position,
    gtid_list_of,
    gtid_of_event,
    inject_refusal,
    inject_sql,
    is_errant,
    next_page_start,
    not_logged,
    parse_gtid_state,
    state_without,
    would_break,
)
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.sql import quote
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import InvalidGtid, OperationRefused, StepFailed
from orchestrator_shared.gtid import MariaGtid, MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey

MAX_CHAIN = 16  # masters followed up looking for the cluster master
MAX_MEMBERS = 256  # servers of a cluster checked before injecting
BINLOG_PAGE = 10_000  # events per SHOW BINLOG EVENTS statement
MAX_BINLOG_EVENTS = 5_000_000  # events one locate-gtid-errant reads at most, over all files
CONVERGE = 10.0  # seconds for the instance to see its errant GTIDs on its master after injecting
POLL = 0.1


@dataclass(frozen=True, slots=True)
class Errant:
    """An instance, its replication, its chain of masters and its errant GTIDs."""

    key: InstanceKey
    state: GtidState
    replication: Replication | None
    chain: tuple[tuple[InstanceKey, GtidState], ...]  # its master first, the cluster master last
    upstream: frozenset[int]
    position: MariaGtidPosition  # the errant last GTID of each domain; empty: none

    @property
    def master(self) -> GtidState | None:
        return self.chain[0][1] if self.chain else None


async def _gtid_state(links: Links, key: InstanceKey) -> GtidState:
    try:
        return parse_gtid_state(await links.rows(key, GTID_SQL))
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read {key}: {exc.message}") from None
    except InvalidGtid as exc:
        raise OperationRefused(f"{key}: {exc}") from None


async def _replication(links: Links, key: InstanceKey) -> Replication | None:
    try:
        return parse_replication(await links.rows(key, SHOW_ALL_REPLICAS_STATUS))
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read {key}: {exc.message}") from None


def _master_key(replication: Replication) -> InstanceKey | None:
    if replication.detached:
        return None
    try:
        return InstanceKey(host=replication.master_host, port=replication.master_port)
    except ValueError:
        return None


async def find_errant(links: Links, key: InstanceKey) -> Errant:
    """Read the instance, then its masters up to the cluster master; OperationRefused when one
    cannot be read or the instance is not MariaDB."""
    state = await _gtid_state(links, key)
    if not state.is_mariadb:
        raise OperationRefused(f"{key} is not MariaDB: errant GTIDs are handled for MariaDB here")
    replication = await _replication(links, key)
    chain: list[tuple[InstanceKey, GtidState]] = []
    current = replication
    while current is not None and len(chain) < MAX_CHAIN:
        master = _master_key(current)
        if master is None:
            raise OperationRefused(f"{key}: master host {current.master_host} cannot be read")
        if master == key or any(master == seen for seen, _ in chain):
            break  # a co-master ring: the last one read stands for the top
        chain.append((master, await _gtid_state(links, master)))
        current = await _replication(links, master)
    upstream = frozenset(server.server_id for _, server in chain)
    position = MariaGtidPosition()
    if chain:
        position = errant_position(state.binlog, chain[0][1].binlog, upstream)
    return Errant(key, state, replication, tuple(chain), upstream, position)


@dataclass(frozen=True, slots=True)
class Located:
    files: tuple[str, ...]  # holding errant transactions, oldest first
    gtids: tuple[MariaGtid, ...]  # every errant GTID found, in binlog order
    purged: bool  # some were in binary logs that are gone


async def locate(links: Links, errant: Errant) -> Located:
    master = errant.master
    if master is None or not errant.position:
        return Located((), (), purged=False)
    key = errant.key
    try:
        logs = parse_binary_logs(await links.rows(key, SHOW_BINARY_LOGS))
        files: list[str] = []
        found: list[list[MariaGtid]] = []
        purged = False
        budget = _EventBudget(MAX_BINLOG_EVENTS)
        for index in range(len(logs) - 1, -1, -1):
            gtids: list[MariaGtid] = []
            before: tuple[MariaGtid, ...] | None = None
            async for rows in _binlog_pages(links, key, logs[index], budget):
                if before is None:
                    before = gtid_list_of(rows[:5]) or ()
                gtids.extend(
                    gtid
                    for row in rows
                    if (gtid := gtid_of_event(row)) is not None
                    and is_errant(gtid, master.binlog, errant.upstream)
                )
            if gtids:
                files.insert(0, logs[index])
                found.insert(0, gtids)
            if not any(is_errant(g, master.binlog, errant.upstream) for g in before or ()):
                break
            purged = index == 0
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read the binary logs of {key}: {exc.message}") from None
    except InvalidGtid as exc:
        raise OperationRefused(f"{key}: {exc}") from None
    return Located(tuple(files), tuple(g for group in found for g in group), purged)


@dataclass(slots=True)
class _EventBudget:
    """How many more binary log events one ``locate-gtid-errant`` may read."""

    left: int


async def _binlog_pages(
    links: Links, key: InstanceKey, name: str, budget: _EventBudget
) -> AsyncIterator[Sequence[Row]]:
    """The events of binary log ``name``, ``BINLOG_PAGE`` at a time, so neither the recovery
    worker's memory nor one statement's time grows with the file. OperationRefused once the
    operation read ``MAX_BINLOG_EVENTS`` in all: the answer says so rather than running on."""
    start: int | None = None
    while True:
        rows = await links.rows(key, binlog_events_sql(name, limit=BINLOG_PAGE, start=start))
        budget.left -= len(rows)
        if budget.left < 0:
            raise OperationRefused(
                f"{key}: stopped after reading {MAX_BINLOG_EVENTS} binary log events "
                f"(in {name}); purge old binary logs or look with mysqlbinlog"
            )
        if rows:
            yield rows
        following = next_page_start(rows)
        if len(rows) < BINLOG_PAGE or following is None or (start or 0) >= following:
            return
        start = following


async def cluster_members(links: Links, top: InstanceKey, errant: InstanceKey) -> list[InstanceKey]:
    """The servers below ``top`` (``SHOW SLAVE HOSTS``, level by level), leaving out
    ``errant`` and its own replicas (they replicate from it, not from what the master logs).
    OperationRefused when one does not name itself (``report_host``): it could not be
    checked."""
    members: list[InstanceKey] = []
    level = [top]
    while level and len(members) < MAX_MEMBERS:
        below: list[InstanceKey] = []
        for server in level:
            try:
                named, unnamed = parse_replica_hosts(await links.rows(server, SHOW_REPLICA_HOSTS))
            except StatementFailed as exc:
                raise OperationRefused(f"cannot read {server}: {exc.message}") from None
            if unnamed:
                raise OperationRefused(
                    f"replica server_id {unnamed[0]} of {server} sets no report_host: "
                    "it cannot be checked"
                )
            below += [key for key in named if key != errant and key not in members and key != top]
        members += below
        level = below
    return members


def _no_errant(operation: str, key: InstanceKey) -> OperationRefused:
    return OperationRefused(
        f"{operation} will not operate on {key} because no errant GTID is found"
    )


class ErrantGtids:
    def __init__(self, operator: Operator, *, converge: float = CONVERGE) -> None:
        self._op = operator
        self._converge = converge

    # --- locate ---------------------------------------------------------------------------

    async def locate(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        async with self._op.links() as links:
            errant = await find_errant(links, key)
            if not errant.position:
                raise OperationRefused(f"locate-errant-gtid: no errant-gtid on {key}")
            located = await locate(links, errant)
        if located.purged or not located.files:
            raise OperationRefused(
                f"locate-errant-gtid: errant GTIDs {errant.position} of {key} are already "
                "purged from its binary logs"
            )
        return CommandReply(
            ok=True,
            operation=request.operation,
            message="located errant GTID",
            details=list(located.files),
        )

    # --- reset master ---------------------------------------------------------------------

    def reset_master(self, known: list[InstanceKey]) -> Body:
        name = "gtid-errant-reset-master"

        async def body(links: Links, key: InstanceKey, steps: Steps) -> Outcome:
            errant = await find_errant(links, key)
            if not errant.position:
                raise _no_errant(name, key)
            replicas = await replica_needs(links, key, known)
            if replicas:
                raise OperationRefused(
                    f"{name} will not operate on {key} because it has {len(replicas)} "
                    f"replicas ({', '.join(sorted(replicas))}). Expecting no replicas"
                )
            master = errant.master
            assert master is not None
            state = state_without(
                errant.state.state, master.binlog, errant.upstream, errant.state.applied
            )
            stops: tuple[str, ...] = ()
            starts: tuple[str, ...] = ()
            if errant.replication is not None:
                stops, starts = thread_statements(errant.replication)
            for sql in stops:
                await steps.send(key, sql)
            steps.undo_with(key, starts)
            await steps.send(key, RESET_MASTER)
            await steps.send(key, f"SET GLOBAL gtid_binlog_state = {quote(state)}")
            after = await _gtid_state(links, key)
            if after.applied != errant.state.applied:
                await steps.send(
                    key, f"SET GLOBAL gtid_slave_pos = {quote(str(errant.state.applied))}"
                )
            left = errant_position(after.binlog, master.binlog, errant.upstream)
            if left:
                raise StepFailed(f"errant GTIDs still found after RESET MASTER: {left}")
            for sql in starts:
                await steps.send(key, sql)
            return Outcome(
                f"Removed errant GTID on {key} and issued a RESET MASTER",
                f"{key} master reset: errant {errant.position} removed, gtid_binlog_state "
                f"{state or 'empty'}, gtid_slave_pos {errant.state.applied or 'empty'} kept",
            )

        return body

    # --- inject empty ---------------------------------------------------------------------

    async def inject(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        name = "gtid-errant-inject-empty"
        errant = await find_errant(links, key)
        if not errant.position:
            raise _no_errant(name, key)
        top_key, top = errant.chain[-1]
        located = await locate(links, errant)
        gtids = {(g.domain_id, g.seq_no): g for g in (*located.gtids, *errant.position.values())}
        ordered = [gtids[number] for number in sorted(gtids)]
        why = inject_refusal(ordered, top)
        if why is not None:
            raise OperationRefused(f"{name} will not operate on {key}: {why}")
        members = await cluster_members(links, top_key, key)
        for member in members:
            why = would_break(ordered, await _gtid_state(links, member))
            if why is not None:
                raise OperationRefused(f"{name} will not operate on {key}: {member} {why}")
        injected: list[str] = []
        try:
            for gtid in ordered:
                for sql in inject_sql(gtid):
                    await steps.send(top_key, sql)
                injected.append(str(gtid))
        except StepFailed as exc:
            raise StepFailed(
                f"injected {len(injected)} of {len(ordered)} on {top_key}: {exc}"
            ) from None
        missing = not_logged(ordered, (await _gtid_state(links, top_key)).state)
        if missing:
            raise StepFailed(
                f"{top_key} did not log {', '.join(map(str, missing))} as injected (its "
                "session was lost?)"
            )
        await self._converged(links, key, members)
        return Outcome(
            f"Have injected {len(injected)} transactions on cluster master {top_key}",
            f"injected {len(injected)} empty transactions on {top_key} ({', '.join(injected)}) "
            f"for the errant GTIDs of {key}",
        )

    async def _converged(self, links: Links, key: InstanceKey, members: list[InstanceKey]) -> None:
        """Wait for the instance to have no errant GTID, and for it and the other members of
        the cluster to replicate without error."""
        deadline = time.monotonic() + self._converge
        while True:
            errant = await find_errant(links, key)
            broken = [
                f"{server}: {replication.last_sql_error or replication.last_io_error}"
                for server in [key, *members]
                if (replication := await _replication(links, server)) is not None
                and (replication.last_sql_errno or replication.last_io_error)
            ]
            if not errant.position and not broken:
                return
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"after {self._converge:g}s {key} has errant {errant.position or 'none'}; "
                    f"replication errors: {'; '.join(broken) or 'none'}"
                )
            await asyncio.sleep(POLL)

    # --- handlers -------------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        op = self._op

        async def reset_master(request: CommandRequest) -> CommandReply:
            known = [
                instance_key(part.strip(), "replica")
                for part in request.arguments.get("replicas", "").split(",")
                if part.strip()
            ]
            reply = await op.run("gtid-errant-reset-master", request, self.reset_master(known))
            return await self._with_errant(reply, request)

        async def inject(request: CommandRequest) -> CommandReply:
            reply = await op.run("gtid-errant-inject-empty", request, self.inject)
            return await self._with_errant(reply, request)

        return {
            "locate-gtid-errant": self.locate,
            "gtid-errant-reset-master": reset_master,
            "gtid-errant-inject-empty": inject,
        }

    async def _with_errant(self, reply: CommandReply, request: CommandRequest) -> CommandReply:
        """The answer's instance with ``GtidErrant`` as read now (empty once cleared)."""
        key = instance_key(request.instance)
        async with self._op.links() as links:
            after = await find_errant(links, key)
        details = dict(reply.details) if isinstance(reply.details, dict) else {"Key": key_json(key)}
        details["GtidErrant"] = str(after.position)
        return reply.model_copy(update={"details": details})
