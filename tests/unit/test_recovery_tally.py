"""The recovery worker's tally of recoveries (its /metrics): each recovery counted once, by
analysis and how it ended; each phase's time from the recovery's start observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from orchestrator_recovery.metrics import RecoveryTally
from orchestrator_shared.events import RecoveryData, RecoveryEvent, RecoveryPhase

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def event(phase: RecoveryPhase, after: float, analysis: str = "DeadMaster") -> RecoveryEvent:
    data = RecoveryData(
        recovery_id="r1", cluster="db1:3306", analysis=analysis, failed="db1:3306", started_at=START
    )
    sent = RecoveryEvent.of(phase, data, source="test")
    return sent.model_copy(update={"time": START + timedelta(seconds=after)})


def test_a_failover_is_counted_once_and_each_phase_timed() -> None:
    tally = RecoveryTally()
    registry = CollectorRegistry()
    registry.register(tally.recoveries)
    registry.register(tally.phase_reached)
    for phase, after in (
        (RecoveryPhase.DETECTED, 0.004),
        (RecoveryPhase.STARTED, 0.02),
        (RecoveryPhase.PROMOTED, 0.3),
        (RecoveryPhase.COMPLETED, 0.4),
    ):
        tally.observe(event(phase, after))
    tally.observe(event(RecoveryPhase.BLOCKED, 0.001, analysis="DeadIntermediateMaster"))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    def ended(analysis: str, outcome: str) -> float | None:
        return value("orchestrator_recovery_recoveries_total", analysis=analysis, outcome=outcome)

    assert ended("DeadMaster", "completed") == 1
    assert ended("DeadIntermediateMaster", "blocked") == 1
    assert ended("DeadMaster", "failed") is None
    promoted = {"phase": "promoted"}
    assert value("orchestrator_recovery_phase_reached_seconds_count", **promoted) == 1
    assert value("orchestrator_recovery_phase_reached_seconds_sum", **promoted) == 0.3
    assert value("orchestrator_recovery_phase_reached_seconds_bucket", le="0.25", **promoted) == 0
    assert value("orchestrator_recovery_phase_reached_seconds_bucket", le="0.5", **promoted) == 1


def test_a_clock_step_back_is_not_a_negative_duration() -> None:
    tally = RecoveryTally()
    tally.observe(event(RecoveryPhase.FAILED, -2.0))
    [histogram] = tally.phase_reached.collect()
    total = next(s for s in histogram.samples if s.name.endswith("_sum"))
    assert total.value == 0.0
