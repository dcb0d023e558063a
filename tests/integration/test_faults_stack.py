"""Network faults under the whole stack (issue 13, "Fault injection"): a fault proxy
(tests/harness/faultproxy.py) sits between the services and a server, and breaks the network
the way networks break. Each scenario asserts: no acknowledged write lost, never two writable
masters that clients can reach, the failure explained in the events/audit, and the system
recovering without restarting a service (the stack fixture checks every service exits cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aetcd
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.etcd.leadership import LeadershipKeys
from orchestrator_shared.events import AuditEvent, RecoveryPhase
from tests.harness import EtcdLike
from tests.harness.faultproxy import FaultProxy
from tests.integration.fault_support import (
    FaultProxies,
    WritableWatcher,
    Writer,
    notes,
    replicate_through,
)
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    api_post,
    bus_messages,
    read_only,
    recovery_events,
    replica_status,
    wait_for_phase,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_a_blackholed_master_is_failed_over_and_fenced_when_it_returns(
    fault_proxies: FaultProxies, make_stack: StackFactory
) -> None:
    proxies: dict[int, FaultProxy] = {}

    def prepare(sandbox: Sandbox) -> dict[str, dict[str, object]]:
        """Every client and replica reaches the master through its proxy: its network."""
        proxies[0] = fault_proxies("127.0.0.1", sandbox.master.port, name="master")
        replicate_through(sandbox, proxies[0], [1, 2, 3])
        return {"discovery": {"DiscoverySeeds": [proxies[0].address]}}

    # semi-sync: a write is acknowledged once a replica has it, so a failover may lose none
    stack = make_stack(semi_sync=True, prepare=prepare)
    sandbox, proxy = stack.sandbox, proxies[0]
    wait_listed(stack, proxy.address)
    async with (
        recovery_events(stack.nats_url) as events,
        bus_messages(stack.nats_url, "orchestrator.v1.audit.>", AuditEvent) as audit,
    ):
        with WritableWatcher(sandbox, dict(proxies)) as watcher:
            with Writer(sandbox, proxy.port) as writer:
                await asyncio.sleep(2)  # writes acknowledged; every worker has read the fleet
                assert writer.acknowledged, writer.failures
                blackholed_at = time.monotonic()
                proxy.blackhole()  # accepted, never answered: not a refused connection
                await wait_for_phase(events, RecoveryPhase.DETECTED, timeout=20)
                detected_after = time.monotonic() - blackholed_at
                await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=40, no_failure=True)
                failed_over_after = time.monotonic() - blackholed_at
            # (the clients move to the successor: nobody writes to the old address any more)
            done = next(e for e in events if e.phase is RecoveryPhase.COMPLETED).data
            assert done.failed == proxy.address and done.analysis.startswith("DeadMaster"), done
            successor = next(node for node in sandbox.nodes if node.key == done.successor)
            # no acknowledged write lost: the successor has every one, its replicas too
            assert set(writer.acknowledged) <= notes(sandbox, successor.index)
            for node in sandbox.nodes[1:]:
                if node.index != successor.index:
                    wait_until(
                        lambda node=node: set(writer.acknowledged) <= notes(sandbox, node.index),
                        timeout=10,
                        what=f"every acknowledged write on {node.key}",
                    )
                    status = replica_status(sandbox, node.index)
                    assert status is not None and int(status["Master_Port"]) == successor.port
            # the partition heals: the old master answers again, writable, and is fenced
            healed_at = time.monotonic()
            proxy.pass_through()
            wait_until(lambda: read_only(sandbox, 0), timeout=15, what="the old master fenced")
            await asyncio.sleep(0.3)
    # detected within its timeouts: slave_net_timeout (1 s) for the replicas to give up on it,
    # MySQLConnectTimeoutSeconds (2 s) for the probes, a poll (1 s), with slack for a busy CI
    assert detected_after < 15, detected_after
    assert failed_over_after < 30, failed_over_after
    # explained: the recovery's phases, then the fencing of the returning master, audited
    assert [e.phase for e in events][:4] == [
        RecoveryPhase.DETECTED,
        RecoveryPhase.STARTED,
        RecoveryPhase.PROMOTED,
        RecoveryPhase.COMPLETED,
    ], [(e.type, e.data.reason) for e in events]
    fenced = [a for a in audit if a.type == "fence-returning-master" and a.key == proxy.address]
    assert fenced and fenced[0].ok, [a.model_dump() for a in audit]
    recovered = api_get(stack, "/api/audit-recovery")
    assert recovered and recovered[0]["IsSuccessful"] is True
    # never two writable masters a client could reach ...
    before = [s for s in watcher.samples if s.at < healed_at]
    assert not [s for s in before if len(s.writable - s.cut_off) > 1]
    assert any(s.writable == {0, successor.index} for s in before)  # (the old one, cut off)
    # ... but for the moment a returning master takes to be fenced (one probe round)
    window = watcher.writable_since(0, healed_at)
    print(
        f"blackholed master: detected {detected_after:.1f}s, failed over "
        f"{failed_over_after:.1f}s, writable after its return {window:.2f}s"
    )
    assert window < 3, window


async def leader_terms(etcd: EtcdLike) -> dict[int, str]:
    """Every recovery leadership etcd ever granted, straight from etcd (not through a proxy):
    fencing token (the leader key's create_revision) -> the worker id that held it."""
    terms: dict[int, str] = {}
    client = aetcd.Client(host=etcd.host, port=etcd.port)
    try:
        watch = await client.watch(LeadershipKeys().leader, start_revision=1)
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(1.5):  # the whole history arrives at once
                    event = await anext(aiter(watch))
                if event.kind == "PUT":
                    holder = json.loads(event.kv.value)["id"]
                    previous = terms.setdefault(event.kv.create_revision, holder)
                    assert previous == holder, (event.kv.create_revision, previous, holder)
        await watch.cancel()
    finally:
        await client.close()
    return terms


async def test_a_slow_etcd_never_lets_two_recovery_leaders_act_and_the_workers_settle(
    fault_proxies: FaultProxies, etcd_server: EtcdLike, make_stack: StackFactory
) -> None:
    proxies: list[FaultProxy] = []

    def prepare(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
        """Each recovery worker reaches etcd through a proxy of its own; the rest directly."""
        own = {}
        for n in (1, 2):
            proxy = fault_proxies(etcd_server.host, etcd_server.port, name=f"etcd-{n}")
            proxies.append(proxy)
            own[f"recovery-{n}"] = {"EtcdEndpoints": [f"http://{proxy.address}"]}
        return own

    stack = make_stack(semi_sync=True, prepare=prepare)
    sandbox = stack.sandbox
    wait_listed(stack, sandbox.master.key)
    async with recovery_events(stack.nats_url) as events:
        with WritableWatcher(sandbox) as watcher:
            with Writer(sandbox, sandbox.master.port) as writer:
                await asyncio.sleep(1.5)  # a worker leads and has read the fleet
                before = await leader_terms(etcd_server)
                # requests arrive 0.1-2.9 s late, answers 0-1.7 s: against keep-alives every
                # 0.5 s, a request timeout of 1 s and a lease TTL of 3 s, answers come late,
                # guards fail, leases may lapse and leadership move
                for proxy in proxies:
                    proxy.latency(up_ms=1500, down_ms=300, jitter_ms=1400)
                await asyncio.sleep(3)
                sandbox.kill(0)  # a failover to carry out while etcd is this slow
                await asyncio.sleep(8)
                during = await leader_terms(etcd_server)
                healed_at = time.monotonic()
                for proxy in proxies:
                    proxy.pass_through()
                await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30)
                completed_after = time.monotonic() - healed_at
            # settles: the leadership stops moving once etcd is fast again
            settled = await leader_terms(etcd_server)
            await asyncio.sleep(4)
            assert await leader_terms(etcd_server) == settled
    terms = await leader_terms(etcd_server)
    print(
        f"slow etcd: {len(during) - len(before)} new terms while slow, "
        f"{len(terms) - len(before)} in all, completed {completed_after:.1f}s after the heal, "
        f"{[(e.phase.value, e.data.fencing_token, e.data.reason) for e in events]}"
    )
    # never two leaders acting: every action was taken under a term etcd granted to that very
    # worker (the token is the leader key's create_revision, checked before every step) ...
    acting = [e for e in events if e.data.fencing_token]
    assert acting
    for event in acting:
        assert terms.get(event.data.fencing_token) == event.data.worker, (event.data, terms)
    # ... and no deposed leader acted once a newer term had: the tokens never go back
    tokens = [e.data.fencing_token for e in acting]
    assert tokens == sorted(tokens), tokens
    assert completed_after < 15, completed_after  # settled: it recovers once etcd answers
    # ... and the failover happened once: one promotion, one writable master
    promoted = [e for e in events if e.phase is RecoveryPhase.PROMOTED]
    assert len(promoted) == 1, [(e.phase, e.data.worker, e.data.reason) for e in events]
    done = next(e for e in events if e.phase is RecoveryPhase.COMPLETED).data
    successor = next(node for node in sandbox.nodes if node.key == done.successor)
    assert not [s for s in watcher.samples if len(s.writable) > 1]
    assert [n.index for n in sandbox.nodes[1:] if not read_only(sandbox, n.index)] == [
        successor.index
    ]
    # no acknowledged write lost (semi-sync: each one was on a replica before its OK)
    assert writer.acknowledged
    assert set(writer.acknowledged) <= notes(sandbox, successor.index)
    # any recovery that a lost leadership cut short is explained in its failed event
    for event in events:
        if event.phase is RecoveryPhase.FAILED:
            assert event.data.reason, event.data


def report_through(sandbox: Sandbox, index: int, proxy: FaultProxy) -> None:
    """Restart node ``index`` reporting the proxy's port (``report_port``): its master lists
    it there, so discovery and the recovery workers reach it through the proxy."""
    node = sandbox.nodes[index]
    sandbox.stop(index)
    config = node.config_file.read_text()
    node.config_file.write_text(
        config.replace(f"report-port={node.port}\n", f"report-port={proxy.port}\n")
    )
    sandbox.start(index)


async def test_a_flap_of_the_candidates_link_during_promotion_completes_or_refuses_explained(
    fault_proxies: FaultProxies, make_stack: StackFactory
) -> None:
    proxies: list[FaultProxy] = []

    def prepare(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
        """Node 1, the candidate (its proxy's port ranks its key first), is reached through
        its proxy by every service."""
        proxies.append(fault_proxies("127.0.0.1", sandbox.nodes[1].port, name="candidate"))
        report_through(sandbox, 1, proxies[0])
        return {}

    stack = make_stack(
        semi_sync=True,
        prepare=prepare,
        PreFailoverProcesses=["sleep 0.5"],
    )
    sandbox, proxy = stack.sandbox, proxies[0]
    wait_listed(stack, sandbox.master.key)
    async with (
        recovery_events(stack.nats_url) as events,
        bus_messages(stack.nats_url, "orchestrator.v1.audit.>", AuditEvent) as audit,
    ):
        with WritableWatcher(sandbox) as watcher:
            with Writer(sandbox, sandbox.master.port) as writer:
                await asyncio.sleep(1.5)
                sandbox.kill(0)
                await wait_for_phase(events, RecoveryPhase.STARTED, timeout=20)
            # the flap: every open link to the candidate reset, new ones refused, for 1.5 s
            proxy.reset()
            proxy.drop()
            await asyncio.sleep(1.5)
            proxy.pass_through()
            outcome = await wait_for_outcome(events, timeout=30)
            if outcome.phase is RecoveryPhase.FAILED:
                # refused, and why: then an operator's acknowledgement lets it run again
                assert outcome.data.reason, outcome.data
                answer = await api_post(
                    stack, f"/api/ack-recovery/cluster/{outcome.data.cluster}?comment=flap"
                )
                assert answer.status_code == 200, answer.text
                await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30)
            await asyncio.sleep(1)
    print(f"flap: {[(e.phase.value, e.data.reason) for e in events]}")
    done = next(e for e in events if e.phase is RecoveryPhase.COMPLETED).data
    keys = {node.key: node.index for node in sandbox.nodes} | {proxy.address: 1}
    successor = sandbox.nodes[keys[done.successor]]
    # never two writable masters, one master at the end, every acknowledged write on it
    assert not [s for s in watcher.samples if len(s.writable) > 1]
    assert [n.index for n in sandbox.nodes[1:] if not read_only(sandbox, n.index)] == [
        successor.index
    ]
    assert writer.acknowledged
    assert set(writer.acknowledged) <= notes(sandbox, successor.index)
    # explained: every phase is audited, a refusal with its reason (checked above too)
    audited = [a.type for a in audit if a.type.startswith("recovery-")]
    assert audited == [f"recovery-{e.phase}" for e in events], audited
    refused = [a for a in audit if a.type == "recovery-failed"]
    assert all(a.message and not a.ok for a in refused), refused
    assert len([e for e in events if e.phase is RecoveryPhase.PROMOTED]) == 1


async def wait_for_outcome(events: list[Any], *, timeout: float) -> Any:
    """The first ``completed`` or ``failed`` event."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events if e.phase in (RecoveryPhase.COMPLETED, RecoveryPhase.FAILED)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, [(e.type, e.data.reason) for e in events]
        await asyncio.sleep(0.05)


async def test_a_nats_partition_of_the_api_only_keeps_reads_and_catches_up_after(
    fault_proxies: FaultProxies, nats_server: Any, make_stack: StackFactory
) -> None:
    proxies: list[FaultProxy] = []

    def prepare(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
        """The API reaches NATS through the proxy; discovery and the workers directly."""
        host, port = nats_server.url.removeprefix("nats://").rsplit(":", 1)
        proxies.append(fault_proxies(host, int(port), name="api-nats"))
        return {"api": {"NATSServers": [f"nats://{proxies[0].address}"]}}

    stack = make_stack(semi_sync=True, prepare=prepare)
    sandbox, proxy = stack.sandbox, proxies[0]
    wait_listed(stack, sandbox.master.key)
    async with recovery_events(stack.nats_url) as events:
        with WritableWatcher(sandbox) as watcher:
            with Writer(sandbox, sandbox.master.port) as writer:
                await asyncio.sleep(1.5)
                proxy.blackhole()  # the API alone is cut off from the bus
                sandbox.kill(0)  # the rest of the system fails over without it
                await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=30, no_failure=True)
            done = next(e for e in events if e.phase is RecoveryPhase.COMPLETED).data
            # the API still answers reads, from what it had: the old topology
            stale = api_get(stack, f"/api/cluster/{sandbox.master.key}")
            assert stale is not None and len(stale) == 4, stale
            # and says the bus is down, while it stays healthy for the reads it serves
            health = api_get(stack, "/api/health")
            assert health["Code"] == "OK" and health["Details"]["Healthy"] is True, health
            assert health["Details"]["BusHealthy"] is False, health
            assert "did not answer" in health["Details"]["BusError"], health
            healed_at = time.monotonic()
            proxy.pass_through()
            successor = next(node for node in sandbox.nodes if node.key == done.successor)
            # it catches up by itself: the new master, and the recovery in its audit
            wait_until(
                lambda: (
                    (found := api_get(stack, f"/api/master/{successor.key}"))
                    and found["Key"]["Port"] == successor.port
                ),
                timeout=20,
                what="the API shows the new master after the partition",
            )
            wait_until(
                lambda: (
                    (recovered := api_get(stack, "/api/audit-recovery"))
                    and recovered[0]["IsSuccessful"] is True
                ),
                timeout=20,
                what="the API has the recovery in its audit",
            )
            caught_up_after = time.monotonic() - healed_at
            health = api_get(stack, "/api/health")
            assert health["Details"]["BusHealthy"] is True, health
            assert health["Details"]["BusError"] is None, health
    print(f"API partition: caught up {caught_up_after:.1f}s after the heal")
    assert not [s for s in watcher.samples if len(s.writable) > 1]
    assert writer.acknowledged
    assert set(writer.acknowledged) <= notes(sandbox, successor.index)
