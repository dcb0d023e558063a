"""What the recovery worker (:mod:`orchestrator_recovery.failover.worker`) works with: which
analysis codes it recovers, its options, the values its planner and executor hand back, and the
ports it is given (hooks, publisher, planner, executor), as ``Protocol`` classes that the unit
tests fill with fakes and :mod:`orchestrator_recovery.wiring` with the real thing.

A plan travels typed: the planner answers a :class:`MasterPlanned`, :class:`RelocationPlanned`
or :class:`SemiSyncPlanned`, and the worker hands its ``plan`` to the executor's method for that
kind, which takes exactly that plan type (the fakes may put any value there: the worker never
looks inside a plan).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.hooks import HookStage
from orchestrator_shared.analysis import Analysis, AnalysisCode, AnalysisOptions
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.events import (
    AnalysisEvent,
    AuditEvent,
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import MasterPlan, RelocationPlan, SemiSyncMode, SemiSyncPlan
from orchestrator_shared.snapshot import InstanceSnapshot

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
"""The failures recovered by a failover (a promotion or a relocation)."""
GALERA_FAILURES = MASTER_FAILURES | {AnalysisCode.GALERA_NON_PRIMARY_COMPONENT}
"""A Galera node's failures that relocate its async replicas under another node of its Galera
cluster (docs/galera.md): it died (to the analysis, a dead master), or it answers outside the
primary component (recovered only when it has replicas: :func:`is_recoverable`)."""


def is_recoverable(analysis: Analysis) -> bool:
    """Whether a failover recovers ``analysis``: a dead (intermediate) master, or a Galera
    node outside the primary component when that is actionable (it has async replicas to
    relocate: :attr:`Analysis.is_actionable`)."""
    if analysis.code in RECOVERABLE:
        return True
    return analysis.code is AnalysisCode.GALERA_NON_PRIMARY_COMPONENT and analysis.is_actionable


SEMI_SYNC_FAILURES = frozenset(
    {AnalysisCode.LOCKED_SEMI_SYNC_MASTER, AnalysisCode.MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS}
)
"""Recovered by changing the replicas' semi-sync setting, only when ``WorkerOptions.semi_sync``
is set (``RecoverLockedSemiSyncMaster`` / ``EnforceExactSemiSyncReplicas``)."""

Probe = Callable[[InstanceKey, InstanceSnapshot | None], Awaitable[InstanceSnapshot]]

Isolate = Callable[[str, str], AbstractContextManager[None]]
"""Runs one cluster's step so that an unexpected failure there does not stop the other
clusters' (the worker's ``_isolated``, given ``(cluster, what it is doing)``)."""

Handler = Callable[[CommandRequest], Awaitable[CommandReply]]
"""One operator command: the request in, the reply out (errors raised as OrchestratorError/
ValueError become a refused reply with their message)."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    worker_id: str
    source: str  # CloudEvents ``source``
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    tick: float = 0.25  # seconds between analyses when nothing changes
    # how often demoted masters are probed (a returning one is made read_only again)
    demoted_check: float = 0.5
    block_period: timedelta = timedelta(seconds=3600)  # RecoveryPeriodBlockSeconds
    # semi-sync recoveries: None (neither setting), or EnforceExactSemiSyncReplicas (EXACT,
    # which wins) / RecoverLockedSemiSyncMaster (AT_LEAST)
    semi_sync: SemiSyncMode | None = None
    # DetachLostReplicasAfterMasterFailover: lost replicas get detach-replica-master-host
    detach_lost: bool = True


class StandbyFenceLinks(Protocol):
    """Links kept open to the masters, to fence a hung one the moment it wakes
    (:class:`orchestrator_recovery.standby_fence.StandbyFence`)."""

    def keep(self, masters: Iterable[InstanceKey]) -> None: ...

    async def fence(self, key: InstanceKey, guard: Guard, *, within: float) -> bool: ...

    def close(self) -> None: ...


PlanT = TypeVar("PlanT")


@dataclass(frozen=True, slots=True)
class Planned(Generic[PlanT]):
    """A plan ready to execute: ``plan`` is the pure planner's own value, for the executor;
    the rest is what the worker tells about it. Answered as one of the three kinds below."""

    plan: PlanT
    successor: str  # host:port, empty for an intermediate master's relocation
    rejected: Mapping[str, str]
    lost: Mapping[str, str]
    postponed: tuple[str, ...] = ()  # replicas a master failover moves after completing
    galera: bool = False  # the failed instance is a Galera node (its replicas relocated)


class MasterPlanned(Planned[MasterPlan]):
    """A dead master's failover, for :meth:`Executor.fail_over_master`."""

    __slots__ = ()


class RelocationPlanned(Planned[RelocationPlan]):
    """A dead intermediate master's replicas relocated (or a failed Galera node's, with
    ``galera``), for :meth:`Executor.relocate`."""

    __slots__ = ()


class SemiSyncPlanned(Planned[SemiSyncPlan]):
    """Semi-sync turned on or off on replicas, for :meth:`Executor.semi_sync`."""

    __slots__ = ()


AnyPlanned = MasterPlanned | RelocationPlanned | SemiSyncPlanned
"""What a planner answers when it has a plan."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    rejected: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MasterResult:
    """What a master failover did (keys as ``host:port``)."""

    successor: str
    repointed: tuple[str, ...]
    lost: Mapping[str, str]  # replica -> why it could not follow
    postponed: tuple[str, ...] = ()  # IO thread stopped; to be moved after the recovery
    promotion_applied: bool = True  # False: left to the hooks (read_only, not reset)
    # how long the executor took to make the successor writable and to move the replicas, in
    # ms by ``TimedPhase`` name (``promote``, ``repoint``)
    phases: Mapping[str, float] = field(default_factory=dict)


Failures = dict[str, str]
"""What a step on several replicas hands back: replica (``host:port``) -> why the step failed
on it; a replica not named succeeded."""


@dataclass(frozen=True, slots=True)
class Relocated:
    """What a relocation did (keys as ``host:port``)."""

    moved: tuple[str, ...]
    lost: Mapping[str, str]  # replica -> why it could not be moved


@dataclass(frozen=True, slots=True)
class Fenced:
    """What fencing a returning old master did."""

    fenced: bool  # made read_only again, its clients cut off
    detail: str  # what was done, or why it could not be


@dataclass(frozen=True, slots=True)
class SemiSyncResult:
    """What a semi-sync recovery did (keys as ``host:port``)."""

    changed: Mapping[str, bool]  # replica -> semi-sync turned on (True) or off (False)
    failed: Mapping[str, str]  # replica -> why its change failed
    reached: bool  # the master counts the semi-sync replicas the plan aimed for
    detail: str  # one sentence: what the master counts now


class Hooks(Protocol):
    """The operator's hooks (``orchestrator_recovery.wiring.ShellHooks``): ``stage`` names an
    orchestrator hook setting (its value is the setting's name); a failing ``Pre*`` /
    ``OnFailureDetection`` hook raises ``OperationRefused`` (the recovery is refused), ``Post*``
    failures are only recorded."""

    async def run(self, stage: HookStage, analysis: Analysis, data: RecoveryData) -> None: ...


class Publisher(Protocol):
    """Where events go (``orchestrator_recovery.publisher.EventPublisher``)."""

    async def recovery(self, event: RecoveryEvent) -> bool: ...
    async def analysis(self, event: AnalysisEvent) -> bool: ...
    async def audit(self, event: AuditEvent) -> bool: ...
    async def promoted(self, data: RecoveryData, *, demoted_replicates: bool = False) -> None:
        """The successor is writable: tell topology-api now (``MasterChanged``)."""
        ...


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
    ) -> AnyPlanned | Refused: ...


class Executor(Protocol):
    """How a plan is carried out against MySQL (``orchestrator_recovery.wiring.MySQLExecutor``)."""

    async def fail_over_master(
        self,
        plan: MasterPlan,
        guard: Guard,
        *,
        on_writable: Callable[[], Awaitable[None]] | None = None,
    ) -> MasterResult:
        """Carry out a master plan; ``on_writable`` is awaited the moment the successor is
        writable (not when the promotion is left to the hooks)."""
        ...

    async def relocate(self, plan: RelocationPlan, guard: Guard) -> Relocated:
        """Carry out an intermediate-master plan."""
        ...

    async def semi_sync(self, plan: SemiSyncPlan, guard: Guard) -> SemiSyncResult:
        """Carry out a semi-sync plan."""
        ...

    async def move_postponed(
        self, successor: str, replicas: tuple[str, ...], guard: Guard
    ) -> Failures:
        """Move replicas a master failover postponed under its successor; why each one that
        could not be moved was not (it is then left with replication stopped)."""
        ...

    async def detach_lost(self, replicas: tuple[str, ...], guard: Guard) -> Failures:
        """``detach-replica-master-host`` on each lost replica; why each one that could not
        be detached was not."""
        ...

    async def fence(self, key: InstanceKey, guard: Guard) -> Fenced:
        """Make a returning old master read_only again."""
        ...


@dataclass
class Outcome:
    """How one recovery ended (for tests and the command replies)."""

    phase: RecoveryPhase
    data: RecoveryData
