"""Analysis and recovery against a real Galera cluster, through the whole stack
(``make_stack(galera=3)``: nodes 0-2 a MariaDB Galera cluster, node 3 an async GTID replica of
node 0; discovery, the API and two recovery workers as their own processes).

The safety rule of docs/galera.md: a dead Galera node's async replica is never promoted (the
other nodes stay writable; a promoted replica would be a second writer), whether the recovery is
automated or asked for (graceful takeover); the Galera analysis codes come and go with the
cluster's state, and nothing is recovered for them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator_shared.events import AnalysisEvent, RecoveryPhase
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    bus_messages,
    read_only,
    recovery_events,
    replica_status,
    wait_for_phase,
    wait_until,
)
from tests.integration.test_semi_sync_analysis import analysis_of

pytestmark = pytest.mark.integration

GALERA_REFUSAL = "is a node of Galera cluster"


async def test_a_dead_galera_nodes_async_replica_is_not_promoted_and_no_takeover_promotes_it(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(galera=3)
    sandbox = stack.sandbox
    dead, replica = sandbox.node(0), sandbox.node(3)
    wait_until(
        lambda: len(api_get(stack, f"/api/cluster/{dead.key}") or []) == 4,
        timeout=30,
        what="the API lists the Galera cluster: 3 nodes and the async replica",
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
        # and so is a force-master-failover (forced: the gates do not apply, the plan does)
        forced = await client.post(f"/api/force-master-failover/{dead.key.replace(':', '/')}")
    for refused_answer in (answer, forced):
        assert 400 <= refused_answer.status_code < 500, refused_answer.text
        assert GALERA_REFUSAL in refused_answer.text, refused_answer.text
    assert read_only(sandbox, 3) and not read_only(sandbox, 0)
    status = replica_status(sandbox, 3)
    assert status is not None and int(status["Master_Port"]) == dead.port


async def test_a_node_leaving_makes_the_others_report_the_size_below_expected_until_it_is_back(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(galera=3, GaleraExpectedClusterSize=3)
    sandbox = stack.sandbox
    keys = [node.key for node in sandbox.galera_nodes]
    wait_until(
        lambda: all(api_get(stack, f"/api/instance/{key.replace(':', '/')}") for key in keys),
        timeout=30,
        what="the API knows the 3 Galera nodes",
    )
    assert all(analysis_of(stack, key) is None for key in keys)  # nothing to report
    below = "GaleraClusterSizeBelowExpected"
    async with (
        recovery_events(stack.nats_url) as events,
        bus_messages(stack.nats_url, "orchestrator.v1.analysis.>", AnalysisEvent) as published,
    ):
        # (blocking calls in a thread: the bus subscriptions keep receiving meanwhile)
        await asyncio.to_thread(sandbox.stop, 2)
        await asyncio.to_thread(
            wait_until,
            lambda: all(analysis_of(stack, key) == below for key in keys[:2]),
            timeout=30,
            what=f"{below} on nodes 0 and 1",
        )
        await asyncio.to_thread(sandbox.start, 2)
        await asyncio.to_thread(sandbox.wait_galera_synced)
        await asyncio.to_thread(
            wait_until,
            lambda: all(analysis_of(stack, key) is None for key in keys),
            timeout=30,
            what="the analysis clear again",
        )
        await asyncio.sleep(1)  # the worker's pass after the last change
    assert events == [], [(e.type, e.data.reason) for e in events]  # nothing recovered
    # the leader published the problem, not actionable, and then its end
    problems = [(p.instance, p.code, p.is_actionable) for e in published for p in e.problems]
    assert (keys[0], below, False) in problems, problems
    assert (keys[1], below, False) in problems, problems
    last = {e.cluster: e.problems for e in published}
    assert all(not found for cluster, found in last.items() if cluster in keys[:2]), last
