"""Snapshot times bounded by the stream's stamp (orchestrator_shared.clock_skew)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_shared.clock_skew import TOLERANCE, bounded_by_arrival, skew_seconds
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.unit

STORED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_snapshot_from_the_future_is_brought_back_to_when_it_reached_the_stream() -> None:
    ahead = snapshot("db1:3306", checked_at=STORED + timedelta(hours=1))
    assert skew_seconds(ahead, STORED) == 3600
    bounded = bounded_by_arrival(ahead, STORED)
    assert bounded.probe.checked_at == STORED
    assert bounded.probe.attempted_at <= STORED
    assert bounded.key == ahead.key and bounded.read_only == ahead.read_only


def test_a_snapshot_on_time_or_behind_is_left_alone() -> None:
    for checked_at in (STORED, STORED + TOLERANCE, STORED - timedelta(minutes=5)):
        snap = snapshot("db1:3306", checked_at=checked_at)
        assert bounded_by_arrival(snap, STORED) is snap
    behind = snapshot("db1:3306", checked_at=STORED - timedelta(seconds=30))
    assert skew_seconds(behind, STORED) == -30
