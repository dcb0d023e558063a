"""The recovery worker with orchestrator's recovery settings (issue 10), fakes for its ports:
the aftermath of a master failover (postponed replicas moved, lost ones detached), a promotion
left to the hooks, semi-sync recoveries (events, hooks, their own block period) and
``RecoveryIgnoreHostnameFilters`` (no analysis, so no recovery; ``recover`` says why)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, cast

import pytest

from orchestrator_recovery.operations.commands import CommandResponder, Leadership
from orchestrator_recovery.ports import MasterResult, SemiSyncPlanned, SemiSyncResult, WorkerOptions
from orchestrator_shared.analysis import AnalysisCode, AnalysisOptions
from orchestrator_shared.bus import CommandRequest, Subjects
from orchestrator_shared.command_signing import CommandVerifier
from orchestrator_shared.etcd.recovery import RecordKind
from orchestrator_shared.events import RecoveryData, RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.recovery import SemiSyncMode
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot
from tests.unit.test_recovery_worker import (
    BROKEN_IO,
    DEAD,
    GTID,
    MASTER,
    PLANNED,
    R1,
    R2,
    FakeExecutor,
    FakeHooks,
    Harness,
    fleet,
)

pytestmark = pytest.mark.unit

R3 = "db:4"
OPTIONS = WorkerOptions(worker_id="w1", source="test", block_period=timedelta(minutes=10))
DEAD3 = fleet(master_ok=False, replicas=BROKEN_IO, members=(R1, R2, R3))


def events(run: Harness) -> list[tuple[str, str, bool]]:
    return [(event.type, event.key, event.ok) for event in run.publisher.audits]


def command_responder(run: Harness) -> CommandResponder:
    """The worker's command handlers over ``run`` (no bus; ``handle`` is called directly)."""

    async def guard() -> object:
        return None

    return CommandResponder(
        cast("Any", None),
        Subjects(),
        run.worker,
        run.control,
        Leadership(lambda: True, guard, lambda: 1),
        verifier=CommandVerifier(""),  # handle() is called directly: nothing to verify
    )


# --- the aftermath of a master failover ---------------------------------------------------------


async def test_postponed_replicas_are_moved_after_completed_and_lost_ones_detached() -> None:
    result = MasterResult(
        successor=R1, repointed=(), lost={R3: "has errant GTIDs"}, postponed=(R2,)
    )
    run = Harness(now_answers=DEAD3, plan=PLANNED, executor=FakeExecutor(result))
    outcome = await run.worker.recover(run.suspect(DEAD3), run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    done = run.publisher.recoveries[-1].data
    assert (done.postponed, done.lost) == ((R2,), {R3: "has errant GTIDs"})
    assert "postponed (moved after the recovery): db:3" in run.publisher.audits[-1].message
    # the recovery did not wait for them; they are handled in the background
    await run.worker.aftermath.wait()
    assert run.executor.moved_later == [(R1, (R2,))]
    assert run.executor.detached == [(R3,)]
    [moved] = [e for e in run.publisher.audits if e.type == "recovery-postponed-replica"]
    assert (moved.key, moved.ok, moved.cluster) == (R2, True, R1)
    assert moved.message == f"{R2} moved under {R1} after recovery {done.recovery_id}"


async def test_a_postponed_replica_that_cannot_move_is_audited_not_forgotten() -> None:
    result = MasterResult(successor=R1, repointed=(R3,), lost={}, postponed=(R2,))
    executor = FakeExecutor(result)
    executor.move_failures = {R2: "not replicating from db:2 within 1s"}
    options = dataclasses.replace(OPTIONS, detach_lost=False)
    run = Harness(now_answers=DEAD3, plan=PLANNED, executor=executor, options=options)
    await run.worker.recover(run.suspect(DEAD3), run.guard, 7)
    await run.worker.aftermath.wait()
    [failed] = [e for e in run.publisher.audits if e.type == "recovery-postponed-replica"]
    assert not failed.ok
    assert "could not be moved under db:2" in failed.message
    assert "not replicating from db:2 within 1s; it is left with replication stopped" in (
        failed.message
    )
    assert run.executor.detached == []  # nothing lost; and detaching is off anyway


async def test_detaching_lost_replicas_is_off_with_the_setting() -> None:
    result = MasterResult(successor=R1, repointed=(R2,), lost={R3: "errant"})
    options = dataclasses.replace(OPTIONS, detach_lost=False)
    run = Harness(now_answers=DEAD3, plan=PLANNED, executor=FakeExecutor(result), options=options)
    await run.worker.recover(run.suspect(DEAD3), run.guard, 7)
    await run.worker.aftermath.wait()
    assert run.executor.detached == [] and run.executor.moved_later == []


async def test_a_leader_finishing_a_promoted_recovery_still_moves_its_postponed_replicas() -> None:
    run = Harness(now_answers=DEAD3, plan=PLANNED)
    first = await run.worker.recover(run.suspect(DEAD3), run.guard, 7)
    assert first is not None
    # a recovery recorded as promoted by a worker that died before completing it
    promoted = first.data.model_copy(
        update={"recovery_id": "r-2", "postponed": (R2,), "worker": "w0", "ended_at": None}
    )
    await run.control.set_active(RecoveryPhase.PROMOTED, promoted)
    await run.control.acknowledge(R1, by="ops")  # its block period is not what this is about
    outcome = await run.worker.recover(run.suspect(DEAD3), run.guard, 8)
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    assert outcome.data.recovery_id == "r-2"
    await run.worker.aftermath.wait()
    assert (R1, (R2,)) in run.executor.moved_later


async def test_a_promotion_left_to_the_hooks_is_said_in_events_and_audit() -> None:
    result = MasterResult(successor=R1, repointed=(R2,), lost={}, promotion_applied=False)
    hooks = FakeHooks()
    run = Harness(now_answers=DEAD, plan=PLANNED, executor=FakeExecutor(result), hooks=hooks)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    promoted, completed = run.publisher.recoveries[-2:]
    assert promoted.phase is RecoveryPhase.PROMOTED
    assert not promoted.data.promotion_applied and not completed.data.promotion_applied
    audit = next(e for e in run.publisher.audits if e.type == "recovery-promoted")
    assert "promotion left to the operator's hooks (ApplyMySQLPromotionAfterMasterFailover" in (
        audit.message
    )
    # the hooks that promote it run as usual, with the successor named
    assert ("PostMasterFailoverProcesses", R1) in hooks.ran


# --- semi-sync recoveries ----------------------------------------------------------------------

SEMI_REPLICAS = {R1: True, R2: True, R3: True}


def semi_fleet(*, clients: int, enabled: dict[str, bool]) -> dict[InstanceKey, InstanceSnapshot]:
    master = {
        **GTID,
        "coordinates": "bin.000003:4567",
        "semi_sync": {
            "available": True,
            "master_enabled": True,
            "master_status": True,
            "master_clients": clients,
            "master_wait_for_replica_count": 1,
        },
    }
    snaps = [instance_snapshot(MASTER, master)]
    for replica, on in enabled.items():
        semi = {"available": True, "replica_enabled": on, "replica_status": on}
        snaps.append(
            instance_snapshot(
                replica, {**GTID, "master": MASTER, "read_only": True, "semi_sync": semi}
            )
        )
    return {snap.instance_key: snap for snap in snaps}


TOO_MANY = semi_fleet(clients=3, enabled=SEMI_REPLICAS)
LOCKED = semi_fleet(clients=0, enabled=dict.fromkeys(SEMI_REPLICAS, False))
SEMI_PLANNED = SemiSyncPlanned(plan="semi plan", successor="", rejected={R1: "kept: best"}, lost={})
EXACT = dataclasses.replace(
    OPTIONS,
    semi_sync=SemiSyncMode.EXACT,
    analysis=AnalysisOptions(
        enforce_exact_semi_sync_replicas=True, reasonable_locked_semi_sync_master_seconds=0
    ),
)


def semi_harness(
    answers: dict[InstanceKey, InstanceSnapshot], result: SemiSyncResult, **options: Any
) -> tuple[Harness, FakeHooks]:
    executor = FakeExecutor()
    executor.semi_sync_result = result
    hooks = FakeHooks()
    run = Harness(
        now_answers=answers,
        plan=SEMI_PLANNED,
        executor=executor,
        hooks=hooks,
        options=dataclasses.replace(EXACT, **options),
    )
    return run, hooks


DONE = SemiSyncResult(changed={R2: False, R3: False}, failed={}, reached=True, detail="ok")


async def test_too_many_semi_sync_replicas_are_turned_off_and_told_like_a_recovery() -> None:
    run, hooks = semi_harness(TOO_MANY, DONE)
    for snap in TOO_MANY.values():
        run.state.put(snap)
    [found] = [a for a in run.worker.analyse() if a.key == InstanceKey.parse(MASTER)]
    assert found.code is AnalysisCode.MASTER_WITH_TOO_MANY_SEMI_SYNC_REPLICAS
    outcome = await run.worker.recover(found, run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    assert run.publisher.phases == [
        RecoveryPhase.DETECTED,
        RecoveryPhase.STARTED,
        RecoveryPhase.COMPLETED,
    ]
    done = outcome.data
    assert done.semi_sync == {R2: False, R3: False} and done.successor == ""
    assert done.rejected == {R1: "kept: best"}
    assert run.executor.executed == ["semi plan"]
    assert "semi-sync turned db:3 off, db:4 off" in run.publisher.audits[-1].message
    # orchestrator's hooks: the detection hook, then PostFailoverProcesses naming the master
    assert hooks.ran == [("OnFailureDetectionProcesses", ""), ("PostFailoverProcesses", MASTER)]
    # its own block period: a failover of the cluster is not blocked by it
    assert await run.control.last(MASTER, RecordKind.SEMI_SYNC) is not None
    assert await run.control.last(MASTER) is None
    assert await run.control.active(MASTER) is None


async def test_a_semi_sync_recovery_in_its_block_period_is_blocked_once_until_acknowledged() -> (
    None
):
    run, _ = semi_harness(LOCKED, DONE)
    run.suspect(LOCKED)
    [locked] = [a for a in run.worker.analyse() if a.key == InstanceKey.parse(MASTER)]
    assert locked.code is AnalysisCode.LOCKED_SEMI_SYNC_MASTER
    first = await run.worker.recover(locked, run.guard, 7)
    assert first is not None and first.phase is RecoveryPhase.COMPLETED
    second = await run.worker.recover(locked, run.guard, 7)
    assert second is not None and second.phase is RecoveryPhase.BLOCKED
    assert "its semi-sync replicas were recovered at" in second.data.reason
    assert await run.worker.recover(locked, run.guard, 7) is None  # told once
    assert await run.control.acknowledge(MASTER, by="ops")
    third = await run.worker.recover(locked, run.guard, 7)
    assert third is not None and third.phase is RecoveryPhase.COMPLETED
    assert len(run.executor.executed) == 2


async def test_ack_all_recoveries_lifts_both_kinds_of_block_period() -> None:
    run, _ = semi_harness(LOCKED, DONE)
    failover = RecoveryData(
        recovery_id="f-1", cluster="other:1", analysis="DeadMaster", failed="other:1"
    )
    await run.control.finish(failover, ended_at=NOW)
    semi = RecoveryData(
        recovery_id="s-1", cluster=MASTER, analysis="LockedSemiSyncMaster", failed=MASTER
    )
    await run.control.finish(semi, ended_at=NOW, kind=RecordKind.SEMI_SYNC)
    assert list(await run.control.unacknowledged()) == ["other:1"]
    assert list(await run.control.unacknowledged(RecordKind.SEMI_SYNC)) == [MASTER]
    assert await run.control.unacknowledged_clusters() == {"other:1", MASTER}
    responder = command_responder(run)
    answer = await responder.handle(
        CommandRequest(operation="ack-all-recoveries", requested_by="ops")
    )
    assert answer.ok and answer.details == 2
    assert await run.control.unacknowledged_clusters() == set()
    semi_last = await run.control.last(MASTER, RecordKind.SEMI_SYNC)
    assert semi_last is not None and semi_last.acknowledged_by == "ops"


async def test_a_semi_sync_recovery_that_does_not_reach_its_target_fails() -> None:
    short = SemiSyncResult(
        changed={R1: True},
        failed={R2: "cannot read db:3"},
        reached=False,
        detail="db:1 counts 0 semi-sync replicas (wanted exactly 1) after 5s",
    )
    run, hooks = semi_harness(LOCKED, short)
    run.suspect(LOCKED)
    [locked] = [a for a in run.worker.analyse() if a.key == InstanceKey.parse(MASTER)]
    outcome = await run.worker.recover(locked, run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.FAILED
    assert outcome.data.reason == (
        "db:1 counts 0 semi-sync replicas (wanted exactly 1) after 5s; failed: db:3: cannot "
        "read db:3"
    )
    assert hooks.ran[-1] == ("PostUnsuccessfulFailoverProcesses", "")


async def test_without_either_setting_a_locked_master_is_only_analysed() -> None:
    run, hooks = semi_harness(LOCKED, DONE, semi_sync=None)
    run.suspect(LOCKED)
    [locked] = [a for a in run.worker.analyse() if a.key == InstanceKey.parse(MASTER)]
    assert locked.code is AnalysisCode.LOCKED_SEMI_SYNC_MASTER
    assert not run.worker.recoverable(locked)
    assert await run.worker.recover(locked, run.guard, 7) is None
    assert run.publisher.recoveries == [] and hooks.ran == []


# --- RecoveryIgnoreHostnameFilters -------------------------------------------------------------


async def test_an_ignored_host_gets_no_analysis_and_recover_says_why() -> None:
    options = dataclasses.replace(
        OPTIONS, analysis=AnalysisOptions(recovery_ignore_hostname_filters=("^d",))
    )
    run = Harness(now_answers=DEAD, plan=PLANNED, options=options)
    analysis = run.suspect(DEAD)
    assert analysis.code is AnalysisCode.DEAD_MASTER
    assert run.worker.analyse(everything=True) == []  # every host is "db"
    assert run.worker.ignoring(InstanceKey.parse(MASTER)) == "^d"
    # an operation (a takeover, force-master-failover) still sees it
    seen = run.worker.analysis_of(InstanceKey.parse(MASTER))
    assert seen is not None and seen.code is AnalysisCode.DEAD_MASTER
    # the verification of a recovery started for it finds no failure: nothing happens
    assert await run.worker.recover(analysis, run.guard, 7) is None
    assert run.publisher.recoveries == [] and run.executor.executed == []
    responder = command_responder(run)
    answer = await responder.handle(CommandRequest(operation="recover", instance=MASTER))
    assert not answer.ok
    assert answer.error == (
        "db:1 matches RecoveryIgnoreHostnameFilters ('^d'): it has no analysis, so there is "
        "nothing to recover (as in orchestrator); use force-master-failover for a master, or "
        "relocate its replicas"
    )
