"""orchestrator's ``analysis-locked-semi-sync-master`` system test (reference §10.3), on a real
sandbox through discovery and topology-api: a semi-sync master whose only semi-sync replica
turns semi-sync off is a ``LockedSemiSyncMasterHypothesis`` at once, and a
``LockedSemiSyncMaster`` once its binlog coordinates stayed still for
``ReasonableLockedSemiSyncMasterSeconds``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import api_get, wait_listed, wait_until

pytestmark = pytest.mark.integration


def analysis_of(stack: Stack, key: str) -> str | None:
    answer: Any = api_get(stack, "/api/replication-analysis")
    for entry in (answer or {}).get("Details") or []:
        analysed = entry["AnalyzedInstanceKey"]
        if f"{analysed['Hostname']}:{analysed['Port']}" == key:
            return str(entry["Analysis"])
    return None


def test_a_semi_sync_master_without_semi_sync_replicas_is_locked(make_stack: StackFactory) -> None:
    stack = make_stack(ReasonableLockedSemiSyncMasterSeconds=3)
    sandbox = stack.sandbox
    master = sandbox.master.key
    wait_listed(stack, master)
    sandbox.execute(0, "SET GLOBAL rpl_semi_sync_master_timeout = 3600000")
    sandbox.execute(0, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
    try:
        # the replica enables semi-sync (its IO thread restarted so that it takes effect) ...
        sandbox.execute(1, "SET GLOBAL rpl_semi_sync_slave_enabled = ON")
        sandbox.execute(1, "STOP SLAVE IO_THREAD")
        sandbox.execute(1, "START SLAVE IO_THREAD")
        wait_until(
            lambda: (
                sandbox.execute(0, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")[0][1]
                == "1"
            ),
            timeout=10,
            what="one semi-sync client",
        )
        # ... then disables it: the master waits for an acknowledgement nobody will send
        sandbox.execute(1, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
        sandbox.execute(1, "STOP SLAVE IO_THREAD")
        sandbox.execute(1, "START SLAVE IO_THREAD")
        wait_until(
            lambda: analysis_of(stack, master) == "LockedSemiSyncMasterHypothesis",
            timeout=15,
            what="LockedSemiSyncMasterHypothesis",
        )
        hypothesis_seen = time.monotonic()
        wait_until(
            lambda: analysis_of(stack, master) == "LockedSemiSyncMaster",
            timeout=20,
            what="LockedSemiSyncMaster",
        )
        assert time.monotonic() - hypothesis_seen >= 1.0  # it waited for the coordinates
    finally:
        sandbox.execute(0, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
    wait_until(
        lambda: analysis_of(stack, master) in {None, "NoProblem"},
        timeout=15,
        what="the master healthy again",
    )
