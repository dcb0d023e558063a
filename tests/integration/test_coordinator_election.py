"""The election library in-process against real etcd: campaign, guard, leader scopes, resign,
a 3-member cluster losing one member and then its quorum, and authentication."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator_adapters.election import Election, ElectionOptions, Leadership
from orchestrator_adapters.etcd import EtcdClient, EtcdError, EtcdOptions, EtcdUnavailable
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.etcd.leadership import LeadershipKeys, local_identity
from tests import harness
from tests.harness.ports import free_ports
from tests.harness.process import spawn
from tests.integration.coordinator_support import STEADY, Timing, enable_etcd_auth

pytestmark = pytest.mark.integration


def options(
    endpoints: Sequence[str],
    *,
    prefix: str | None = None,
    timing: Timing = STEADY,
    user: str = "",
    password: str = "",
) -> ElectionOptions:
    return ElectionOptions(
        etcd=EtcdOptions(
            endpoints=tuple(endpoints),
            request_timeout=timing.request_timeout,
            user=user,
            password=password,
        ),
        key_prefix=prefix or f"/test-{uuid.uuid4().hex[:8]}",
        lease_ttl=timing.ttl,
        keepalive_interval=timing.keepalive,
        startup_timeout=2.0,
    )


async def test_one_leader_guard_scope_and_resign_hands_over_at_once(
    etcd_server: harness.EtcdLike,
) -> None:
    shared = options([etcd_server.endpoint])
    first = Election(shared, identity=local_identity("first"))
    second = Election(shared, identity=local_identity("second"))
    async with first, second:
        async with asyncio.timeout(5):
            term = await first.wait_leader()
        assert second.leadership is None
        approval = await first.guard()
        assert approval.token == term.token
        assert approval.remaining > 0
        with pytest.raises(LeaseLost):
            await second.guard()

        # membership keys of both, bound to their leases; the leader key holds the identity
        async with EtcdClient(shared.etcd) as client:
            keys = LeadershipKeys(shared.key_prefix)
            members, _ = await client.get_prefix(keys.members)
            assert {kv.key for kv in members} == {keys.member("first"), keys.member("second")}
            leader, _ = await client.get(keys.leader)
            assert leader is not None
            assert leader.create_revision == term.token
            assert b'"id":"first"' in leader.value
            # the worker's own keys go through the same connection
            await first.client.put(keys.root + b"note", b"x")
            assert await first.client.delete(keys.root + b"note") is True
            assert await first.client.delete(keys.root + b"note") is False

        # leader work runs in a scope that is cancelled when leadership ends
        entered = asyncio.Event()

        async def leader_work() -> None:
            async with first.leading():
                entered.set()
                await asyncio.sleep(60)

        work = asyncio.create_task(leader_work())
        async with asyncio.timeout(5):
            await entered.wait()
        resigned_at = time.monotonic()
        await first.resign()
        async with asyncio.timeout(1):
            new_term = await second.wait_leader()
        handover = time.monotonic() - resigned_at
        assert handover < 1.0
        with pytest.raises(LeaseLost):
            await work
        assert new_term.token > term.token
        with pytest.raises(LeaseLost):
            await first.guard()
        assert (await second.guard()).token == new_term.token
        assert first.observed_leader.token in (0, new_term.token)

        # the resigned worker campaigns again when told to, and wins once the other leaves
        first.campaign()
        await second.close()
        async with asyncio.timeout(3):
            third_term = await first.wait_leader()
        assert third_term.token > new_term.token
    # closing twice is harmless
    await first.close()
    await second.close()


async def test_run_while_leader_restarts_work_per_term(etcd_server: harness.EtcdLike) -> None:
    shared = options([etcd_server.endpoint])
    terms: list[Leadership] = []

    async def work(term: Leadership) -> None:
        terms.append(term)
        await asyncio.sleep(60)

    async with Election(shared) as election:
        runner = asyncio.create_task(election.run_while_leader(work))
        try:
            async with asyncio.timeout(5):
                while len(terms) < 1:
                    await asyncio.sleep(0.01)
                await election.resign(rejoin_after=0.1)
                while len(terms) < 2:
                    await asyncio.sleep(0.01)
            assert terms[1].token > terms[0].token
        finally:
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner


async def test_cluster_member_loss_then_quorum_loss_then_recovery(
    etcd_cluster: harness.EtcdClusterLike,
) -> None:
    first_member, second_member, _ = etcd_cluster.members
    election_options = options(etcd_cluster.endpoints)
    async with Election(election_options) as election:
        async with asyncio.timeout(5):
            term = await election.wait_leader()
        assert (await election.guard()).token == term.token

        # one member down (the one the client talks to first): nothing changes
        await asyncio.to_thread(first_member.stop)
        quiet_until = time.monotonic() + 2 * election_options.lease_ttl
        while time.monotonic() < quiet_until:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(quiet_until - time.monotonic()):
                    await election.wait_for_change()
        assert election.leadership is term
        assert (await election.guard()).token == term.token

        # two down: no quorum, keep-alives fail; the leader stops before its lease could expire,
        # and its work in flight is cancelled then
        cancelled_at: list[float] = []

        async def leader_work() -> None:
            async with election.leading():
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled_at.append(time.monotonic())
                    raise

        work = asyncio.create_task(leader_work())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(second_member.stop)
        stopped_at = time.monotonic()
        async with asyncio.timeout(election_options.lease_ttl + 1):
            while election.leadership is not None:
                await election.wait_for_change()
        lost_at = time.monotonic()
        assert lost_at < election.lease_deadline  # etcd could not have let anyone else lead yet
        with pytest.raises(LeaseLost):
            await work
        assert len(cancelled_at) == 1
        assert cancelled_at[0] < election.lease_deadline
        # etcd's leader notices the lost quorum only after an election timeout
        assert lost_at - stopped_at <= election_options.lease_ttl + 1
        assert not election.etcd_reachable
        with pytest.raises(LeaseLost):
            await election.guard()

        # quorum back: a worker leads again
        first_member.start(wait=False)
        second_member.start(wait=False)
        await asyncio.to_thread(etcd_cluster.wait_healthy)
        async with asyncio.timeout(10):
            again = await election.wait_leader()
        assert (await election.guard()).token == again.token
        assert election.etcd_reachable


async def test_unreachable_endpoints_fail_start_up_within_the_bounded_wait() -> None:
    unused = [f"http://127.0.0.1:{port}" for port in free_ports(2)]
    started = time.monotonic()
    with pytest.raises(EtcdUnavailable, match="EtcdEndpoints: no etcd answered within 2 s"):
        async with Election(options(unused)):
            pass
    assert time.monotonic() - started < 5


async def test_user_password_authentication(etcd_server: harness.EtcdLike) -> None:
    endpoint = etcd_server.endpoint
    prefix = "/orchestrator-auth"
    enable_etcd_auth(endpoint, prefix=prefix, user="orchestrator", password="orchpw")

    good = options([endpoint], prefix=prefix, user="orchestrator", password="orchpw")
    async with Election(good) as election:
        async with asyncio.timeout(5):
            term = await election.wait_leader()
        assert (await election.guard()).token == term.token

    with pytest.raises(EtcdError, match="authentication failed"):
        async with Election(options([endpoint], prefix=prefix, user="orchestrator", password="x")):
            pass
    with pytest.raises(EtcdError):  # no credentials at all: etcd refuses
        async with Election(options([endpoint], prefix=prefix)):
            pass


async def test_children_forked_while_etcd_calls_run_survive(
    etcd_server: harness.EtcdLike, tmp_path: Path
) -> None:
    """Regression: with grpcio's default fork handlers, about one child in five forked by
    another thread during a gRPC call crashed before exec (workers fork for hooks, the harness
    forks servers). The etcd adapter turns them off."""
    log_path = tmp_path / "children.log"

    def run_child() -> int:
        with log_path.open("ab") as log:
            child = spawn(["/bin/true"], log=log, cwd=tmp_path, env={})
        return child.wait()

    async with Election(options([etcd_server.endpoint])) as election:
        await election.wait_leader()

        async def guard_forever() -> None:
            while True:
                await election.guard()

        load = asyncio.create_task(guard_forever())
        try:
            codes = [await asyncio.to_thread(run_child) for _ in range(100)]
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    assert codes == [0] * 100
