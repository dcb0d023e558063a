"""The successor's relay log before promotion: how long to wait for it, and the wait itself.

A failover must not promote a replica that has received transactions it has not applied. How
the executor waits for them is one of three rules (:class:`CatchUpMode`), chosen by
orchestrator's two settings (``CatchUpPolicy.from_settings``):

* neither set (``BOUNDED``): wait up to ``RecoveryCatchUpTimeoutSeconds``, then refuse;
* ``FailMasterPromotionIfSQLThreadNotUpToDate`` (``FAIL``): refuse at once when the successor
  has anything left to apply once its IO thread is stopped;
* ``DelayMasterPromotionIfSQLThreadNotUpToDate`` (``DELAY``): wait as long as the SQL thread
  keeps applying; refuse when it made no progress for ``ReasonableReplicationLagSeconds``, or
  after 24 hours in all (orchestrator's overall limit).

Setting both is a configuration error (``Settings``). In every mode a refusal happens before
anything is promoted: the executor starts replication again where it stopped it.

:class:`ApplyWatch` is the pure decision (a clock value in, a verdict out);
:func:`bring_up_to_date` is the executor's step 3 (``docs/recovery-execution.md``).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from orchestrator_recovery import sql
from orchestrator_recovery.failover.outcome import Action, StepNote
from orchestrator_recovery.mysql import StatementFailed
from orchestrator_recovery.sql import Check, Dialect, Progress, ReplicaStatus
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey

__all__ = [
    "DEFAULT_CATCH_UP_TIMEOUT",
    "DELAY_LIMIT_SECONDS",
    "ApplyWatch",
    "CatchUpMode",
    "CatchUpPolicy",
    "StepRefused",
    "bring_up_to_date",
]

DEFAULT_CATCH_UP_TIMEOUT = 3.0
"""How long the successor gets to apply its relay log before the failover is refused."""
DELAY_LIMIT_SECONDS = 24 * 3600.0
"""orchestrator's overall limit of ``DelayMasterPromotionIfSQLThreadNotUpToDate``."""


class StepRefused(Exception):
    """The failover must stop before promotion, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CatchUpMode(enum.StrEnum):
    BOUNDED = "bounded"
    FAIL = "fail"
    DELAY = "delay"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpPolicy:
    """How the successor's relay log is waited for (see the module docstring).

    ``timeout`` bounds the whole catch-up in ``BOUNDED`` mode; in the two others it bounds only
    the wait for the fenced old master's last transactions to *arrive* on the successor.
    """

    mode: CatchUpMode = CatchUpMode.BOUNDED
    timeout: float = DEFAULT_CATCH_UP_TIMEOUT
    stall: float = 10.0
    """``DELAY``: refuse once the applied position has not moved for this long."""
    limit: float = DELAY_LIMIT_SECONDS
    """``DELAY``: the longest wait in all."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CatchUpPolicy:
        mode = CatchUpMode.BOUNDED
        if settings.FailMasterPromotionIfSQLThreadNotUpToDate:
            mode = CatchUpMode.FAIL
        elif settings.DelayMasterPromotionIfSQLThreadNotUpToDate:
            mode = CatchUpMode.DELAY
        return cls(
            mode=mode,
            timeout=settings.RecoveryCatchUpTimeoutSeconds,
            stall=float(settings.ReasonableReplicationLagSeconds),
        )


@dataclass(slots=True)
class ApplyWatch:
    """Decides, look after look, whether the wait for the successor's SQL thread goes on.

    ``verdict`` takes each :func:`sql.applied_check` with the applied position it saw
    (:func:`sql.applied_marker`) and the monotonic time; it returns the check as it is, or a
    failed one once the policy says stop.
    """

    policy: CatchUpPolicy
    started: float
    marker: str = ""
    progressed: float = 0.0

    def __post_init__(self) -> None:
        self.progressed = self.started

    def verdict(self, check: Check, marker: str, now: float) -> Check:
        policy = self.policy
        if check.progress is Progress.FAILED:
            return Check.failed(f"the successor could not apply its relay log: {check.detail}")
        if check.progress is Progress.DONE:
            return check
        if marker != self.marker:
            self.marker, self.progressed = marker, now
        if policy.mode is CatchUpMode.FAIL:
            return Check.failed(
                f"the successor's SQL thread is not up to date ({check.detail}), and "
                "FailMasterPromotionIfSQLThreadNotUpToDate refuses rather than wait"
            )
        if policy.mode is CatchUpMode.BOUNDED:
            if now - self.started >= policy.timeout:
                return Check.failed(
                    f"the successor could not apply its relay log within {policy.timeout:g}s: "
                    f"{check.detail}"
                )
            return check
        if now - self.progressed >= policy.stall:
            return Check.failed(
                f"the successor's SQL thread made no progress for {policy.stall:g}s "
                "(ReasonableReplicationLagSeconds; DelayMasterPromotionIfSQLThreadNotUpToDate "
                f"waits only while it applies): {check.detail}"
            )
        if now - self.started >= policy.limit:
            return Check.failed(
                f"the successor did not apply its relay log within {policy.limit:g}s, the "
                f"longest DelayMasterPromotionIfSQLThreadNotUpToDate waits: {check.detail}"
            )
        return check


class Run(Protocol):
    """What the catch-up needs of the executor (``steps.FailoverSteps``)."""

    dialect: Dialect
    poll: float

    async def status(self, key: InstanceKey) -> ReplicaStatus | None: ...
    async def change(self, key: InstanceKey, statement: str) -> None: ...
    async def stop_io(self, key: InstanceKey) -> str | None: ...
    def step(self, key: InstanceKey, action: Action) -> AbstractContextManager[StepNote]: ...
    async def poll_status(
        self, key: InstanceKey, decide: Callable[[ReplicaStatus], Check], deadline: float
    ) -> Check: ...


async def bring_up_to_date(
    run: Run, successor: InstanceKey, final_position: str | None, policy: CatchUpPolicy
) -> None:
    """Bring the successor to the end of what it received, then stop its replication.
    Raises :class:`StepRefused` when ``policy`` says it cannot be promoted."""
    started = time.monotonic()
    dialect = run.dialect
    try:
        status = await run.status(successor)
        if status is None:
            raise StepRefused("the successor has no replication configured")
        if not status.is_sql_running:
            # Started while the IO thread still runs: MariaDB keeps the relay log then.
            problem = sql.sql_thread_start_refusal(dialect, status)
            if problem is not None:
                raise StepRefused(f"the successor cannot apply its relay log: {problem}")
            if policy.mode is CatchUpMode.FAIL:
                check = ApplyWatch(policy, started).verdict(
                    sql.applied_check(dialect, status), "", started
                )
                if check.progress is not Progress.DONE:
                    raise StepRefused(check.detail)
            with run.step(successor, Action.START_SQL):
                await run.change(successor, dialect.start_sql_thread_sql)
        if final_position:
            # The old master answered: receive all it has before cutting the IO thread.
            with run.step(successor, Action.CATCH_UP) as note:
                check = await run.poll_status(
                    successor,
                    lambda status: sql.received_check(dialect, status, final_position),
                    started + policy.timeout,
                )
                note.ok, note.detail = check.progress is Progress.DONE, check.detail
            if check.progress is not Progress.DONE:
                raise StepRefused(
                    f"the successor did not receive the old master's last transactions "
                    f"({final_position}) within {policy.timeout:g}s: {check.detail}"
                )
        problem = await run.stop_io(successor)  # (journaled; waits for a slow semi-sync STOP)
        if problem is not None:
            raise StepRefused(f"the successor failed: {problem}")
        with run.step(successor, Action.CATCH_UP) as note:
            check = await _applied(run, successor, ApplyWatch(policy, started))
            note.ok, note.detail = check.progress is Progress.DONE, check.detail
        if check.progress is not Progress.DONE:
            raise StepRefused(check.detail)
        with run.step(successor, Action.STOP_REPLICATION):
            await run.change(successor, dialect.stop_replication_sql)
    except StatementFailed as error:
        raise StepRefused(f"the successor failed: {error}") from None


async def _applied(run: Run, successor: InstanceKey, watch: ApplyWatch) -> Check:
    """Look at the successor until ``watch`` says done or failed."""
    while True:
        status = await run.status(successor)
        if status is None:
            return Check.failed("the successor has no replication configured")
        check = watch.verdict(
            sql.applied_check(run.dialect, status),
            sql.applied_marker(run.dialect, status),
            time.monotonic(),
        )
        if check.progress is not Progress.WAITING:
            return check
        await asyncio.sleep(run.poll)
