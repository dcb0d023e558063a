"""Whether a failed master came back into service (orchestrator_recovery.failover.returning),
as a pure decision: then it must not be fenced as a returning old master."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator_recovery.failover.returning import back_in_service
from orchestrator_shared.etcd.recovery import LastRecovery
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_analysis_scenarios import NOW
from tests.unit.test_recovery_worker import BROKEN_IO, MASTER, R1, fleet

pytestmark = pytest.mark.unit

KEY = InstanceKey.parse(MASTER)
FAILOVER = LastRecovery(recovery_id="r-1", failed=MASTER, successor=R1, ended_at=NOW)


def test_a_dead_failed_master_is_not_back() -> None:
    replicas_elsewhere = fleet(master_ok=False, replicas=BROKEN_IO).values()
    assert not back_in_service(KEY, FAILOVER, [FAILOVER], replicas_elsewhere)


def test_promoted_again_since_is_back() -> None:
    later = LastRecovery(
        recovery_id="r-2", failed=R1, successor=MASTER, ended_at=NOW + timedelta(minutes=1)
    )
    earlier = LastRecovery(
        recovery_id="r-0", failed=R1, successor=MASTER, ended_at=NOW - timedelta(minutes=1)
    )
    assert back_in_service(KEY, FAILOVER, [FAILOVER, later], [])
    assert not back_in_service(KEY, FAILOVER, [FAILOVER, earlier], [])


def test_replicas_replicating_from_it_make_it_back() -> None:
    replicating = fleet(master_ok=True, replicas={}).values()
    assert back_in_service(KEY, FAILOVER, [FAILOVER], replicating)
