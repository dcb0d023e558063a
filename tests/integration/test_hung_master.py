"""A hung master (SIGSTOP) on servers started with MariaDB's default replication timeouts,
through the whole stack: the recovery leader manages the replicas' heartbeat
(``ManageReplicaHeartbeat``), so their IO threads notice the hang within about a second, the
holistic check confirms it, a replica is promoted within a few seconds, and the old master is
fenced the moment it resumes (SIGCONT)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pymysql
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.config import PASSWORDS, TOPOLOGY_USER
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.standby_fence import StandbyFence
from orchestrator_shared.events import RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import (
    check_new_topology,
    read_only,
    recovery_events,
    wait_for_phase,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.integration

REPLICAS = (1, 2, 3)


def heartbeat_of(sandbox: Sandbox, index: int) -> tuple[int, float]:
    """``(@@slave_net_timeout, Slave_heartbeat_period)`` as node ``index`` reports them."""
    timeout = net_timeout(sandbox, index)
    period = float(sandbox.execute(index, "SHOW GLOBAL STATUS LIKE 'Slave_heartbeat_period'")[0][1])
    return timeout, period


def net_timeout(sandbox: Sandbox, index: int) -> int:
    return int(sandbox.execute(index, "SELECT @@global.slave_net_timeout")[0][0])


def managed(sandbox: Sandbox) -> bool:
    """Every replica at the managed values, and the master's timeout (nothing restarted
    there) ready for when it becomes a replica."""
    replicas = all(heartbeat_of(sandbox, index) == (1, 0.5) for index in REPLICAS)
    return replicas and net_timeout(sandbox, 0) == 1


async def test_a_hung_master_on_default_settings_is_failed_over_and_fenced_when_it_wakes(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(server_defaults=True)
    sandbox = stack.sandbox
    assert heartbeat_of(sandbox, 1) == (60, 30.0)  # MariaDB's defaults, as built
    wait_listed(stack, sandbox.master.key)
    # the leader applies the managed heartbeat to every replica (one per pass)
    wait_until(lambda: managed(sandbox), timeout=20, what="the managed heartbeat applied")
    # an application user (no SUPER / READ_ONLY ADMIN: read_only applies to it)
    sandbox.execute(0, "CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'")
    sandbox.execute(0, "GRANT ALL ON sandbox.* TO 'app'@'%'")
    # application connections opened before the hang
    app_args = {**sandbox.connect_args(0), "user": "app", "password": "app-pw"}
    before = pymysql.connect(**app_args, autocommit=True, connect_timeout=2, read_timeout=3)
    acknowledged = 0
    with before.cursor() as cursor:
        for n in range(20):
            cursor.execute("INSERT INTO sandbox.t (note) VALUES (%s)", (f"acked {n}",))
            acknowledged += 1
    try:
        async with recovery_events(stack.nats_url) as events:
            await asyncio.sleep(1.5)  # every worker has read the fleet; one leads
            stopped = time.monotonic()
            sandbox.hang(0)
            promoted = await wait_for_phase(events, RecoveryPhase.PROMOTED, timeout=15)
            took = time.monotonic() - stopped
            await wait_for_phase(events, RecoveryPhase.COMPLETED, timeout=15, no_failure=True)
            await asyncio.sleep(0.5)
            successor = check_new_topology(stack, list(events))
        print(f"SIGSTOP to promoted: {took:.2f} s")
        assert took < 5.0, f"SIGSTOP to promoted took {took:.2f} s"
        assert promoted.data.analysis == "DeadMaster"
        # no acknowledged write lost
        count = sandbox.execute(
            successor, "SELECT COUNT(*) FROM sandbox.t WHERE note LIKE 'acked %'"
        )[0][0]
        assert count == acknowledged
    finally:
        sandbox.resume(0)
    # the old master is fenced as it wakes: read_only, and an application write refused
    wait_until(lambda: read_only(sandbox, 0), timeout=5, what="the resumed old master read_only")
    # (killed by the fence, or refused by read_only)
    with pytest.raises(pymysql.MySQLError), before.cursor() as cursor:
        cursor.execute("INSERT INTO sandbox.t (note) VALUES ('old connection after wake')")
    fresh = pymysql.connect(**app_args, autocommit=True, connect_timeout=2, read_timeout=3)
    with (
        fresh,
        fresh.cursor() as cursor,
        pytest.raises(pymysql.err.OperationalError, match=r"read-only"),
    ):
        cursor.execute("INSERT INTO sandbox.t (note) VALUES ('new connection after wake')")
    assert (
        sandbox.execute(0, "SELECT COUNT(*) FROM sandbox.t WHERE note LIKE '%after wake'")[0][0]
        == 0
    )


async def test_the_opt_out_leaves_the_replicas_heartbeat_alone(make_stack: StackFactory) -> None:
    stack = make_stack(server_defaults=True, ManageReplicaHeartbeat=False)
    sandbox = stack.sandbox
    wait_listed(stack, sandbox.master.key)
    await asyncio.sleep(3)  # several passes of the leader's upkeep
    assert all(heartbeat_of(sandbox, index) == (60, 30.0) for index in REPLICAS)
    assert net_timeout(sandbox, 0) == 60


async def test_the_kept_link_fences_a_hung_master_as_it_resumes(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(nodes=1)
    master = InstanceKey.parse(sandbox.master.key)
    links = StandbyFence(
        MySQLAccess(user=TOPOLOGY_USER, password=PASSWORDS[TOPOLOGY_USER], connect_timeout=1)
    )
    try:
        links.keep([master])
        deadline = time.monotonic() + 5
        while not links.linked(master):  # opened in the background
            assert time.monotonic() < deadline, "no link opened"
            await asyncio.sleep(0.02)
        sandbox.hang(0)
        try:
            links.keep([master])  # a hung master keeps its link
            fence = asyncio.create_task(links.fence(master, no_guard, within=10))
            await asyncio.sleep(0.3)
            assert not fence.done()  # the statement waits in the socket
        finally:
            sandbox.resume(0)
        assert await asyncio.wait_for(fence, timeout=5)
        assert read_only(sandbox, 0)
        # used once: no link is left to that server; without a link there is no fence
        assert not await links.fence(master, no_guard, within=1)
    finally:
        sandbox.resume(0)
        links.close()


async def no_guard() -> None:
    return None
