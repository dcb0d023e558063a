"""Executing a failover against MySQL/MariaDB: fence, stop, catch up, promote, repoint, verify.

The plan (who failed, who is promoted, who moves) is decided elsewhere; this module carries
it out, fast and safely, and says exactly what it did. ``docs/recovery-execution.md``
describes the steps, what each guards against, and the timeouts.

Fencing (DESIGN.md §3): ``guard()`` is awaited immediately before every statement that
changes a server (read_only, KILL, STOP/START SLAVE, CHANGE MASTER, RESET SLAVE ALL). When it
raises :class:`~orchestrator_shared.errors.LeaseLost` nothing else is sent: concurrent steps
are cancelled and the ``LeaseLost`` itself propagates. The steps done until then are in the
:class:`StepJournal` the caller may pass in.

Errors: a refusal before anything was promoted is :class:`FailoverRefused` (an
``OperationRefused``) carrying the reason and the steps. A replica that cannot follow is
not an error: it is detached and reported in ``outcome.lost``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from orchestrator_adapters.ports import Guard
from orchestrator_recovery import sql
from orchestrator_recovery.failover.catch_up import CatchUpPolicy, bring_up_to_date
from orchestrator_recovery.failover.catch_up import StepRefused as _Refusal
from orchestrator_recovery.failover.outcome import (
    Action,
    FailoverOutcome,
    FailoverRefused,
    FenceOutcome,
    RelocationOutcome,
    StepJournal,
    StepNote,
)
from orchestrator_recovery.failover.timeouts import DEFAULT_TIMEOUTS, Timeouts
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.sql import Check, Dialect, Positions, Progress, ReplicaStatus
from orchestrator_shared.errors import LeaseLost, OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

__all__ = [
    "Guard",
    "Timeouts",
    "fail_over_master",
    "fence_returning_master",
    "relocate_replicas",
]


STOP_IO_GRACE = 3.0
"""How long a timed-out STOP SLAVE IO_THREAD may take to stop the IO thread (see ``stop_io``)."""

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class _Fence:
    fenced: bool
    detail: str
    final_position: str | None  # the old master's last GTID position, once fenced


async def _all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; results in order. A ``LeaseLost`` in any cancels the others and
    propagates as itself (not wrapped in an ExceptionGroup)."""
    pending = list(coroutines)
    if not pending:
        return []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in pending]
    except BaseExceptionGroup as errors:
        lease, _ = errors.split(LeaseLost)
        if lease is not None:
            raise _first_leaf(lease) from None
        raise
    return [task.result() for task in tasks]


async def _alongside(
    first: Coroutine[Any, Any, T], others: list[Coroutine[Any, Any, U]]
) -> tuple[T, list[U]]:
    """``first`` concurrently with ``others`` (as :func:`_all`)."""

    async def rest() -> list[U]:
        return await _all(others)

    together: list[Any] = await _all([first, rest()])
    return together[0], together[1]


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class _Executor:
    """The statements of one recovery, each recorded, each destructive one guarded."""

    def __init__(
        self,
        links: Links,
        *,
        guard: Guard,
        journal: StepJournal,
        dialect: Dialect,
        access: MySQLAccess,
        timeouts: Timeouts,
    ) -> None:
        self.links = links
        self.guard = guard
        self.journal = journal
        self.dialect = dialect
        self.access = access
        self.timeouts = timeouts
        self.poll = timeouts.poll

    async def change(
        self, key: InstanceKey, statement: str, *, within: float | None = None
    ) -> None:
        """A destructive statement: the guard first, then the statement, nothing between, and
        the statement bounded by the lease the guard confirmed (:meth:`Links.fenced`)."""
        await self.links.fenced(key, statement, self.guard, within=within)

    def step(self, key: InstanceKey, action: Action) -> AbstractContextManager[StepNote]:
        return self.journal.step(key, action)

    async def status(self, key: InstanceKey) -> ReplicaStatus | None:
        return sql.parse_replica_status(await self.links.rows(key, self.dialect.replica_status_sql))

    async def positions(self, key: InstanceKey) -> Positions:
        return sql.parse_positions(await self.links.rows(key, self.dialect.positions_sql))

    # --- 1. fencing --------------------------------------------------------------------------

    async def fence(self, key: InstanceKey, within: float) -> _Fence:
        """read_only=1, client connections killed, last position read; all in ``within`` seconds
        (a dead or hung server is "unreachable", not an error).

        ``SET GLOBAL read_only=1`` waits for sessions holding table locks or running writes.
        If it has not returned within half the time, it is stopped (a fenced statement ends at
        its bound), those sessions are killed and read_only=1 is set again with the time left.
        """
        deadline = time.monotonic() + within

        def left() -> float:
            return max(deadline - time.monotonic(), 0.001)

        with self.journal.step(key, Action.FENCE) as note:
            try:
                await self.links.connect(key, within=left())
            except StatementFailed as error:
                note.ok, note.detail = False, f"unreachable: {error.message}"
                return _Fence(False, note.detail, None)
            read_only = await self._set_read_only(key, within=left() / 2)
            note.ok, note.detail = read_only is None, read_only or "read_only=1"
        await self._kill_clients(key, within=left)
        if read_only is not None:
            with self.journal.step(key, Action.FENCE) as note:
                read_only = await self._set_read_only(key, within=left())
                note.ok, note.detail = read_only is None, read_only or "read_only=1 (retried)"
            if read_only is not None:
                return _Fence(False, read_only, None)
        try:
            rows = await self.links.rows(key, self.dialect.positions_sql, within=left())
            final = sql.parse_positions(rows).binlog or None
        except StatementFailed:
            final = None
        return _Fence(True, f"fenced at {final or 'unknown position'}", final)

    async def _set_read_only(self, key: InstanceKey, *, within: float) -> str | None:
        """None once read_only=1 is set, else why not."""
        try:
            await self.change(key, self.dialect.set_read_only_sql, within=within)
        except StatementFailed as error:
            return f"read_only=1 failed: {error.message}"
        return None

    async def _kill_clients(self, key: InstanceKey, *, within: Callable[[], float]) -> None:
        with self.journal.step(key, Action.KILL_CLIENTS) as note:
            try:
                rows = await self.links.rows(key, sql.PROCESSLIST_SQL, within=within())
                killed = 0
                for connection_id in sql.client_connection_ids(rows):
                    try:
                        await self.change(key, Dialect.kill_sql(connection_id), within=within())
                        killed += 1
                    except StatementFailed as error:
                        if error.errno != sql.UNKNOWN_THREAD_ERRNO:
                            raise
                note.detail = f"killed {killed} client connection(s)"
            except StatementFailed as error:
                note.ok, note.detail = False, f"killing clients failed: {error.message}"

    # --- 2. stopping replication -------------------------------------------------------------

    async def stop_io(self, key: InstanceKey) -> str | None:
        """Stop the IO thread; None, or why it could not be stopped."""
        with self.journal.step(key, Action.STOP_IO) as note:
            try:
                await self.change(key, self.dialect.stop_io_sql)
            except StatementFailed as error:
                if not (error.timed_out and await self._io_stopped_late(key)):
                    note.ok, note.detail = False, error.message
                    return f"could not stop replication: {error.message}"
                note.detail = f"{error.message}, then the IO thread stopped"
        return None

    async def _io_stopped_late(self, key: InstanceKey) -> bool:
        """Whether a timed-out STOP SLAVE IO_THREAD still stops the IO thread (within
        ``STOP_IO_GRACE``).

        A semi-sync replica's STOP first opens a connection to its master to end its binlog
        dump there; a master that accepts connections but never answers (a network partition,
        a blackhole) holds the statement for MariaDB's 2 s handshake timeout, longer than a
        step. The statement goes on on the server: wait for it instead of refusing a failover
        whose successor would be fine a moment later.
        """
        deadline = time.monotonic() + STOP_IO_GRACE
        while time.monotonic() < deadline:
            with suppress(StatementFailed):
                status = await self.status(key)
                if status is None or status.io_running == "No":
                    return True
            await asyncio.sleep(self.poll)
        return False

    # --- 3. the successor catches up -----------------------------------------------------------

    async def poll_status(
        self,
        key: InstanceKey,
        decide: Callable[[ReplicaStatus], Check],
        deadline: float,
    ) -> Check:
        while True:
            status = await self.status(key)
            if status is None:
                return Check.failed("has no replication configured")
            check = decide(status)
            if check.progress is not Progress.WAITING:
                return check
            if time.monotonic() >= deadline:
                return check
            await asyncio.sleep(self.poll)

    async def catch_up(
        self, successor: InstanceKey, final_position: str | None, policy: CatchUpPolicy
    ) -> None:
        """Bring the successor to the end of what it received, then stop its replication
        (:func:`~orchestrator_recovery.failover.catch_up.bring_up_to_date`). Raises
        :class:`_Refusal` when ``policy`` says it cannot be promoted."""
        await bring_up_to_date(self, successor, final_position, policy)

    # --- 4. promotion --------------------------------------------------------------------------

    async def promote(
        self, successor: InstanceKey, *, semi_sync: bool, writable: bool
    ) -> Positions:
        """RESET SLAVE ALL, semi-sync master on if asked, read_only=0 if ``writable``; the
        successor's GTID position at promotion (before any new write)."""
        try:
            with self.journal.step(successor, Action.RESET_REPLICATION):
                await self.change(successor, self.dialect.reset_replication_sql)
            if semi_sync:
                with self.journal.step(successor, Action.SEMI_SYNC_MASTER):
                    await self.change(successor, self.dialect.semi_sync_master_on_sql)
            positions = await self.positions(successor)
            if writable:
                await self.set_writable(successor)
        except StatementFailed as error:
            raise _Refusal(f"promotion of the successor failed: {error}") from None
        return positions

    async def leave_promotion(self, successor: InstanceKey) -> Positions:
        """``ApplyMySQLPromotionAfterMasterFailover=false``: no RESET SLAVE ALL, no read_only=0;
        the successor's GTID position (what its new replicas are checked against)."""
        with self.journal.step(successor, Action.PROMOTION_LEFT) as note:
            note.detail = (
                "ApplyMySQLPromotionAfterMasterFailover=false: replication left stopped (not "
                "reset), read_only left on, for the operator's hooks"
            )
            try:
                return await self.positions(successor)
            except StatementFailed as error:
                note.ok = False
                raise _Refusal(f"the successor could not be read: {error}") from None

    async def set_writable(self, successor: InstanceKey) -> None:
        with self.journal.step(successor, Action.SET_WRITABLE) as note:
            await self.change(successor, self.dialect.set_writable_sql)
            note.detail = "read_only=0"

    # --- 5+6. moving a replica -----------------------------------------------------------------

    async def move(
        self,
        replica: InstanceKey,
        master: InstanceKey,
        *,
        master_positions: Positions | None,
        wait_for_master: float,
    ) -> str | None:
        """Repoint ``replica`` under ``master`` with GTID and verify it follows; None, or why
        it was lost (it is then left with replication stopped: detached)."""
        dialect = self.dialect
        try:
            with self.journal.step(replica, Action.STOP_REPLICATION):
                await self.change(replica, dialect.stop_replication_sql)
        except StatementFailed as error:
            return f"unreachable: {error.message}"
        try:
            reason = await self._check_position(replica, master, master_positions, wait_for_master)
            if reason is not None:
                await self._detach(replica, reason, already_stopped=True)
                return reason
            change = dialect.change_master_sql(
                master, user=self.access.replication_user, password=self.access.replication_password
            )
            with self.journal.step(replica, Action.CHANGE_MASTER) as note:
                await self.change(replica, change)
                note.detail = f"to {master}"
            with self.journal.step(replica, Action.START_REPLICATION):
                await self.change(replica, dialect.start_replication_sql)
            with self.journal.step(replica, Action.VERIFY) as note:
                check = await self.poll_status(
                    replica,
                    lambda status: sql.following_check(status, master),
                    time.monotonic() + self.timeouts.verify,
                )
                note.ok, note.detail = check.progress is Progress.DONE, check.detail
        except StatementFailed as error:
            reason = f"{error.statement}: {error.message}"
            await self._detach(replica, reason, already_stopped=False)
            return reason
        if check.progress is Progress.DONE:
            return None
        reason = check.detail
        if check.progress is Progress.WAITING:
            within = self.timeouts.verify
            reason = f"not replicating from {master} within {within:g}s: {check.detail}"
        await self._detach(replica, reason, already_stopped=False)
        return reason

    async def _check_position(
        self,
        replica: InstanceKey,
        master: InstanceKey,
        master_positions: Positions | None,
        wait: float,
    ) -> str | None:
        deadline = time.monotonic() + wait
        with self.journal.step(replica, Action.CHECK_POSITION) as note:
            mine = await self.positions(replica)
            while True:
                theirs = master_positions or await self.positions(master)
                reason = sql.missing_on_master(self.dialect, mine, theirs)
                if reason is None or master_positions is not None:
                    break
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.poll)
            note.ok = reason is None
            note.detail = reason or f"at {mine.binlog or mine.applied}: {master} has all of it"
        return reason

    async def _detach(self, replica: InstanceKey, reason: str, *, already_stopped: bool) -> None:
        """Leave a replica that cannot follow with replication stopped (and read_only as it
        is), so that it is visibly detached rather than silently broken."""
        with self.journal.step(replica, Action.DETACH) as note:
            note.detail = f"replication stopped, read_only untouched: {reason}"
            if already_stopped:
                return
            try:
                await self.change(replica, self.dialect.stop_replication_sql)
            except StatementFailed as error:
                note.ok, note.detail = False, f"could not stop replication: {error.message}"

    # --- after a refusal -----------------------------------------------------------------------

    async def restore(self, keys: Iterable[InstanceKey]) -> None:
        """START SLAVE where replication was stopped, so nothing is left half-done."""

        async def restart(key: InstanceKey) -> None:
            with self.journal.step(key, Action.RESTORE) as note:
                try:
                    await self.change(key, self.dialect.start_replication_sql)
                except StatementFailed as error:
                    note.ok, note.detail = False, error.message

        await _all(restart(key) for key in keys)


@asynccontextmanager
async def _executing(
    session: MySQLAccess, guard: Guard, journal: StepJournal, flavor: Flavor, timeouts: Timeouts
) -> AsyncIterator[_Executor]:
    """The statements of one entry point: its links (each statement bounded by
    ``timeouts.step``) open while it runs."""
    async with Links(session, statement_timeout=timeouts.step) as links:
        yield _Executor(
            links,
            guard=guard,
            journal=journal,
            dialect=Dialect(flavor),
            access=session,
            timeouts=timeouts,
        )


def _check_keys(
    failed: InstanceKey, successor: InstanceKey, repoint: Sequence[InstanceKey]
) -> None:
    if successor == failed:
        raise OperationRefused(f"the successor {successor} is the failed master")
    if successor in repoint or failed in repoint:
        raise OperationRefused("repoint must name neither the failed master nor the successor")
    if len(set(repoint)) != len(repoint):
        raise OperationRefused("repoint names a replica twice")


async def fail_over_master(
    *,
    failed: InstanceKey,
    successor: InstanceKey,
    repoint: Sequence[InstanceKey],
    guard: Guard,
    session: MySQLAccess,
    semi_sync_master: bool = False,
    catch_up: CatchUpPolicy | None = None,
    apply_promotion: bool = True,
    postpone: Sequence[InstanceKey] = (),
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    flavor: Flavor = Flavor.MARIADB,
    journal: StepJournal | None = None,
) -> FailoverOutcome:
    """Promote ``successor`` in place of ``failed`` and move ``repoint`` under it.

    1. fence the old master if it answers within ``timeouts.fence`` (read_only=1, client
       connections killed, its last GTID position read), concurrently with
    2. stopping the IO thread of every replica in ``repoint`` and ``postpone``;
    3. the successor: receive the fenced master's last position (if known), stop its IO
       thread, apply its relay log as ``catch_up`` says (default: within
       ``timeouts.catch_up``; :mod:`~orchestrator_recovery.failover.catch_up`), starting its SQL
       thread if it was stopped, stop replication. If it cannot: :class:`FailoverRefused`, after
       ``START SLAVE`` wherever replication was stopped; nothing is promoted;
    4. promote: RESET SLAVE ALL, semi-sync master on if ``semi_sync_master``, read_only=0
       (with semi-sync: only once the replicas have been moved, so that the first writes
       have semi-sync replicas to acknowledge them). With ``apply_promotion=False``
       (``ApplyMySQLPromotionAfterMasterFailover``) none of this: the successor stays
       read_only with its replication stopped, for the operator's hooks to promote;
    5. 6. move each replica of ``repoint`` concurrently (GTID) and verify it replicates within
       ``timeouts.verify``; one that cannot follow is detached and reported in ``lost``.

    The ``postpone`` replicas (``PostponeReplicaRecoveryOnLagMinutes``) are left with their IO
    thread stopped, in ``outcome.postponed``: move them afterwards with
    :func:`relocate_replicas`. ``LeaseLost`` from ``guard`` stops everything at once and
    propagates; ``journal`` (if given) then holds the steps done.
    """
    _check_keys(failed, successor, [*repoint, *postpone])
    policy = catch_up if catch_up is not None else CatchUpPolicy(timeout=timeouts.catch_up)
    journal = journal if journal is not None else StepJournal()
    started = time.monotonic()
    lost: dict[InstanceKey, str] = {}
    async with _executing(session, guard, journal, flavor, timeouts) as run:
        everyone = [*repoint, *postpone]
        fence, stops = await _alongside(
            run.fence(failed, timeouts.fence), [run.stop_io(replica) for replica in everyone]
        )
        stopped: list[InstanceKey] = []
        for replica, problem in zip(everyone, stops, strict=True):
            if problem is None:
                stopped.append(replica)
            else:
                lost[replica] = str(problem)
        try:
            await run.catch_up(successor, fence.final_position, policy)
            if apply_promotion:
                positions = await run.promote(
                    successor, semi_sync=semi_sync_master, writable=not semi_sync_master
                )
            else:
                positions = await run.leave_promotion(successor)
        except _Refusal as refusal:
            await run.restore([*stopped, successor])
            raise FailoverRefused(
                refusal.reason,
                successor=successor,
                fenced_old_master=fence.fenced,
                steps=journal.records,
            ) from None
        moving = [replica for replica in stopped if replica not in postpone]
        reasons = await _all(
            run.move(
                replica,
                successor,
                master_positions=positions,
                wait_for_master=0.0,
            )
            for replica in moving
        )
        if semi_sync_master and apply_promotion:
            try:
                await run.set_writable(successor)
            except StatementFailed as error:
                raise FailoverRefused(
                    f"the successor was promoted and the replicas moved, but read_only=0 "
                    f"failed: {error}",
                    successor=successor,
                    fenced_old_master=fence.fenced,
                    steps=journal.records,
                ) from None
    repointed = []
    for replica, reason in zip(moving, reasons, strict=True):
        if reason is None:
            repointed.append(replica)
        else:
            lost[replica] = reason
    return FailoverOutcome(
        failed=failed,
        successor=successor,
        repointed=tuple(repointed),
        lost=lost,
        postponed=tuple(replica for replica in stopped if replica in postpone),
        promotion_applied=apply_promotion,
        fenced_old_master=fence.fenced,
        old_master_detail=fence.detail,
        steps=journal.records,
        duration=time.monotonic() - started,
    )


async def relocate_replicas(
    *,
    moves: Sequence[tuple[InstanceKey, InstanceKey]],
    guard: Guard,
    session: MySQLAccess,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    flavor: Flavor = Flavor.MARIADB,
    journal: StepJournal | None = None,
) -> RelocationOutcome:
    """Move each ``(replica, new_master)`` with GTID and verify it (a dead intermediate
    master's replicas under a sibling or its master), concurrently.

    A new master that is itself a replica may be a little behind the moved replica: it gets
    up to ``timeouts.catch_up`` to reach the replica's position before the replica is lost.
    """
    replicas = [replica for replica, _ in moves]
    if len(set(replicas)) != len(replicas):
        raise OperationRefused("moves name a replica twice")
    if any(replica == master for replica, master in moves):
        raise OperationRefused("a replica cannot be moved under itself")
    journal = journal if journal is not None else StepJournal()
    started = time.monotonic()
    async with _executing(session, guard, journal, flavor, timeouts) as run:
        reasons = await _all(
            run.move(
                replica,
                master,
                master_positions=None,
                wait_for_master=timeouts.catch_up,
            )
            for replica, master in moves
        )
    moved = {}
    lost = {}
    for (replica, master), reason in zip(moves, reasons, strict=True):
        if reason is None:
            moved[replica] = master
        else:
            lost[replica] = reason
    return RelocationOutcome(
        moved=moved, lost=lost, steps=journal.records, duration=time.monotonic() - started
    )


async def fence_returning_master(
    key: InstanceKey,
    session: MySQLAccess,
    guard: Guard,
    *,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    flavor: Flavor = Flavor.MARIADB,
    journal: StepJournal | None = None,
) -> FenceOutcome:
    """Keep a returning old master out of service: read_only=1 and its client connections
    killed. ``fenced`` is False (with why) when it does not answer within ``timeouts.step``
    (one statement's bound, not ``timeouts.fence``: no failover waits for it here)."""
    journal = journal if journal is not None else StepJournal()
    async with _executing(
        session, guard, journal, flavor, replace(timeouts, fence=timeouts.step)
    ) as run:
        fence = await run.fence(key, run.timeouts.fence)
    return FenceOutcome(
        instance=key, fenced=fence.fenced, detail=fence.detail, steps=journal.records
    )
