"""Recovery against a real Galera cluster, through the whole stack (``make_stack(galera=3)``:
nodes 0-2 a MariaDB Galera cluster, node 3 an async GTID replica of node 0; discovery, the API
and two recovery workers as their own processes).

The safety rule of docs/galera.md: a dead Galera node's async replica is never promoted (the
other nodes stay writable; a promoted replica would be a second writer), whether the recovery is
automated or asked for (graceful takeover)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator_shared.events import RecoveryPhase
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    read_only,
    recovery_events,
    replica_status,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.integration

GALERA_REFUSAL = "is a node of Galera cluster"


async def test_a_dead_galera_nodes_async_replica_is_not_promoted_and_no_takeover_promotes_it(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(galera=3)
    sandbox = stack.sandbox
    dead, replica = sandbox.node(0), sandbox.node(3)
    wait_until(
        lambda: len(api_get(stack, f"/api/cluster/{dead.key}") or []) == 2,
        timeout=30,
        what="the API lists node 0 and its async replica",
    )
    async with recovery_events(stack.nats_url) as events:
        await asyncio.sleep(1.5)  # every worker has read the fleet; one leads
        sandbox.kill(0)
        failed = await wait_for_phase(events, RecoveryPhase.FAILED, timeout=30)
        await asyncio.sleep(2)  # nothing else follows
        phases = [event.phase for event in events]
    # refused, then (the refusal is a failed recovery of the cluster) blocked for its
    # block period: never started, never promoted
    assert phases[:2] == [RecoveryPhase.DETECTED, RecoveryPhase.FAILED], phases
    assert set(phases[2:]) <= {RecoveryPhase.DETECTED, RecoveryPhase.BLOCKED}, phases
    assert failed.data.failed == dead.key and failed.data.successor == ""
    assert failed.data.reason.startswith(f"{dead.key} {GALERA_REFUSAL} ")
    assert "never promoted" in failed.data.reason
    # the replica is untouched: read_only, still pointed at the dead node
    assert read_only(sandbox, 3)
    status = replica_status(sandbox, 3)
    assert status is not None and int(status["Master_Port"]) == dead.port
    # the other Galera nodes still take writes, and the audit says why nothing was promoted
    sandbox.execute(1, "INSERT INTO sandbox.t (note) VALUES ('galera goes on')")
    recovered = api_get(stack, "/api/audit-recovery")
    refused = [r for r in recovered or [] if any(GALERA_REFUSAL in e for e in r["AllErrors"])]
    assert refused and not any(r["IsSuccessful"] for r in recovered), recovered

    # node 0 back in its Galera cluster: a graceful takeover by its replica is refused too
    sandbox.start(0)
    sandbox.wait_galera_synced()
    wait_until(
        lambda: (found := replica_status(sandbox, 3)) and found["Slave_IO_Running"] == "Yes",
        timeout=30,
        what="the replica replicating from node 0 again",
    )
    to_host, to_port = replica.key.rsplit(":", 1)
    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as client:
        answer = await client.post(f"/api/graceful-master-takeover/{dead.key}/{to_host}/{to_port}")
    assert 400 <= answer.status_code < 500, answer.text
    assert GALERA_REFUSAL in answer.text, answer.text
    assert read_only(sandbox, 3) and not read_only(sandbox, 0)
