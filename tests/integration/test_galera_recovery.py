"""Analysis and recovery against a real Galera cluster, through the whole stack
(``make_stack(galera=3)``: nodes 0-2 a MariaDB Galera cluster, node 3 an async GTID replica of
node 0; discovery, the API and two recovery workers as their own processes).

The rules of docs/galera.md: a failed Galera node's async replica is relocated under a surviving
node of its Galera cluster, never promoted (the other nodes stay writable; a promoted replica
would be a second writer), and nothing is lost on the way; a healthy node keeps its replicas,
whatever is asked (graceful takeover, forced failover); the Galera analysis codes come and go
with the cluster's state, and no Galera node is ever failed over."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from orchestrator_cli.sandbox import Sandbox
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


def writer(sandbox: Sandbox, index: int, stop: threading.Event) -> int:
    """Insert rows on Galera node ``index`` every 20 ms until ``stop``; how many."""
    written = 0
    while not stop.wait(0.02):
        sandbox.execute(index, f"INSERT INTO sandbox.t (note) VALUES ('node {index} #{written}')")
        written += 1
    return written


def checksum(sandbox: Sandbox, index: int) -> str:
    return str(sandbox.execute(index, "CHECKSUM TABLE sandbox.t")[0][1])


def gtid_binlog_pos(sandbox: Sandbox, index: int) -> str:
    return str(sandbox.execute(index, "SELECT @@global.gtid_binlog_pos")[0][0])


def gtid_slave_pos(sandbox: Sandbox, index: int) -> str:
    return str(sandbox.execute(index, "SELECT @@global.gtid_slave_pos")[0][0])


async def test_kill_9_of_a_galera_node_relocates_its_async_replica_under_a_surviving_node(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(galera=3)
    sandbox = stack.sandbox
    dead, survivor, replica = sandbox.node(0), sandbox.node(1), sandbox.node(3)
    wait_until(
        lambda: len(api_get(stack, f"/api/cluster/{dead.key}") or []) == 4,
        timeout=30,
        what="the API lists the Galera cluster: 3 nodes and the async replica",
    )
    for n in range(20):  # written on the node that dies, not all yet applied by the replica
        sandbox.execute(0, f"INSERT INTO sandbox.t (note) VALUES ('before #{n}')")
    stop = threading.Event()
    async with recovery_events(stack.nats_url) as events:
        await asyncio.sleep(1.5)  # every worker has read the fleet; one leads
        load = asyncio.create_task(asyncio.to_thread(writer, sandbox, 2, stop))
        try:
            sandbox.kill(0)
            completed = await wait_for_phase(
                events, RecoveryPhase.COMPLETED, timeout=30, no_failure=True
            )
            await asyncio.sleep(1)  # writes go on after the move
        finally:
            stop.set()
            written = await load
        await asyncio.sleep(1)
        phases = [event.phase for event in events]
    assert written > 0
    # relocated, nobody promoted: no "promoted" phase, no successor
    assert phases[:3] == [
        RecoveryPhase.DETECTED,
        RecoveryPhase.STARTED,
        RecoveryPhase.COMPLETED,
    ], phases
    assert set(phases[3:]) <= {RecoveryPhase.DETECTED, RecoveryPhase.BLOCKED}, phases
    data = completed.data
    assert data.failed == dead.key and data.successor == "" and data.lost == {}
    assert data.analysis == "DeadMaster" and data.repointed == (replica.key,)
    # under the first surviving node (the smaller key), read_only, replicating
    status = replica_status(sandbox, 3)
    assert status is not None and int(status["Master_Port"]) == survivor.port, status
    assert status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes"
    assert status["Using_Gtid"] == "Slave_Pos"
    assert read_only(sandbox, 3) and not read_only(sandbox, 1)
    # nothing lost: the replica applies everything the cluster has, row for row
    wait_until(
        lambda: gtid_slave_pos(sandbox, 3) == gtid_binlog_pos(sandbox, 1),
        timeout=30,
        what="the replica caught up with node 1",
    )
    assert checksum(sandbox, 3) == checksum(sandbox, 1) == checksum(sandbox, 2)
    rows = int(
        sandbox.execute(3, "SELECT COUNT(*) FROM sandbox.t WHERE note LIKE 'before #%'")[0][0]
    )
    assert rows == 20
    audit = wait_until(
        lambda: [r for r in api_get(stack, "/api/audit-recovery") or [] if r["IsSuccessful"]],
        timeout=10,
        what="the recovery in /api/audit-recovery",
    )
    assert audit[0]["AnalysisEntry"]["AnalyzedInstanceKey"]["Port"] == dead.port, audit

    # node 0 back in its Galera cluster: healthy, its former replica stays where it is, and
    # neither a graceful takeover by a Galera node's replica nor a forced failover promotes
    sandbox.start(0)
    sandbox.wait_galera_synced()
    wait_until(
        lambda: analysis_of(stack, dead.key) is None,
        timeout=30,
        what="node 0 healthy again in the analysis",
    )
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(3, f"CHANGE MASTER TO MASTER_PORT={dead.port}")
    sandbox.execute(3, "START SLAVE")
    wait_until(
        lambda: (found := replica_status(sandbox, 3)) and found["Slave_IO_Running"] == "Yes",
        timeout=30,
        what="the replica replicating from node 0 again",
    )
    wait_until(
        lambda: (
            (found := api_get(stack, f"/api/instance/{replica.key.replace(':', '/')}"))
            and found["MasterKey"]["Port"] == dead.port
        ),
        timeout=30,
        what="the API sees the replica under node 0 again",
    )
    await asyncio.sleep(1.5)  # and so do the workers (the same snapshots, their own pace)
    to_host, to_port = replica.key.rsplit(":", 1)
    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as client:
        answer = await client.post(f"/api/graceful-master-takeover/{dead.key}/{to_host}/{to_port}")
        # forced: the gates do not apply, the plan does: a healthy node keeps its replicas
        forced = await client.post(f"/api/force-master-failover/{dead.key.replace(':', '/')}")
    assert 400 <= answer.status_code < 500 and GALERA_REFUSAL in answer.text, answer.text
    assert 400 <= forced.status_code < 500, forced.text
    assert "is a healthy node of Galera cluster" in forced.text, forced.text
    assert read_only(sandbox, 3) and not read_only(sandbox, 0)
    status = replica_status(sandbox, 3)
    assert status is not None and int(status["Master_Port"]) == dead.port


async def test_nodes_stopped_and_killed_are_reported_nothing_is_failed_over_and_rejoining_clears(
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
    below, alone = "GaleraClusterSizeBelowExpected", "GaleraNonPrimaryComponent"
    async with (
        recovery_events(stack.nats_url) as events,
        bus_messages(stack.nats_url, "orchestrator.v1.analysis.>", AnalysisEvent) as published,
    ):
        # node 2 stopped cleanly: nodes 0 and 1 go on as a primary component of 2
        # (blocking calls in a thread: the bus subscriptions keep receiving meanwhile)
        await asyncio.to_thread(sandbox.stop, 2)
        await asyncio.to_thread(
            wait_until,
            lambda: all(analysis_of(stack, key) == below for key in keys[:2]),
            timeout=30,
            what=f"{below} on nodes 0 and 1",
        )
        await asyncio.sleep(1)  # the worker's pass after the last change
        assert events == [], [(e.type, e.data.reason) for e in events]  # nothing recovered

        # node 1 killed: node 0 is alone, without quorum, outside the primary component
        await asyncio.to_thread(sandbox.kill, 1)
        await asyncio.to_thread(
            wait_until,
            lambda: analysis_of(stack, keys[0]) == alone,
            timeout=60,
            what=f"{alone} on node 0",
        )
        failed = await wait_for_phase(events, RecoveryPhase.FAILED, timeout=30)
        await asyncio.sleep(2)  # nothing else follows
        phases = {event.phase for event in events}

        # back: node 0 made the primary component again (the operator's pc.bootstrap), the
        # others rejoin it, and every code clears
        sandbox.execute(0, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
        for index in (1, 2):
            await asyncio.to_thread(sandbox.start, index)
        await asyncio.to_thread(sandbox.wait_galera_synced)
        await asyncio.to_thread(
            wait_until,
            lambda: all(analysis_of(stack, key) is None for key in keys),
            timeout=30,
            what="the analysis clear again",
        )
        await asyncio.sleep(1)
    # node 0's replica had to leave it, but no node could take it: refused, nothing moved,
    # nobody promoted or failed over
    assert phases <= {RecoveryPhase.DETECTED, RecoveryPhase.FAILED, RecoveryPhase.BLOCKED}, phases
    assert failed.data.failed == keys[0] and failed.data.analysis == alone
    assert failed.data.galera is False and failed.data.repointed == ()
    assert failed.data.reason.startswith("no other node of Galera cluster "), failed.data.reason
    status = replica_status(sandbox, 3)
    assert status is not None and int(status["Master_Port"]) == sandbox.node(0).port
    assert status["Slave_IO_Running"] == "Yes" and read_only(sandbox, 3)
    # the leader published each problem (the lone node's as actionable: it has a replica),
    # and then their end
    problems = [(p.instance, p.code, p.is_actionable) for e in published for p in e.problems]
    assert (keys[0], below, False) in problems, problems
    assert (keys[1], below, False) in problems, problems
    assert (keys[0], alone, True) in problems, problems
    last = {e.cluster: e.problems for e in published}
    assert all(not found for found in last.values()), last
