"""The gates of an automated recovery as a pure decision (orchestrator_recovery.failover.gates):
each gate alone, in the order they are checked, without a worker, a store or a clock."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from orchestrator_recovery.failover.gates import why_blocked
from orchestrator_shared.analysis import Analysis, analyze
from orchestrator_shared.etcd.recovery import GlobalSwitch, LastRecovery, RecordKind
from tests.unit.test_analysis_scenarios import NOW
from tests.unit.test_recovery_worker import BROKEN_IO, MASTER, fleet

pytestmark = pytest.mark.unit

OPEN = GlobalSwitch(disabled=False)
HOUR = timedelta(hours=1)


def dead_master() -> Analysis:
    snapshots = fleet(master_ok=False, replicas=BROKEN_IO)
    [found] = [a for a in analyze(snapshots.values(), now=NOW) if str(a.key) == MASTER]
    return found


def decide(analysis: Analysis, **changes: object) -> str:
    facts: dict[str, object] = {
        "switch": OPEN,
        "last": None,
        "cluster": MASTER,
        "kind": RecordKind.FAILOVER,
        "now": NOW,
        "block_period": HOUR,
    }
    facts.update(changes)
    return why_blocked(analysis, **facts)


def last_recovery(*, ended_minutes_ago: int, acknowledged: bool = False) -> LastRecovery:
    return LastRecovery(
        recovery_id="r-1",
        failed=MASTER,
        successor="db:2",
        ended_at=NOW - timedelta(minutes=ended_minutes_ago),
        acknowledged=acknowledged,
    )


def test_nothing_blocks_a_fresh_failure() -> None:
    assert decide(dead_master()) == ""


def test_the_global_switch_blocks_first_and_names_who_set_it() -> None:
    downtimed = dataclasses.replace(dead_master(), is_downtimed=True)
    assert (
        decide(downtimed, switch=GlobalSwitch(disabled=True, by="ops"))
        == "automated recoveries are disabled globally by ops"
    )
    assert decide(dead_master(), switch=GlobalSwitch(disabled=True)) == (
        "automated recoveries are disabled globally"
    )


def test_a_downtimed_instance_is_not_recovered() -> None:
    downtimed = dataclasses.replace(dead_master(), is_downtimed=True)
    assert decide(downtimed, last=last_recovery(ended_minutes_ago=5)) == f"{MASTER} is downtimed"


def test_the_block_period_holds_until_it_passes_or_is_acknowledged() -> None:
    recent = last_recovery(ended_minutes_ago=5)
    reason = decide(dead_master(), last=recent)
    assert reason.startswith(f"cluster {MASTER} recovered at ")
    assert "(recovery r-1); blocked until" in reason
    assert reason.endswith("unless acknowledged (ack-cluster-recoveries)")
    assert decide(dead_master(), last=last_recovery(ended_minutes_ago=61)) == ""
    acked = last_recovery(ended_minutes_ago=5, acknowledged=True)
    assert decide(dead_master(), last=acked) == ""


def test_a_semi_sync_recovery_says_whose_block_period_it_is() -> None:
    reason = decide(
        dead_master(), last=last_recovery(ended_minutes_ago=5), kind=RecordKind.SEMI_SYNC
    )
    assert reason.startswith(f"cluster {MASTER} its semi-sync replicas were recovered at ")
