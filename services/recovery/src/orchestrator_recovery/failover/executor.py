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

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.failover.catch_up import CatchUpPolicy
from orchestrator_recovery.failover.catch_up import StepRefused as _Refusal
from orchestrator_recovery.failover.outcome import (
    FailoverOutcome,
    FailoverRefused,
    FenceOutcome,
    RelocationOutcome,
    StepJournal,
)
from orchestrator_recovery.failover.steps import (
    Fence,
    alongside,
    check_keys,
    executing,
    gather_all,
)
from orchestrator_recovery.failover.timeouts import DEFAULT_TIMEOUTS, Timeouts
from orchestrator_recovery.mysql import MySQLAccess, StatementFailed
from orchestrator_recovery.sql import Positions
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

__all__ = [
    "Guard",
    "Timeouts",
    "fail_over_master",
    "fence_returning_master",
    "relocate_replicas",
]


log = logging.getLogger(__name__)


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
    on_writable: Callable[[], Awaitable[None]] | None = None,
) -> FailoverOutcome:
    """Promote ``successor`` in place of ``failed`` and move ``repoint`` under it.

    1. fence the old master if it answers within ``timeouts.fence`` (read_only=1, client
       connections killed, its last GTID position read), then 3. and 4., all concurrently with
    2. stopping the IO thread of every replica in ``repoint`` and ``postpone`` (the
       successor's promotion does not wait for them: they are moved only after it);
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
    propagates; ``journal`` (if given) then holds the steps done. ``on_writable`` is awaited
    the moment the successor is writable (before the replicas move, or after them with
    semi-sync; never when the promotion is left to the hooks): applications are told then.
    """
    check_keys(failed, successor, [*repoint, *postpone])
    policy = catch_up if catch_up is not None else CatchUpPolicy(timeout=timeouts.catch_up)
    journal = journal if journal is not None else StepJournal()
    started = time.monotonic()
    lost: dict[InstanceKey, str] = {}
    async with executing(session, guard, journal, flavor, timeouts) as run:
        everyone = [*repoint, *postpone]

        async def make_successor() -> tuple[Fence, Positions | _Refusal, float]:
            """Fence, catch up, promote: the successor's path, which waits for the other
            replicas' IO threads to stop only if its promotion is refused."""
            fence = await run.fence(failed, timeouts.fence)
            try:
                await run.catch_up(successor, fence.final_position, policy)
                if apply_promotion:
                    positions = await run.promote(
                        successor, semi_sync=semi_sync_master, writable=not semi_sync_master
                    )
                    if not semi_sync_master:
                        await _tell(on_writable, successor)
                else:
                    positions = await run.leave_promotion(successor)
            except _Refusal as refusal:
                return fence, refusal, time.monotonic()
            return fence, positions, time.monotonic()

        (fence, promotion, promoted), stops = await alongside(
            make_successor(), [run.stop_io(replica) for replica in everyone]
        )
        stopped: list[InstanceKey] = []
        for replica, problem in zip(everyone, stops, strict=True):
            if problem is None:
                stopped.append(replica)
            else:
                lost[replica] = str(problem)
        if isinstance(promotion, _Refusal):
            await run.restore([*stopped, successor])
            raise FailoverRefused(
                promotion.reason,
                successor=successor,
                fenced_old_master=fence.fenced,
                steps=journal.records,
            )
        positions = promotion
        moving = [replica for replica in stopped if replica not in postpone]
        moves_began = time.monotonic()
        reasons = await gather_all(
            run.move(
                replica,
                successor,
                master_positions=positions,
                wait_for_master=0.0,
            )
            for replica in moving
        )
        moved = time.monotonic()
        if semi_sync_master and apply_promotion:
            try:
                await run.set_writable(successor)
                promoted = time.monotonic()
                await _tell(on_writable, successor)
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
        promote_seconds=promoted - started,
        repoint_seconds=moved - moves_began,
    )


async def _tell(on_writable: Callable[[], Awaitable[None]] | None, key: InstanceKey) -> None:
    """``on_writable``, which never fails the failover: the successor is writable whatever
    telling it does (an unexpected error is logged; the API then follows the snapshots)."""
    if on_writable is None:
        return
    try:
        await on_writable()
    except Exception:
        log.exception("telling that %s is writable failed; the failover goes on", key)


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
    async with executing(session, guard, journal, flavor, timeouts) as run:
        reasons = await gather_all(
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
    async with executing(
        session, guard, journal, flavor, replace(timeouts, fence=timeouts.step)
    ) as run:
        fence = await run.fence(key, run.timeouts.fence)
    return FenceOutcome(
        instance=key, fenced=fence.fenced, detail=fence.detail, steps=journal.records
    )
