"""Issue 17: the phase times a recovery's events carry, where they come from (discovery's
``unreachable`` event, the worker's clock, the executor), and the failed master watched for its
return right after a failover."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from orchestrator_recovery.failover import executor as executor_module
from orchestrator_recovery.failover.phases import PhaseTimer
from orchestrator_recovery.fleet import SUSPICION_FRESH_SECONDS, FleetState, Suspicion, _detect_ms
from orchestrator_recovery.ports import MasterResult
from orchestrator_recovery.warm_links import replicas_to_warm
from orchestrator_shared.bus import UnreachableEvent
from orchestrator_shared.events import RecoveryPhase, TimedPhase
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot
from tests.unit.test_recovery_worker import (
    DEAD,
    GTID,
    MASTER,
    PLANNED,
    R1,
    R2,
    FakeExecutor,
    Harness,
)

pytestmark = pytest.mark.unit

KEY = InstanceKey.parse(MASTER)


def unreachable(*, lost_ms: float | None) -> bytes:
    lost_at = None if lost_ms is None else NOW - timedelta(milliseconds=lost_ms)
    event = UnreachableEvent(
        key=MASTER, detected_at=NOW, last_seen_at=None, error="gone", lost_at=lost_at
    )
    return event.to_json()


def test_discoverys_own_detection_time_comes_from_the_event() -> None:
    assert _detect_ms(unreachable(lost_ms=3.5)) == pytest.approx(3.5)
    assert _detect_ms(unreachable(lost_ms=None)) is None  # an older discovery does not say
    assert _detect_ms(b"not json") is None


def test_a_suspicion_times_one_recovery_and_only_while_fresh() -> None:
    state = FleetState()
    state.mark_unreachable(KEY, detect_ms=2.0)
    found = state.take_suspicion(KEY)
    assert found is not None and found.detect_ms == 2.0
    assert state.take_suspicion(KEY) is None  # taken once
    state.mark_unreachable(KEY)
    state._suspicions[KEY] = Suspicion(time.monotonic() - SUSPICION_FRESH_SECONDS - 1)
    assert state.take_suspicion(KEY) is None  # too old to time anything
    assert state.unreachable.qsize() == 2  # the analysis is still woken by each


def test_the_timer_starts_at_the_suspicion_and_laps_add_up() -> None:
    timer = PhaseTimer(Suspicion(time.monotonic() - 0.05, detect_ms=1.25))
    timer.lap(TimedPhase.CONFIRM)
    timer.lap(TimedPhase.PLAN)
    timer.lap(TimedPhase.PLAN)  # goes on
    timer.add({"promote": 4.0, "repoint": 6.0})
    phases = timer.phases
    assert phases["detect"] == 1.2 or phases["detect"] == 1.3
    assert phases["confirm"] >= 50.0
    assert phases["plan"] >= 0.0 and (phases["promote"], phases["repoint"]) == (4.0, 6.0)
    assert set(phases) == {phase.value for phase in TimedPhase}


async def test_each_event_of_a_failover_carries_the_phases_known_by_then() -> None:
    result = MasterResult(
        successor=R1, repointed=(R2,), lost={}, phases={"promote": 12.5, "repoint": 20.0}
    )
    run = Harness(now_answers=DEAD, plan=PLANNED, executor=FakeExecutor(result))
    run.state.mark_unreachable(KEY, detect_ms=1.5)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    by_phase = {event.phase: event.data.phases for event in run.publisher.recoveries}
    assert set(by_phase[RecoveryPhase.DETECTED]) == {"detect", "confirm"}
    assert by_phase[RecoveryPhase.DETECTED]["detect"] == 1.5
    assert set(by_phase[RecoveryPhase.STARTED]) == {"detect", "confirm", "plan"}
    done = by_phase[RecoveryPhase.COMPLETED]
    assert set(done) == {"detect", "confirm", "plan", "promote", "repoint"}
    assert (done["promote"], done["repoint"]) == (12.5, 20.0)
    assert by_phase[RecoveryPhase.PROMOTED] == done
    assert done["plan"] >= by_phase[RecoveryPhase.STARTED]["plan"]


async def test_a_failover_found_without_an_unreachable_event_has_no_detect_phase() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    assert "detect" not in run.publisher.recoveries[-1].data.phases
    assert "confirm" in run.publisher.recoveries[-1].data.phases


async def test_the_failed_master_is_fenced_the_moment_it_answers_after_its_failover() -> None:
    run = Harness(now_answers=DEAD, plan=PLANNED)
    await run.worker.recover(run.suspect(DEAD), run.guard, 7)
    await asyncio.sleep(0.1)  # the watch tries it: still dead
    assert run.executor.fenced == []
    run.answers = {**DEAD, KEY: instance_snapshot(MASTER, {**GTID})}  # restarted writable
    deadline = time.monotonic() + 2
    while not run.executor.fenced:
        assert time.monotonic() < deadline, "not fenced"
        await asyncio.sleep(0.005)
    assert run.executor.fenced == [KEY]
    assert run.publisher.audits[-1].type == "fence-returning-master"
    run.worker.aftermath.cancel()


def test_only_replicas_that_answered_get_a_kept_connection() -> None:
    snapshots = dict(DEAD)
    snapshots[InstanceKey.parse("db:9")] = instance_snapshot(
        "db:9", {**GTID, "master": MASTER, "ok": False}
    )
    assert replicas_to_warm(snapshots.values()) == [InstanceKey.parse(R1), InstanceKey.parse(R2)]


async def test_telling_that_the_successor_is_writable_never_fails_the_failover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_writable`` raising (a bug, a signer that fails) is logged; the failover goes on."""
    told: list[str] = []

    async def broken() -> None:
        told.append("asked")
        raise RuntimeError("the signer is broken")

    await executor_module._tell(broken, InstanceKey.parse("db2:3306"))
    await executor_module._tell(None, InstanceKey.parse("db2:3306"))
    assert told == ["asked"]
    assert "telling that db2:3306 is writable failed" in caplog.text
