"""The recovery worker's decisions, with fakes for its ports (probe, bus, etcd, planner,
executor): what it verifies, when it refuses or is blocked, and what it tells."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator_recovery.failover.recovering import PlanMismatch
from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.fleet import FleetState
from orchestrator_recovery.ports import (
    Fenced,
    Guard,
    Hooks,
    MasterPlanned,
    MasterResult,
    Planned,
    Refused,
    Relocated,
    RelocationPlanned,
    SemiSyncResult,
    StandbyFenceLinks,
    WorkerOptions,
)
from orchestrator_shared.analysis import Analysis, AnalysisCode, analyze
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.etcd.recovery import OperatorState, RecoveryControl
from orchestrator_shared.events import (
    AnalysisEvent,
    AuditEvent,
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime, PromotionRule
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot

pytestmark = pytest.mark.unit

MASTER, R1, R2 = "db:1", "db:2", "db:3"
BROKEN_IO = {"io": "Connecting", "io_error": "Can't connect to MySQL server (111)"}
GTID = {"version": "10.11.6-MariaDB-log", "using_gtid": "Slave_Pos"}


def fleet(
    *,
    master_ok: bool,
    replicas: Mapping[str, Any],
    master: str = MASTER,
    members: tuple[str, ...] = (R1, R2),
) -> dict[InstanceKey, InstanceSnapshot]:
    snaps = [instance_snapshot(master, {**GTID, "ok": master_ok})]
    snaps += [
        instance_snapshot(key, {**GTID, "master": master, "read_only": True, **replicas})
        for key in members
    ]
    return {snap.instance_key: snap for snap in snaps}


class FakeKV:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        self.data[key] = value
        return 1

    async def get(self, key: bytes) -> tuple[Any, int]:
        value = self.data.get(key)
        return (None if value is None else type("KV", (), {"value": value})()), 1

    async def delete(self, key: bytes) -> bool:
        return self.data.pop(key, None) is not None

    async def get_prefix(self, prefix: bytes) -> tuple[list[Any], int]:
        found = [
            type("KV", (), {"key": key, "value": value})()
            for key, value in sorted(self.data.items())
            if key.startswith(prefix)
        ]
        return found, 1


class FakePublisher:
    def __init__(self) -> None:
        self.recoveries: list[RecoveryEvent] = []
        self.audits: list[AuditEvent] = []
        self.analyses: list[AnalysisEvent] = []
        self.promotions: list[RecoveryData] = []

    async def recovery(self, event: RecoveryEvent) -> bool:
        self.recoveries.append(event)
        return True

    async def analysis(self, event: AnalysisEvent) -> bool:
        self.analyses.append(event)
        return True

    async def audit(self, event: AuditEvent) -> bool:
        self.audits.append(event)
        return True

    async def promoted(self, data: RecoveryData, *, demoted_replicates: bool = False) -> None:
        self.promotions.append(data)

    @property
    def phases(self) -> list[RecoveryPhase]:
        return [event.phase for event in self.recoveries]


class FakePlanner:
    def __init__(self, answer: Planned | Refused) -> None:
        self.answer = answer
        self.asked: list[Analysis] = []

    def plan(
        self,
        analysis: Analysis,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        *,
        forced: bool,
        requested: InstanceKey | None,
        candidates: Mapping[InstanceKey, Any],
    ) -> Planned | Refused:
        self.asked.append(analysis)
        return self.answer


class FakeExecutor:
    def __init__(self, result: MasterResult | None = None) -> None:
        self.executed: list[object] = []
        self.fenced: list[InstanceKey] = []
        self.result = result or MasterResult(successor=R1, repointed=(R2,), lost={})
        self.semi_sync_result = SemiSyncResult(changed={}, failed={}, reached=True, detail="")
        self.moved_later: list[tuple[str, tuple[str, ...]]] = []
        self.detached: list[tuple[str, ...]] = []
        self.move_failures: dict[str, str] = {}

    async def fail_over_master(
        self,
        plan: object,
        guard: Guard,
        *,
        on_writable: Callable[[], Awaitable[None]] | None = None,
    ) -> MasterResult:
        await guard()
        self.executed.append(plan)
        if on_writable is not None and self.result.promotion_applied:
            await on_writable()
        return self.result

    async def semi_sync(self, plan: object, guard: Guard) -> SemiSyncResult:
        await guard()
        self.executed.append(plan)
        return self.semi_sync_result

    async def move_postponed(
        self, successor: str, replicas: tuple[str, ...], guard: Guard
    ) -> dict[str, str]:
        await guard()
        self.moved_later.append((successor, replicas))
        return dict(self.move_failures)

    async def detach_lost(self, replicas: tuple[str, ...], guard: Guard) -> dict[str, str]:
        await guard()
        self.detached.append(replicas)
        return {}

    async def relocate(self, plan: object, guard: Guard) -> Relocated:
        await guard()
        self.executed.append(plan)
        return Relocated(moved=(R2,), lost={})

    async def fence(self, key: InstanceKey, guard: Guard) -> Fenced:
        await guard()
        self.fenced.append(key)
        return Fenced(fenced=True, detail="read_only")


class Harness:
    def __init__(
        self,
        *,
        now_answers: dict[InstanceKey, InstanceSnapshot],
        plan: Planned | Refused,
        options: WorkerOptions | None = None,
        hooks: Hooks | None = None,
        executor: FakeExecutor | None = None,
        standby_fence: StandbyFenceLinks | None = None,
    ) -> None:
        self.state = FleetState()
        self.answers = now_answers
        self.kv = FakeKV()
        self.control = RecoveryControl(self.kv)
        self.publisher = FakePublisher()
        self.planner = FakePlanner(plan)
        self.executor = executor or FakeExecutor()
        self.guards = 0
        self.worker = RecoveryWorker(
            options
            or WorkerOptions(worker_id="w1", source="test", block_period=timedelta(minutes=10)),
            self.state,
            probe=self.probe,
            publisher=self.publisher,
            control=self.control,
            planner=self.planner,
            executor=self.executor,
            hooks=hooks,
            standby_fence=standby_fence,
            clock=lambda: NOW + timedelta(seconds=1),
        )

    async def probe(self, key: InstanceKey, previous: InstanceSnapshot | None) -> InstanceSnapshot:
        return self.answers[key]

    async def guard(self) -> None:
        self.guards += 1

    def suspect(self, snapshots: Mapping[InstanceKey, InstanceSnapshot]) -> Analysis:
        master = next(s for s in snapshots.values() if not s.channels)
        for key in list(self.state.snapshots):
            self.state.forget(key)
        for snap in snapshots.values():
            self.state.put(snap)
        [found] = [
            a
            for a in analyze(snapshots.values(), now=NOW + timedelta(seconds=1))
            if a.key == master.instance_key
        ]
        return found


PLANNED = MasterPlanned(plan="the plan", successor=R1, rejected={R2: "behind db:2"}, lost={})
DEAD = fleet(master_ok=False, replicas=BROKEN_IO)
DEAD_AGAIN = fleet(master_ok=False, replicas=BROKEN_IO, master=R1, members=(R2,))


async def test_a_confirmed_dead_master_is_recovered_and_told() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    outcome = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    assert run.publisher.phases == [
        RecoveryPhase.DETECTED,
        RecoveryPhase.STARTED,
        RecoveryPhase.PROMOTED,
        RecoveryPhase.COMPLETED,
    ]
    done = run.publisher.recoveries[-1].data
    assert (done.successor, done.repointed, done.fencing_token) == (R1, (R2,), 7)
    assert done.rejected == {R2: "behind db:2"}
    assert run.executor.executed == ["the plan"] and run.guards >= 1
    # the API was told the successor as soon as it was promoted, before the events
    [told] = run.publisher.promotions
    assert (told.failed, told.successor, told.fencing_token) == (MASTER, R1, 7)
    # the block period starts; nothing is left in flight
    last = await run.control.last(R1)  # the cluster now goes by its new master's name
    assert last is not None and (last.failed, last.successor) == (MASTER, R1)
    assert await run.control.active(MASTER) is None


async def test_a_master_unreachable_for_us_only_is_not_recovered() -> None:
    # snapshots said dead, but its replicas still replicate when asked directly
    still_replicating = fleet(master_ok=False, replicas={})
    run = Harness(now_answers=still_replicating, plan=PLANNED)
    outcome = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert outcome is None
    assert run.publisher.recoveries == [] and run.executor.executed == []


async def test_a_refused_plan_fails_with_its_reason_and_nothing_runs() -> None:
    refused = Refused(reason="no replica has every transaction", rejected={R1: "delayed"})
    run = Harness(now_answers=DEAD, plan=refused)
    outcome = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.FAILED
    assert run.publisher.phases == [RecoveryPhase.DETECTED, RecoveryPhase.FAILED]
    assert run.publisher.recoveries[-1].data.reason == "no replica has every transaction"
    assert run.publisher.recoveries[-1].data.rejected == {R1: "delayed"}
    assert run.executor.executed == [] and run.publisher.promotions == []


async def test_disabled_recoveries_and_the_block_period_block() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.control.disable(by="alice", at=NOW)
    outcome = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.BLOCKED
    assert "disabled globally by alice" in outcome.data.reason
    await run.control.enable()
    first = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert first is not None and first.phase is RecoveryPhase.COMPLETED
    # the new master (R1) dies too, inside the block period: the cluster, now named after R1,
    # is blocked
    run.planner.answer = MasterPlanned(plan="plan 2", successor=R2, rejected={}, lost={})
    run.answers = DEAD_AGAIN
    second = await run.worker.recover(run.suspect(DEAD_AGAIN), run.guard, 7)
    assert second is not None and second.phase is RecoveryPhase.BLOCKED
    assert "blocked until" in second.data.reason
    told = len(run.publisher.recoveries)
    # the same failure, still blocked for the same reason: not told again
    assert await run.worker.recover(run.suspect(DEAD_AGAIN), run.guard, 7) is None
    assert len(run.publisher.recoveries) == told
    assert await run.control.acknowledge(R1, by="bob")
    third = await run.worker.recover(run.suspect(DEAD_AGAIN), run.guard, 7)
    assert third is not None and third.phase is RecoveryPhase.COMPLETED
    # a forced recovery ignores the gates
    run.answers = DEAD
    forced = await run.worker.recover(run.suspect(DEAD), run.guard, 7, forced=True)
    assert forced is not None and forced.phase is RecoveryPhase.COMPLETED
    assert len(run.executor.executed) == 3


class RefusingExecutor(FakeExecutor):
    """Refuses the first failover (its candidate's link broke), then carries them out."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    async def fail_over_master(
        self,
        plan: object,
        guard: Guard,
        *,
        on_writable: Callable[[], Awaitable[None]] | None = None,
    ) -> MasterResult:
        if self.refusals:
            self.refusals -= 1
            raise OperationRefused("the successor failed: connection reset by peer")
        return await super().fail_over_master(plan, guard, on_writable=on_writable)


async def test_a_refused_failover_blocks_the_cluster_under_its_name_until_acknowledged() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED, executor=RefusingExecutor())
    failed = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert failed is not None and failed.phase is RecoveryPhase.FAILED
    assert failed.data.successor == R1  # the event says which candidate was tried
    # nobody was promoted: the record keeps the cluster's name and names no successor, so
    # the dead master is not taken for a handled failure (and skipped silently, for good) ...
    last = await run.control.last(MASTER)
    assert last is not None and (last.failed, last.successor) == (MASTER, "")
    assert await run.control.last(R1) is None
    # ... the next attempt is blocked, and says so ...
    again = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert again is not None and again.phase is RecoveryPhase.BLOCKED
    assert "blocked until" in again.data.reason
    # ... until the operator acknowledges the cluster by the name the events gave it
    assert await run.control.acknowledge(failed.data.cluster, by="ops")
    done = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert done is not None and done.phase is RecoveryPhase.COMPLETED


async def test_analysis_changes_are_published_once_per_change() -> None:
    run = Harness(now_answers=DEAD, plan=Refused(reason="r", rejected={}))
    run.suspect(DEAD)
    analyses = run.worker.analyse()
    await run.worker._publish_changes(analyses)
    await run.worker._publish_changes(analyses)
    assert len(run.publisher.analyses) == 1
    codes = {p.code for p in run.publisher.analyses[0].problems}
    assert AnalysisCode.DEAD_MASTER.value in codes
    await run.worker._publish_changes([])
    assert run.publisher.analyses[-1].problems == ()


async def test_a_returning_old_master_is_fenced_until_acknowledged() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    # the old master restarts writable (its my.cnf says read_only=OFF), replicating from nobody
    run.answers = {**DEAD, InstanceKey.parse(MASTER): instance_snapshot(MASTER, {**GTID})}
    assert await run.worker.keep_demoted_fenced(run.guard) == [MASTER]
    assert run.executor.fenced == [InstanceKey.parse(MASTER)]
    assert run.publisher.audits[-1].type == "fence-returning-master"
    # once it answers read_only, it is left alone (no connections killed again)
    run.answers = {
        **DEAD,
        InstanceKey.parse(MASTER): instance_snapshot(MASTER, {**GTID, "read_only": True}),
    }
    assert await run.worker.keep_demoted_fenced(run.guard) == []
    # the operator acknowledges the recovery: it is theirs to bring back
    run.answers = {**DEAD, InstanceKey.parse(MASTER): instance_snapshot(MASTER, {**GTID})}
    await run.control.acknowledge(R1, by="ops")  # the cluster goes by its new master's name
    assert await run.worker.keep_demoted_fenced(run.guard) == []


async def test_a_failed_master_serving_again_is_not_fenced() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    writable = {**DEAD, InstanceKey.parse(MASTER): instance_snapshot(MASTER, {**GTID})}
    run.answers = writable
    # an operator made it a master again: a replica replicates from it
    served = instance_snapshot(R2, {**GTID, "master": MASTER, "read_only": True})
    run.state.put(served)
    assert await run.worker.keep_demoted_fenced(run.guard) == []
    assert run.executor.fenced == []
    # without replicas it is fenced ...
    run.state.put(instance_snapshot(R2, {**GTID, "master": R1, "read_only": True}))
    assert await run.worker.keep_demoted_fenced(run.guard) == [MASTER]
    # ... until a later recovery promotes it (the cluster it was put back in lost its master)
    await run.control.finish(
        RecoveryData(
            recovery_id="later",
            cluster=R1,
            analysis="DeadMaster",
            failed=R1,
            successor=MASTER,
        ),
        ended_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert await run.worker.keep_demoted_fenced(run.guard) == []


async def test_a_failed_master_promoted_by_a_takeover_is_not_fenced() -> None:
    """A graceful takeover onto the failed master makes it writable before the replicas'
    snapshots say they follow it: it is left alone while it is being promoted, and after,
    since the takeover is recorded; its death is a new failure then."""
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    run.answers = {**DEAD, InstanceKey.parse(MASTER): instance_snapshot(MASTER, {**GTID})}
    with run.worker.promoting(InstanceKey.parse(MASTER)):
        assert await run.worker.keep_demoted_fenced(run.guard) == []
        takeover = RecoveryData(
            recovery_id="takeover",
            cluster=R1,
            analysis="DeadMaster",
            failed=R1,
            successor=MASTER,
        )
        await run.control.took_over(takeover, ended_at=NOW + timedelta(minutes=5))
    assert await run.worker.keep_demoted_fenced(run.guard) == []
    assert run.executor.fenced == []
    # it dies again as the master of R1 and R2: a new failure, recovered (not "already")
    run.answers = DEAD
    again = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert again is not None and again.phase is RecoveryPhase.COMPLETED
    # the takeover starts no block period and is nothing to acknowledge
    assert await run.control.last(MASTER) is None
    assert await run.control.unacknowledged_clusters() == {R1}


class FakeHooks:
    def __init__(self, failing: str = "") -> None:
        self.failing = failing
        self.ran: list[tuple[str, str]] = []

    async def run(self, stage: str, analysis: Analysis, data: Any) -> None:
        self.ran.append((stage, data.successor))
        if stage == self.failing:
            raise OperationRefused(f"{stage} hook exited with 1")


async def test_hooks_run_in_orchestrator_order_and_a_failing_pre_hook_aborts() -> None:
    hooks = FakeHooks()
    run = Harness(now_answers=DEAD, plan=PLANNED, hooks=hooks)
    done = await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert done is not None and done.phase is RecoveryPhase.COMPLETED
    assert hooks.ran == [
        ("OnFailureDetectionProcesses", ""),
        ("PreFailoverProcesses", R1),
        ("PostMasterFailoverProcesses", R1),
        ("PostFailoverProcesses", R1),
    ]
    failing = FakeHooks(failing="PreFailoverProcesses")
    aborted = Harness(now_answers=DEAD, plan=PLANNED, hooks=failing)
    outcome = await aborted.worker.recover(aborted.suspect(DEAD), aborted.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.FAILED
    assert outcome.data.reason == "PreFailoverProcesses hook exited with 1"
    assert aborted.executor.executed == []  # nothing was changed
    assert failing.ran[-1][0] == "PostUnsuccessfulFailoverProcesses"
    assert await aborted.control.active(MASTER) is None


async def test_operator_state_keeps_downtime_and_promotion_rules_until_they_end() -> None:
    state = OperatorState(FakeKV())
    key = InstanceKey.parse(R1)
    now = NOW
    await state.begin_downtime(
        Downtime(
            key=key, owner="ops", reason="disk", begins_at=now, ends_at=now + timedelta(hours=1)
        )
    )
    await state.register_candidate(
        Candidate(
            key=key,
            rule=PromotionRule.MUST_NOT,
            registered_at=now,
            expires_at=now + timedelta(minutes=60),
        )
    )
    assert await state.downtimed(now) == {key: now + timedelta(hours=1)}
    assert await state.candidates(now) == {key: PromotionRule.MUST_NOT}
    later = now + timedelta(hours=2)
    assert await state.downtimed(later) == {} and await state.candidates(later) == {}
    await state.end_downtime(key)
    assert await state.downtimed(now) == {}


async def test_an_operation_holding_a_cluster_keeps_recoveries_out_and_is_refused_during_one() -> (
    None
):
    run = Harness(now_answers=DEAD, plan=PLANNED)
    analysis = run.suspect(DEAD)
    with run.worker.holding(analysis.cluster_name):
        # an automated recovery of the cluster does not start while a takeover holds it
        run.worker._start(analysis, run.guard, 7)
        assert run.executor.executed == [] and run.publisher.recoveries == []
    # released: the next pass starts it; while it runs, the operation is refused
    run.worker._start(analysis, run.guard, 7)
    with (
        pytest.raises(OperationRefused, match="a recovery of db:1 is running"),
        run.worker.holding(analysis.cluster_name),
    ):
        pass
    running = run.worker._running[analysis.cluster_name]
    outcome = await running
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    with run.worker.holding(analysis.cluster_name):  # free again once it ended
        assert run.worker.analysis_of(InstanceKey.parse(MASTER)) is not None


async def test_a_plan_of_another_kind_than_the_failure_is_a_bug_and_changes_nothing() -> None:
    # a dead master planned as a relocation (a planner bug): nothing is executed
    relocation = RelocationPlanned(plan="moves", successor="", rejected={}, lost={})
    run = Harness(now_answers=DEAD, plan=relocation)
    with pytest.raises(PlanMismatch, match="RelocationPlanned"):
        await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert run.executor.executed == [] and RecoveryPhase.STARTED not in run.publisher.phases
