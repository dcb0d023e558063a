"""The steps a failover is made of, each bounded and behind the leadership guard: fence a
server, stop its IO thread, let the successor catch up, promote it, move a replica under it,
detach one that cannot follow, restore what a refusal left stopped.

:class:`FailoverSteps` holds one recovery's links to the servers and its step journal;
:mod:`.executor` strings these steps into a master failover, a relocation of an intermediate
master's replicas, and the fencing of a returning old master.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator_adapters.ports import Guard
from orchestrator_recovery import sql
from orchestrator_recovery.failover.catch_up import CatchUpPolicy, bring_up_to_date
from orchestrator_recovery.failover.catch_up import StepRefused as _Refusal
from orchestrator_recovery.failover.outcome import (
    Action,
    StepJournal,
    StepNote,
)
from orchestrator_recovery.failover.timeouts import Timeouts
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.sql import Check, Dialect, Positions, Progress, ReplicaStatus
from orchestrator_shared.errors import LeaseLost, OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

STOP_IO_GRACE = 3.0
"""How long a timed-out STOP SLAVE IO_THREAD may take to stop the IO thread (see ``stop_io``)."""

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Fence:
    fenced: bool
    detail: str
    final_position: str | None  # the old master's last GTID position, once fenced


async def gather_all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
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
            raise first_leaf(lease) from None
        raise
    return [task.result() for task in tasks]


async def alongside(
    first: Coroutine[Any, Any, T], others: list[Coroutine[Any, Any, U]]
) -> tuple[T, list[U]]:
    """``first`` concurrently with ``others`` (as :func:`gather_all`)."""

    async def rest() -> list[U]:
        return await gather_all(others)

    together: list[Any] = await gather_all([first, rest()])
    return together[0], together[1]


def first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


class FailoverSteps:
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

    async def fence(self, key: InstanceKey, within: float) -> Fence:
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
                return Fence(False, note.detail, None)
            read_only = await self._set_read_only(key, within=left() / 2)
            note.ok, note.detail = read_only is None, read_only or "read_only=1"
        await self._kill_clients(key, within=left)
        if read_only is not None:
            with self.journal.step(key, Action.FENCE) as note:
                read_only = await self._set_read_only(key, within=left())
                note.ok, note.detail = read_only is None, read_only or "read_only=1 (retried)"
            if read_only is not None:
                return Fence(False, read_only, None)
        try:
            rows = await self.links.rows(key, self.dialect.positions_sql, within=left())
            final = sql.parse_positions(rows).binlog or None
        except StatementFailed:
            final = None
        return Fence(True, f"fenced at {final or 'unknown position'}", final)

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

        await gather_all(restart(key) for key in keys)


@asynccontextmanager
async def executing(
    session: MySQLAccess, guard: Guard, journal: StepJournal, flavor: Flavor, timeouts: Timeouts
) -> AsyncIterator[FailoverSteps]:
    """The statements of one entry point: its links (each statement bounded by
    ``timeouts.step``) open while it runs."""
    async with Links(session, statement_timeout=timeouts.step) as links:
        yield FailoverSteps(
            links,
            guard=guard,
            journal=journal,
            dialect=Dialect(flavor),
            access=session,
            timeouts=timeouts,
        )


def check_keys(failed: InstanceKey, successor: InstanceKey, repoint: Sequence[InstanceKey]) -> None:
    if successor == failed:
        raise OperationRefused(f"the successor {successor} is the failed master")
    if successor in repoint or failed in repoint:
        raise OperationRefused("repoint must name neither the failed master nor the successor")
    if len(set(repoint)) != len(repoint):
        raise OperationRefused("repoint names a replica twice")
