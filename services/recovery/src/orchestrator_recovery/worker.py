"""The active recovery worker's loop: analyse, verify, plan, execute, tell.

Only the leader runs :meth:`RecoveryWorker.lead` (the election cancels it the moment leadership
ends). One pass of the loop:

1. wait for a change of the fleet (a snapshot, an ``unreachable`` event) or ``tick``;
2. analyse the fleet with the shared analysis function and publish each cluster's problems
   when they changed (``orchestrator.v1.analysis.<cluster>``);
3. for an actionable failure with no recovery running in its cluster, start one (a task per
   cluster, so a slow recovery never delays another cluster's).

A recovery (:meth:`RecoveryWorker.recover`):

1. **verify**: probe the failed instance and each of its replicas directly, now; analyse again
   on what they answered. Only a failure the replicas confirm goes on (a master unreachable for
   us alone, with replicas still replicating, is ``UnreachableMaster``: no failover);
2. ``detected``; then the gates, each ending in ``blocked`` with its reason: recoveries disabled
   globally, the cluster in its block period (``RecoveryPeriodBlockSeconds``) and not
   acknowledged, a recovery of the cluster already recorded in flight;
3. ``OnFailureDetectionProcesses``; the plan (pure, ``orchestrator_shared.recovery``): a refusal
   ends in ``failed`` with its reason and why each replica was rejected;
4. ``started``, recorded in etcd before the first destructive step; ``PreFailoverProcesses``
   (a failing hook aborts); the executor, every destructive step behind ``guard()``;
5. ``promoted`` / ``completed`` (or ``failed``), post hooks, the cluster's last recovery
   recorded (the block period starts), discovery asked to probe the instances involved again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

from orchestrator_recovery.control import LastRecovery, OperatorState, RecoveryControl
from orchestrator_recovery.fleet import FleetState
from orchestrator_shared.analysis import (
    Analysis,
    AnalysisCode,
    AnalysisOptions,
    CoordinatesSeen,
    analyze,
    track_binlog_coordinates,
)
from orchestrator_shared.errors import LeaseLost, OperationRefused, OrchestratorError
from orchestrator_shared.events import (
    AnalysisEvent,
    AnalysisProblem,
    AuditEvent,
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
    describe_recovery,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.snapshot import InstanceSnapshot

log = logging.getLogger(__name__)

MASTER_FAILURES = frozenset({AnalysisCode.DEAD_MASTER, AnalysisCode.DEAD_MASTER_AND_SOME_REPLICAS})
INTERMEDIATE_MASTER_FAILURES = frozenset(
    {
        AnalysisCode.DEAD_INTERMEDIATE_MASTER,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA,
        AnalysisCode.DEAD_INTERMEDIATE_MASTER_WITH_SINGLE_REPLICA_FAILING_TO_CONNECT,
    }
)
RECOVERABLE = MASTER_FAILURES | INTERMEDIATE_MASTER_FAILURES

Probe = Callable[[InstanceKey, InstanceSnapshot | None], Awaitable[InstanceSnapshot]]
Guard = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    worker_id: str
    source: str  # CloudEvents ``source``
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    tick: float = 0.25  # seconds between analyses when nothing changes
    # how often demoted masters are probed (a returning one is made read_only again)
    demoted_check: float = 0.5
    block_period: timedelta = timedelta(seconds=3600)  # RecoveryPeriodBlockSeconds


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan ready to execute: ``plan`` is the pure planner's own value, for the executor."""

    plan: object
    successor: str  # host:port, empty for an intermediate master's relocation
    rejected: Mapping[str, str]
    lost: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    rejected: Mapping[str, str]


class Hooks(Protocol):
    """The operator's hooks (``orchestrator_recovery.wiring.ShellHooks``): ``stage`` is an
    orchestrator hook setting's name; a failing ``Pre*`` / ``OnFailureDetection`` hook raises
    ``OperationRefused`` (the recovery is refused), ``Post*`` failures are only recorded."""

    async def run(self, stage: str, analysis: Analysis, data: RecoveryData) -> None: ...


class Publisher(Protocol):
    """Where events go (``orchestrator_recovery.publisher.EventPublisher``)."""

    async def recovery(self, event: RecoveryEvent) -> bool: ...
    async def analysis(self, event: AnalysisEvent) -> bool: ...
    async def audit(self, event: AuditEvent) -> bool: ...


class Planner(Protocol):
    """The pure planning of ``orchestrator_shared.recovery`` fed from the worker's facts."""

    def plan(
        self,
        analysis: Analysis,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        *,
        forced: bool,
        requested: InstanceKey | None,
        candidates: Mapping[InstanceKey, PromotionRule],
    ) -> Planned | Refused: ...


class Executor(Protocol):
    """How a plan is carried out against MySQL (``orchestrator_recovery.wiring.MySQLExecutor``)."""

    async def fail_over_master(
        self, plan: object, guard: Guard
    ) -> tuple[str, tuple[str, ...], dict[str, str]]:
        """Carry out a master plan; (successor, repointed, lost with why)."""
        ...

    async def relocate(self, plan: object, guard: Guard) -> tuple[tuple[str, ...], dict[str, str]]:
        """Carry out an intermediate-master plan; (moved, lost with why)."""
        ...

    async def fence(self, key: InstanceKey, guard: Guard) -> tuple[bool, str]:
        """Make a returning old master read_only again; (fenced, detail)."""
        ...


@dataclass
class Outcome:
    """How one recovery ended (for tests and the command replies)."""

    phase: RecoveryPhase
    data: RecoveryData


class RecoveryWorker:
    def __init__(
        self,
        options: WorkerOptions,
        state: FleetState,
        *,
        probe: Probe,
        publisher: Publisher,
        control: RecoveryControl,
        planner: Planner,
        executor: Executor,
        refresh: Callable[[Iterable[InstanceKey]], Awaitable[None]] | None = None,
        hooks: Hooks | None = None,
        operator_state: OperatorState | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._hooks = hooks
        self._operator_state = operator_state
        # what operators registered (downtime: key -> end; promotion rules), refreshed by the
        # leader's loop
        self._downtimed: dict[InstanceKey, datetime] = {}
        self._candidates: dict[InstanceKey, PromotionRule] = {}
        self._clock = clock
        self._options = options
        self._state = state
        self._probe = probe
        self._publisher = publisher
        self._control = control
        self._planner = planner
        self._executor = executor
        self._refresh = refresh
        self._published: dict[str, tuple[tuple[str, str], ...]] = {}
        self._running: dict[str, asyncio.Task[Outcome | None]] = {}
        # the last blocked failure of each cluster and why, so it is told once, not every tick
        self._blocked: dict[str, tuple[str, str]] = {}
        # since when each instance's binlog coordinates stayed the same (LockedSemiSyncMaster)
        self._binlog_history: dict[InstanceKey, CoordinatesSeen] = {}

    # --- what operations (takeovers) use ---------------------------------------------------
    @property
    def snapshots(self) -> Mapping[InstanceKey, InstanceSnapshot]:
        return self._state.snapshots

    @property
    def promotion_rules(self) -> Mapping[InstanceKey, PromotionRule]:
        """Registered promotion rules (``register-candidate``), as last read from etcd."""
        return self._candidates

    @property
    def downtimed(self) -> Mapping[InstanceKey, datetime]:
        return self._downtimed

    def analysis_of(self, key: InstanceKey) -> Analysis | None:
        """``key``'s analysis now, problem or not (None: not known)."""
        for analysis in self.analyse(everything=True):
            if analysis.key == key:
                return analysis
        return None

    @contextlib.contextmanager
    def holding(self, cluster: str) -> Iterator[None]:
        """Run an operation on ``cluster`` as its recovery: refused while a recovery of the
        cluster runs, and no automated recovery of it starts until the operation ends."""
        running = self._running.get(cluster)
        if running is not None and not running.done():
            raise OperationRefused(f"a recovery of {cluster} is running; try again when it ends")
        task = cast("asyncio.Task[Outcome | None]", asyncio.current_task())
        self._running[cluster] = task
        try:
            yield
        finally:
            if self._running.get(cluster) is task:
                del self._running[cluster]

    # --- the leader's loop ------------------------------------------------------------------
    async def lead(self, guard: Guard, token: int) -> None:
        """Analyse and recover until cancelled (the election cancels on loss of leadership)."""
        next_demoted_check = 0.0
        try:
            while True:
                await self._state.wait_changed(self._options.tick)
                if time.monotonic() >= next_demoted_check:
                    next_demoted_check = time.monotonic() + self._options.demoted_check
                    try:
                        await self.refresh_operator_state()
                        await self.keep_demoted_fenced(guard)
                    except LeaseLost:
                        raise
                    except OrchestratorError as exc:  # etcd or an instance not answering
                        log.warning("reading operator state / returning old masters: %s", exc)
                suspects = self._drain_unreachable()
                # (with suspects, healthy-looking instances too: the snapshot of a master that
                # just died may still say it is fine)
                analyses = self.analyse(everything=bool(suspects))
                await self._publish_changes(analyses)
                for analysis in analyses:
                    # An instance with replicas that discovery just reported unreachable is
                    # verified at once, before its next snapshot says anything: the direct
                    # probes of the recovery decide whether it is a failure.
                    suspected = analysis.key in suspects and analysis.count_replicas > 0
                    if analysis.code in RECOVERABLE or suspected:
                        self._start(analysis, guard, token)
        finally:
            for task in self._running.values():
                task.cancel()

    def _drain_unreachable(self) -> set[InstanceKey]:
        found: set[InstanceKey] = set()
        while not self._state.unreachable.empty():
            found.add(self._state.unreachable.get_nowait())
        return found

    def analyse(
        self, snapshots: Iterable[InstanceSnapshot] | None = None, *, everything: bool = False
    ) -> list[Analysis]:
        """The fleet's analysis (problems only, unless ``everything``)."""
        seen = list(self._state.snapshots.values() if snapshots is None else snapshots)
        self._binlog_history = track_binlog_coordinates(self._binlog_history, seen)
        return analyze(
            seen,
            now=self._clock(),
            downtimed=self._downtimed,
            options=self._options.analysis,
            include_no_problem=everything,
            binlog_history=self._binlog_history,
        )

    def _start(self, analysis: Analysis, guard: Guard, token: int) -> None:
        cluster = analysis.cluster_name
        running = self._running.get(cluster)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self.recover(analysis, guard, token), name=f"recover {cluster}")
        self._running[cluster] = task
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Outcome | None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, LeaseLost):
            return
        if isinstance(error, OrchestratorError):  # etcd or the bus did not answer: next pass
            log.warning("%s stopped: %s; it is tried again", task.get_name(), error)
        else:
            log.error("recovery task %s failed: %r", task.get_name(), error, exc_info=error)

    async def _publish_changes(self, analyses: Sequence[Analysis]) -> None:
        now = self._clock()
        by_cluster: dict[str, list[Analysis]] = {}
        for analysis in analyses:
            if analysis.code is not AnalysisCode.NO_PROBLEM:
                by_cluster.setdefault(analysis.cluster_name, []).append(analysis)
        for cluster in set(by_cluster) | set(self._published):
            found = by_cluster.get(cluster, [])
            signature = tuple(sorted((str(a.key), a.code.value) for a in found))
            if self._published.get(cluster) == signature:
                continue
            if signature:
                self._published[cluster] = signature
            else:
                self._published.pop(cluster, None)
            problems = tuple(
                AnalysisProblem(
                    instance=str(a.key),
                    code=a.code.value,
                    description=a.description,
                    is_actionable=a.is_actionable,
                )
                for a in found
            )
            await self._publisher.analysis(
                AnalysisEvent(cluster=cluster, problems=problems, at=now)
            )

    async def refresh_operator_state(self) -> None:
        """Downtime and promotion rules registered through topology-api (kept in etcd)."""
        if self._operator_state is None:
            return
        now = self._clock()
        self._downtimed = await self._operator_state.downtimed(now)
        self._candidates = await self._operator_state.candidates(now)

    # --- returning old masters ---------------------------------------------------------------
    async def keep_demoted_fenced(self, guard: Guard) -> list[str]:
        """Probe each failed master of an unacknowledged recovery; one that answers writable
        (restarted with read_only off) is made read_only again and its clients cut off. It
        stays so, outside the cluster (it replicates from nobody), until an operator
        acknowledges the recovery. The keys fenced now."""
        fenced: list[str] = []
        records = await self._control.unacknowledged()
        for cluster, last in records.items():
            if not last.successor or not last.failed:
                continue
            key = InstanceKey.parse(last.failed)
            if self._back_in_service(key, last, records.values()):
                continue
            snapshot = await self._probe(key, self._state.snapshots.get(key))
            if not snapshot.probe.ok or snapshot.read_only:
                continue
            done, detail = await self._executor.fence(key, guard)
            await self._publisher.audit(
                AuditEvent(
                    type="fence-returning-master",
                    message=f"{key} came back writable after recovery {last.recovery_id}: "
                    + ("made read_only again" if done else f"could not fence it: {detail}"),
                    key=str(key),
                    cluster=cluster,
                    user=self._options.worker_id,
                    at=self._clock(),
                    ok=done,
                )
            )
            if done:
                fenced.append(str(key))
        return fenced

    def _back_in_service(
        self, key: InstanceKey, last: LastRecovery, records: Iterable[LastRecovery]
    ) -> bool:
        """Whether the failed master of ``last`` serves again since: a later recovery promoted
        it, or replicas replicate from it (an operator made it a master again). Fencing it
        then would make a live master read-only."""
        if any(r.successor == str(key) and r.ended_at > last.ended_at for r in records):
            return True
        return any(
            snapshot.master_key == key
            and snapshot.primary_channel is not None
            and snapshot.primary_channel.is_replicating
            for snapshot in self._state.snapshots.values()
        )

    # --- one recovery -------------------------------------------------------------------------
    async def verify(self, analysis: Analysis) -> Analysis:
        """The failure as the instances answer now: the failed one and its replicas probed
        directly (at once, concurrently), the fleet analysed again with their answers."""
        keys = [analysis.key, *analysis.replicas]
        known = self._state.snapshots
        fresh = await asyncio.gather(*(self._probe(key, known.get(key)) for key in keys))
        for snapshot in fresh:
            self._state.put(snapshot)
        for again in self.analyse():
            if again.key == analysis.key:
                return again
        return replace(analysis, code=AnalysisCode.NO_PROBLEM)

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
        verified = await self.verify(analysis) if verify else analysis
        if verified.code not in RECOVERABLE:
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
        )
        if not forced and await self._already_recovered(verified.key, now):
            return None  # this failure was recovered; what is left of it is lost replicas
        inherited = None if forced else await self._control.active(data.cluster)
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
                return await self._end(RecoveryPhase.COMPLETED, done, record=True)
            log.info(
                "recovery %s of %s was started by %s, which stopped leading before any "
                "promotion: planning it again from the facts",
                data.recovery_id,
                data.cluster,
                inherited.data.worker,
            )
        blocked = await self._gate(verified, data, now, forced=forced)
        if blocked and self._blocked.get(data.cluster) == (data.failed, blocked):
            return None  # still blocked for the same reason: said once already
        await self.announce(RecoveryPhase.DETECTED, data)
        if blocked:
            self._blocked[data.cluster] = (data.failed, blocked)
            return await self._end(RecoveryPhase.BLOCKED, replace_data(data, reason=blocked))
        self._blocked.pop(data.cluster, None)
        try:
            await self.run_hook("OnFailureDetectionProcesses", verified, data)
        except OperationRefused as exc:
            return await self._end(RecoveryPhase.FAILED, replace_data(data, reason=str(exc)))
        plan = self._planner.plan(
            verified,
            self._state.snapshots,
            forced=forced,
            requested=requested,
            candidates=self._candidates,
        )
        if isinstance(plan, Refused):
            ended = replace_data(data, reason=plan.reason, rejected=dict(plan.rejected))
            await self.run_hook("PostUnsuccessfulFailoverProcesses", verified, ended)
            return await self._end(RecoveryPhase.FAILED, ended, record=True)
        data = replace_data(
            data,
            successor=plan.successor,
            rejected=dict(plan.rejected),
            lost=dict(plan.lost),
        )
        await self._control.set_active(RecoveryPhase.STARTED, data)
        await self.announce(RecoveryPhase.STARTED, data)
        try:
            await self.run_hook("PreFailoverProcesses", verified, data)
            await guard()
            if verified.code in MASTER_FAILURES:
                successor, repointed, lost = await self._executor.fail_over_master(plan.plan, guard)
                data = replace_data(
                    data, successor=successor, repointed=repointed, lost={**data.lost, **lost}
                )
                await self._control.set_active(RecoveryPhase.PROMOTED, data)
                await self.announce(RecoveryPhase.PROMOTED, data)
            else:
                moved, lost = await self._executor.relocate(plan.plan, guard)
                data = replace_data(data, repointed=moved, lost={**data.lost, **lost})
        except OperationRefused as exc:
            failed = replace_data(data, reason=str(exc))
            await self.run_hook("PostUnsuccessfulFailoverProcesses", verified, failed)
            return await self._end(RecoveryPhase.FAILED, failed, record=True)
        await self.refresh_involved(data)
        outcome = await self._end(RecoveryPhase.COMPLETED, data, record=True)
        post = (
            "PostMasterFailoverProcesses"
            if verified.code in MASTER_FAILURES
            else "PostIntermediateMasterFailoverProcesses"
        )
        await self.run_hook(post, verified, outcome.data)
        await self.run_hook("PostFailoverProcesses", verified, outcome.data)
        return outcome

    async def run_hook(self, stage: str, analysis: Analysis, data: RecoveryData) -> None:
        if self._hooks is not None:
            await self._hooks.run(stage, analysis, data)

    async def _already_recovered(self, key: InstanceKey, now: datetime) -> bool:
        """Whether ``key`` is the failed instance of a recovery still in its block period: its
        failure was handled (a successor took over); it stays dead, perhaps with replicas
        that could not follow, and that is not a new failure to recover."""
        return any(
            last.failed == str(key)
            and last.successor
            and last.blocks(now, self._options.block_period)
            for last in (await self._control.unacknowledged()).values()
        )

    async def _gate(
        self, analysis: Analysis, data: RecoveryData, now: datetime, *, forced: bool
    ) -> str:
        """Why this recovery must not run (empty: it may)."""
        if forced:
            return ""
        switch = await self._control.global_switch()
        if switch.disabled:
            by = f" by {switch.by}" if switch.by else ""
            return f"automated recoveries are disabled globally{by}"
        if analysis.is_downtimed or analysis.skippable_due_to_downtime:
            return f"{analysis.key} is downtimed"
        last = await self._control.last(data.cluster)
        if last is not None and last.blocks(now, self._options.block_period):
            until = last.ended_at + self._options.block_period
            return (
                f"cluster {data.cluster} was recovered at {last.ended_at.isoformat()} "
                f"(recovery {last.recovery_id}); blocked until {until.isoformat()} "
                "unless acknowledged (ack-cluster-recoveries)"
            )
        return ""

    async def _end(
        self, phase: RecoveryPhase, data: RecoveryData, *, record: bool = False
    ) -> Outcome:
        ended = replace_data(data, ended_at=self._clock())
        if record:
            await self._control.finish(ended, ended_at=ended.ended_at or self._clock())
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
        keys = [data.failed, *([data.successor] if data.successor else []), *data.repointed]
        try:
            await self._refresh([InstanceKey.parse(key) for key in keys])
        except Exception as exc:
            log.warning("asking discovery to probe again after recovery: %s", exc)


def replace_data(data: RecoveryData, **changes: object) -> RecoveryData:
    return data.model_copy(update=changes)
