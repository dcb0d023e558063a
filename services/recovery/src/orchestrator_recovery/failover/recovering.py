"""One recovery, from a suspected failure to its last event: verify, gate, plan, execute, tell.

:class:`Recoveries` is the part of the active worker (:mod:`orchestrator_recovery.failover.worker`)
that carries one recovery through; the worker's loop starts it, and operations (``recover``,
``force-master-failover``) call it through ``RecoveryWorker.recover``.

A failover (a dead master or intermediate master):

1. **verify**: probe the failed instance and each of its replicas directly, now; analyse again
   on what they answered. Only a failure the replicas confirm goes on (a master unreachable for
   us alone, with replicas still replicating, is ``UnreachableMaster``: no failover);
2. ``detected``; then the gates, each ending in ``blocked`` with its reason: recoveries disabled
   globally, the failed instance downtimed, the cluster in its block period
   (``RecoveryPeriodBlockSeconds``) and not acknowledged;
3. ``OnFailureDetectionProcesses``; the plan (pure, ``orchestrator_shared.recovery``): a refusal
   ends in ``failed`` with its reason and why each replica was rejected;
4. ``started``, recorded in etcd before the first destructive step; ``PreFailoverProcesses``
   (a failing hook aborts); the executor, every destructive step behind ``guard()``;
5. ``promoted`` / ``completed`` (or ``failed``), post hooks, the cluster's last recovery
   recorded (the block period starts), discovery asked to probe the instances involved again;
   a master failover's postponed replicas and lost ones are then handled in the background
   (:mod:`orchestrator_recovery.failover.aftermath`).

A semi-sync recovery (``LockedSemiSyncMaster``, ``MasterWithTooManySemiSyncReplicas``; only
with ``RecoverLockedSemiSyncMaster`` or ``EnforceExactSemiSyncReplicas``) goes through the same
verification, gates (with a block period of its own) and detection hook, then turns semi-sync
on or off on the replicas the plan names and checks what the master counts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.failover.aftermath import Aftermath, WatchReturn
from orchestrator_recovery.failover.gate_reads import GateReads, PrefetchedReads
from orchestrator_recovery.failover.gates import why_blocked
from orchestrator_recovery.failover.phases import PhaseTimer
from orchestrator_recovery.fleet import FleetState
from orchestrator_recovery.hooks import HookStage
from orchestrator_recovery.ports import (
    MASTER_FAILURES,
    SEMI_SYNC_FAILURES,
    AnyPlanned,
    Executor,
    Hooks,
    MasterPlanned,
    Outcome,
    Planner,
    Publisher,
    Refused,
    RelocationPlanned,
    SemiSyncPlanned,
    WorkerOptions,
    is_recoverable,
)
from orchestrator_shared.analysis import Analysis
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.etcd.recovery import RecordKind, RecoveryControl
from orchestrator_shared.events import (
    AuditEvent,
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
    TimedPhase,
    describe_recovery,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule

__all__ = ["Recoveries", "replace_data"]

log = logging.getLogger(__name__)


class Recoveries:
    """Carries recoveries through for one worker (the gates' memory is shared by all)."""

    def __init__(
        self,
        options: WorkerOptions,
        state: FleetState,
        *,
        verify: Callable[[Analysis], Awaitable[Analysis]],
        candidates: Callable[[], Mapping[InstanceKey, PromotionRule]],
        publisher: Publisher,
        control: RecoveryControl,
        planner: Planner,
        executor: Executor,
        refresh: Callable[[Iterable[InstanceKey]], Awaitable[None]] | None,
        hooks: Hooks | None,
        clock: Callable[[], datetime],
        after_failover: Callable[[RecoveryData, Guard], None] | None = None,
        watch_return: WatchReturn | None = None,
    ) -> None:
        self._after_failover = after_failover
        self._options = options
        self._state = state
        self._verify = verify
        self._candidates = candidates
        self._publisher = publisher
        self._control = control
        self._planner = planner
        self._executor = executor
        self._refresh = refresh
        self._hooks = hooks
        self._clock = clock
        # the last blocked failure of each cluster and why, so it is told once, not every tick
        self._blocked: dict[tuple[str, RecordKind], tuple[str, str]] = {}
        # postponed replicas to move and lost ones to detach, after a recovery completed
        self.aftermath = Aftermath(
            executor,
            publisher,
            worker_id=options.worker_id,
            clock=clock,
            refresh=refresh,
            watch_return=watch_return,
        )

    def recoverable(self, analysis: Analysis) -> bool:
        """Whether ``analysis`` is recovered: a dead (intermediate) master and a Galera node
        with async replicas outside the primary component always (:func:`is_recoverable`); a
        semi-sync problem when ``RecoverLockedSemiSyncMaster`` or
        ``EnforceExactSemiSyncReplicas`` is set."""
        if is_recoverable(analysis):
            return True
        return self._options.semi_sync is not None and analysis.code in SEMI_SYNC_FAILURES

    async def recover(
        self,
        analysis: Analysis,
        guard: Guard,
        token: int,
        *,
        forced: bool = False,
        requested: InstanceKey | None = None,
        requested_by: str = "",
        verify: bool = True,
        command: str = "",
    ) -> Outcome | None:
        """Verify, gate, plan and execute one recovery; None when the failure is not confirmed.

        ``forced`` (a manual ``recover``): the gates (global switch, downtime, block period,
        cluster filters) do not apply. ``verify=False`` (``force-master-failover``): the
        analysis is taken as given, the master is treated as dead even if it answers (the
        executor fences it first).
        """
        timer = PhaseTimer(self._state.take_suspicion(analysis.key))
        # the gates' etcd reads go on while the failure is verified (not for a forced one)
        reads = None if forced else PrefetchedReads(self._control, analysis.cluster_name)
        try:
            return await self._recover(
                analysis,
                guard,
                token,
                timer,
                reads or self._control,
                forced=forced,
                requested=requested,
                requested_by=requested_by,
                verify=verify,
                command=command,
            )
        finally:
            if reads is not None:
                reads.close()

    async def _recover(
        self,
        analysis: Analysis,
        guard: Guard,
        token: int,
        timer: PhaseTimer,
        reads: GateReads,
        *,
        forced: bool,
        requested: InstanceKey | None,
        requested_by: str,
        verify: bool,
        command: str,
    ) -> Outcome | None:
        verified = await self._verify(analysis) if verify else analysis
        if verify:
            timer.lap(CONFIRM)
        else:
            timer.restart()
        if not self.recoverable(verified):
            if verified.code is not analysis.code:
                log.info(
                    "%s: %s not confirmed by its replicas: %s",
                    analysis.key,
                    analysis.code,
                    verified.code,
                )
            return None
        now = self._clock()
        data = RecoveryData(
            recovery_id=str(uuid.uuid4()),
            cluster=verified.cluster_name,
            cluster_alias=verified.cluster_alias,
            analysis=verified.code.value,
            failed=str(verified.key),
            fencing_token=token,
            worker=self._options.worker_id,
            started_at=now,
            forced=forced,
            requested_by=requested_by,
            command=command,
            phases=timer.phases,
        )
        if verified.code in SEMI_SYNC_FAILURES:
            return await self._recover_semi_sync(
                verified, data, guard, now, forced=forced, reads=reads
            )
        if not forced and await self._already_recovered(verified.key, now, reads):
            return None  # this failure was recovered; what is left of it is lost replicas
        inherited = None if forced else await reads.active(data.cluster)
        if inherited is not None:
            # A leader before us started this recovery and stopped leading mid-way.
            data = replace_data(data, recovery_id=inherited.data.recovery_id)
            if inherited.phase is RecoveryPhase.PROMOTED:
                # It promoted a successor: never promote again; the recovery is done.
                done = replace_data(
                    inherited.data,
                    fencing_token=token,
                    worker=self._options.worker_id,
                    reason=f"finished by {self._options.worker_id}: worker "
                    f"{inherited.data.worker} had promoted {inherited.data.successor}",
                )
                outcome = await self._end(RecoveryPhase.COMPLETED, done, record=FAILOVER)
                self._after_master_recovery(outcome.data, guard)
                return outcome
            log.info(
                "recovery %s of %s was started by %s, which stopped leading before any "
                "promotion: planning it again from the facts",
                data.recovery_id,
                data.cluster,
                inherited.data.worker,
            )
        plan = await self._plan(
            verified, data, now, forced=forced, requested=requested, kind=FAILOVER, reads=reads
        )
        if isinstance(plan, _Ended):
            return plan.outcome
        plan = _failover_plan(verified, plan)
        data = replace_data(
            data,
            galera=plan.galera,
            successor=plan.successor,
            rejected=dict(plan.rejected),
            lost=dict(plan.lost),
            postponed=plan.postponed,
        )
        timer.lap(PLAN)
        data = replace_data(data, phases=timer.phases)
        await self._control.set_active(RecoveryPhase.STARTED, data)
        await self.announce(RecoveryPhase.STARTED, data)
        try:
            await self.run_hook(HookStage.PRE_FAILOVER, verified, data)
            # (no guard() of its own here: the executor confirms the leadership before each
            # statement that changes a server, the first one included; one round trip less)
            timer.lap(PLAN)  # (until the executor starts)
            if isinstance(plan, MasterPlanned):
                # the API names the successor the moment it is writable, before the replicas
                # move: applications' next /api/master answer follows it
                announced = replace_data(data, successor=plan.successor)
                result = await self._executor.fail_over_master(
                    plan.plan, guard, on_writable=lambda: self._publisher.promoted(announced)
                )
                timer.add(result.phases)
                data = replace_data(
                    data,
                    successor=result.successor,
                    repointed=result.repointed,
                    lost={**data.lost, **result.lost},
                    postponed=result.postponed,
                    promotion_applied=result.promotion_applied,
                    phases=timer.phases,
                )
                await self._control.set_active(RecoveryPhase.PROMOTED, data)
                await self.announce(RecoveryPhase.PROMOTED, data)
            else:
                relocated = await self._executor.relocate(plan.plan, guard)
                timer.lap(REPOINT)
                data = replace_data(
                    data,
                    repointed=relocated.moved,
                    lost={**data.lost, **relocated.lost},
                    phases=timer.phases,
                )
        except OperationRefused as exc:
            return await self._fail(verified, replace_data(data, reason=str(exc)), record=FAILOVER)
        await self.refresh_involved(data)
        outcome = await self._end(RecoveryPhase.COMPLETED, data, record=FAILOVER)
        if isinstance(plan, MasterPlanned):
            self._after_master_recovery(outcome.data, guard)
        # a relocation (a dead intermediate master's, a failed Galera node's) promoted nobody
        post = (
            HookStage.POST_MASTER_FAILOVER
            if isinstance(plan, MasterPlanned)
            else HookStage.POST_INTERMEDIATE_MASTER_FAILOVER
        )
        await self.run_hook(post, verified, outcome.data)
        await self.run_hook(HookStage.POST_FAILOVER, verified, outcome.data)
        return outcome

    async def _recover_semi_sync(
        self,
        verified: Analysis,
        data: RecoveryData,
        guard: Guard,
        now: datetime,
        *,
        forced: bool,
        reads: GateReads,
    ) -> Outcome | None:
        """A ``LockedSemiSyncMaster`` / ``MasterWithTooManySemiSyncReplicas``: semi-sync turned
        on (or off) on replicas until the master has the semi-sync replicas it should.

        As orchestrator: no cluster filter, no ``PreFailoverProcesses``; on success
        ``PostFailoverProcesses`` with the master itself as the successor (orchestrator records
        it so), else ``PostUnsuccessfulFailoverProcesses``. The block period is its own (a
        semi-sync recovery neither blocks nor is blocked by a failover of the cluster)."""
        planned = await self._plan(
            verified, data, now, forced=forced, requested=None, kind=SEMI_SYNC, reads=reads
        )
        if isinstance(planned, _Ended):
            return planned.outcome
        plan = _semi_sync_plan(verified, planned)
        data = replace_data(data, rejected=dict(plan.rejected))
        await self.announce(RecoveryPhase.STARTED, data)
        try:
            await guard()
            result = await self._executor.semi_sync(plan.plan, guard)
        except OperationRefused as exc:
            return await self._fail(verified, replace_data(data, reason=str(exc)), record=SEMI_SYNC)
        data = replace_data(data, semi_sync=dict(result.changed))
        if result.failed or not result.reached:
            problems = "; ".join(f"{key}: {why}" for key, why in sorted(result.failed.items()))
            reason = result.detail + (f"; failed: {problems}" if problems else "")
            return await self._fail(verified, replace_data(data, reason=reason), record=SEMI_SYNC)
        await self.refresh_involved(data)
        outcome = await self._end(RecoveryPhase.COMPLETED, data, record=SEMI_SYNC)
        await self.run_hook(
            HookStage.POST_FAILOVER, verified, replace_data(outcome.data, successor=data.failed)
        )
        return outcome

    async def _plan(
        self,
        verified: Analysis,
        data: RecoveryData,
        now: datetime,
        *,
        forced: bool,
        requested: InstanceKey | None,
        kind: RecordKind,
        reads: GateReads,
    ) -> AnyPlanned | _Ended:
        """``detected``, the gates, ``OnFailureDetectionProcesses``, the plan; or how the
        recovery ended when one of them stopped it (``outcome`` None: still blocked, and
        already told)."""
        blocked = await self._gate(verified, data, now, forced=forced, kind=kind, reads=reads)
        told = (data.cluster, kind)
        if blocked and self._blocked.get(told) == (data.failed, blocked):
            return _Ended(None)  # still blocked for the same reason: said once already
        await self.announce(RecoveryPhase.DETECTED, data)
        if blocked:
            self._blocked[told] = (data.failed, blocked)
            return _Ended(
                await self._end(RecoveryPhase.BLOCKED, replace_data(data, reason=blocked))
            )
        self._blocked.pop(told, None)
        try:
            await self.run_hook(HookStage.ON_FAILURE_DETECTION, verified, data)
        except OperationRefused as exc:
            return _Ended(
                await self._end(RecoveryPhase.FAILED, replace_data(data, reason=str(exc)))
            )
        plan = self._planner.plan(
            verified,
            self._state.snapshots,
            forced=forced,
            requested=requested,
            candidates=self._candidates(),
        )
        if isinstance(plan, Refused):
            refused = replace_data(data, reason=plan.reason, rejected=dict(plan.rejected))
            return _Ended(await self._fail(verified, refused, record=kind))
        return plan

    async def _fail(self, analysis: Analysis, data: RecoveryData, *, record: RecordKind) -> Outcome:
        await self.run_hook(HookStage.POST_UNSUCCESSFUL_FAILOVER, analysis, data)
        return await self._end(RecoveryPhase.FAILED, data, record=record)

    def _after_master_recovery(self, data: RecoveryData, guard: Guard) -> None:
        """The postponed replicas moved, the lost ones detached, a hung old master watched
        until it wakes (``after_failover``): in the background."""
        self.aftermath.start(data, guard, detach_lost=self._options.detach_lost)
        if self._after_failover is not None:
            self._after_failover(data, guard)

    async def run_hook(self, stage: HookStage, analysis: Analysis, data: RecoveryData) -> None:
        if self._hooks is not None:
            await self._hooks.run(stage, analysis, data)

    async def _already_recovered(self, key: InstanceKey, now: datetime, reads: GateReads) -> bool:
        """Whether ``key`` is the failed instance of a recovery still in its block period: its
        failure was handled (a successor took over); it stays dead, perhaps with replicas
        that could not follow, and that is not a new failure to recover. Once promoted again
        since (a later failover or a graceful takeover), its failure is a new one."""
        records, promotions = await reads.fencing_view()
        return any(
            last.failed == str(key)
            and last.successor
            and last.blocks(now, self._options.block_period)
            and not any(p.successor == str(key) and p.ended_at > last.ended_at for p in promotions)
            for last in records.values()
        )

    async def _gate(
        self,
        analysis: Analysis,
        data: RecoveryData,
        now: datetime,
        *,
        forced: bool,
        kind: RecordKind,
        reads: GateReads,
    ) -> str:
        """Why this recovery must not run (empty: it may; :func:`why_blocked`). ``kind``: whose
        block period applies (a failover's, or a semi-sync recovery's). The cluster's last
        recovery is read only when the other gates let the recovery through."""
        if forced:
            return ""
        switch = await reads.global_switch()
        decide = functools.partial(
            why_blocked,
            analysis,
            switch=switch,
            cluster=data.cluster,
            kind=kind,
            now=now,
            block_period=self._options.block_period,
        )
        early = decide(last=None)
        if early:
            return early
        return decide(last=await reads.last(data.cluster, kind))

    async def _end(
        self, phase: RecoveryPhase, data: RecoveryData, *, record: RecordKind | None = None
    ) -> Outcome:
        ended = replace_data(data, ended_at=self._clock())
        if record is not None:
            # A failed recovery promoted nobody: its record names no successor (the event still
            # says which one was tried). Else the record would be kept under the candidate's
            # name, an acknowledgement of the cluster would not find it, and the dead master
            # would pass for a handled failure: never recovered again, silently.
            kept = replace_data(ended, successor="") if phase is RecoveryPhase.FAILED else ended
            await self._control.finish(kept, ended_at=ended.ended_at or self._clock(), kind=record)
        await self.announce(phase, ended)
        return Outcome(phase, ended)

    async def announce(self, phase: RecoveryPhase, data: RecoveryData) -> None:
        log.info(
            "recovery %s of %s: %s%s",
            data.recovery_id[:8],
            data.cluster,
            phase,
            f" ({data.reason})" if data.reason else "",
        )
        await self._publisher.recovery(RecoveryEvent.of(phase, data, source=self._options.source))
        await self._publisher.audit(
            AuditEvent(
                type=f"recovery-{phase}",
                message=describe_recovery(phase, data),
                key=data.failed,
                cluster=data.cluster,
                user=self._options.worker_id,
                at=self._clock(),
                ok=phase not in (RecoveryPhase.FAILED, RecoveryPhase.BLOCKED),
            )
        )

    async def refresh_involved(self, data: RecoveryData) -> None:
        if self._refresh is None:
            return
        keys = [
            data.failed,
            *([data.successor] if data.successor else []),
            *data.repointed,
            *data.semi_sync,
        ]
        try:
            await self._refresh([InstanceKey.parse(key) for key in keys])
        except Exception as exc:
            log.warning("asking discovery to probe again after recovery: %s", exc)


FAILOVER = RecordKind.FAILOVER
SEMI_SYNC = RecordKind.SEMI_SYNC
CONFIRM = TimedPhase.CONFIRM
PLAN = TimedPhase.PLAN
REPOINT = TimedPhase.REPOINT


class PlanMismatch(TypeError):
    """The planner answered a plan of another kind than the failure calls for (a bug of the
    planner): the recovery stops before anything is changed, as an internal error."""

    def __init__(self, analysis: Analysis, plan: AnyPlanned) -> None:
        super().__init__(f"{analysis.code} of {analysis.key} planned as {type(plan).__name__}")


def _failover_plan(analysis: Analysis, plan: AnyPlanned) -> MasterPlanned | RelocationPlanned:
    """``plan`` as the failover ``analysis`` calls for: a promotion only for a dead master
    (``MASTER_FAILURES``); a relocation for a dead intermediate master, and for a failed
    Galera node (to the analysis a dead master, or a node outside the primary component)."""
    master = analysis.code in MASTER_FAILURES
    if isinstance(plan, MasterPlanned) and master:
        return plan
    if isinstance(plan, RelocationPlanned) and (plan.galera or not master):
        return plan
    raise PlanMismatch(analysis, plan)


def _semi_sync_plan(analysis: Analysis, plan: AnyPlanned) -> SemiSyncPlanned:
    if isinstance(plan, SemiSyncPlanned):
        return plan
    raise PlanMismatch(analysis, plan)


@dataclasses.dataclass(frozen=True, slots=True)
class _Ended:
    """A recovery stopped before planning; ``outcome`` None when nothing was told."""

    outcome: Outcome | None


def replace_data(data: RecoveryData, **changes: object) -> RecoveryData:
    return data.model_copy(update=changes)
