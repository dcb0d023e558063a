"""The API names a takeover's new master the moment the call returns (issue 17 §5), through the
whole stack (real 4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api, two
recovery workers): the recovery leader's signed ``MasterChanged`` reaches the API's view when
the successor is writable, without waiting for discovery's next snapshots. A forged, unsigned,
altered, deposed-leader or replayed message changes nothing. A failover sends it too."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from orchestrator_api.store.promoted import HOLD_SECONDS
from orchestrator_shared.bus import MasterChanged, Subjects
from orchestrator_shared.command_signing import generate_key
from orchestrator_shared.events import RecoveryPhase
from orchestrator_shared.master_change import MasterChangeSigner
from tests.integration.coordinator_support import CoordinatorProcess
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import (
    bus_messages,
    read_only,
    recovery_events,
    wait_for_phase,
    wait_until,
)
from tests.integration.test_takeover import CREDENTIALS, ready

pytestmark = pytest.mark.integration


def metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"{stack.api}/metrics", timeout=5).text
    found = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def master_of(client: httpx.AsyncClient, hint: str) -> str:
    answer = await client.get(f"/api/master/{hint}")
    assert answer.status_code == 200, answer.text
    key = answer.json()["Key"]
    return f"{key['Hostname']}:{key['Port']}"


@contextlib.contextmanager
def leader_events(stack: Stack, *, on: bool) -> Iterator[None]:
    """With ``on``, the coordinator publishes leader events: the API then fences each
    ``MasterChanged`` by the leader's token and id (else by the highest token seen)."""
    if not on:
        yield
        return
    coordinator = CoordinatorProcess(
        {"EtcdEndpoints": [stack.etcd.endpoint], "NATSServers": [stack.nats_url]}
    )
    try:
        coordinator.start()
        wait_until(
            lambda: httpx.get(f"{stack.api}/api/leader-check", timeout=5).status_code == 200,
            timeout=20,
            what="the API knows the leader from the coordinator",
        )
        yield
    finally:
        coordinator.close()


@pytest.mark.parametrize("coordinator", [False, True], ids=["no-coordinator", "coordinator"])
async def test_the_api_names_the_new_master_as_the_takeover_returns(
    make_stack: StackFactory, coordinator: bool
) -> None:
    stack = ready(make_stack, ReplicationCredentialsQuery=CREDENTIALS)
    with leader_events(stack, on=coordinator):
        await _take_over_and_forge(stack)


async def _take_over_and_forge(stack: Stack) -> None:
    sandbox = stack.sandbox
    old = sandbox.master.key
    successor = sandbox.node(1).key
    heard: list[Msg] = []
    nc = await nats.connect(stack.nats_url)
    try:

        async def keep(msg: Msg) -> None:
            heard.append(msg)

        await nc.subscribe(Subjects().all_master_changed, cb=keep)
        await nc.flush()
        async with httpx.AsyncClient(base_url=stack.api, timeout=60) as client:
            assert await master_of(client, old) == old
            host, port = successor.rsplit(":", 1)
            answer = await client.post(
                f"/api/graceful-master-takeover-auto/{old.replace(':', '/')}/{host}/{port}"
            )
            assert answer.status_code == 200, answer.text
            # at once: no waiting for discovery's next snapshot
            assert await master_of(client, old) == successor
            assert await master_of(client, successor) == successor
            assert not read_only(sandbox, 1)
            assert metric(stack, "orchestrator_api_master_changes_applied") == 1
            assert len(heard) == 1
            real = MasterChanged.model_validate_json(heard[0].data)
            assert (real.failed, real.successor, real.demoted_replicates) == (
                old,
                successor,
                True,
            )

            other = sandbox.node(2).key
            forged = _forgeries(real, other, stack.signing_key)
            for message in forged:
                await nc.publish(heard[0].subject, message)
            await nc.flush()
            wait_until(
                lambda: metric(stack, "orchestrator_api_master_changes_refused") == len(forged),
                timeout=10,
                what=f"{len(forged)} forged messages refused",
            )
            assert metric(stack, "orchestrator_api_master_changes_applied") == 1
            assert await master_of(client, old) == successor
            assert await master_of(client, successor) == successor
            # once the announcement is let go, the snapshots alone say the same
            await asyncio.sleep(HOLD_SECONDS + 0.5)
            assert await master_of(client, successor) == successor
    finally:
        await nc.close()


def _forgeries(real: MasterChanged, other: str, key: str) -> list[bytes]:
    """Messages that would make ``other`` the master, and the real one replayed."""
    soon = datetime.now(UTC) + timedelta(seconds=10)
    naming_other = real.model_copy(update={"successor": other})
    unsigned = naming_other.model_copy(update={"signature": "", "expires_at": soon})
    deposed = naming_other.model_copy(update={"fencing_token": real.fencing_token - 1})
    return [
        unsigned.to_json(),  # unsigned
        MasterChangeSigner(generate_key()).sign(naming_other).to_json(),  # another key
        naming_other.to_json(),  # the real signature over an altered body
        MasterChangeSigner(key).sign(deposed).to_json(),  # the right key, not the leader
        real.to_json(),  # a replay of the real one
        b'{"schema": 1, "cluster": 3}',  # not a MasterChanged
    ]


async def test_a_failover_names_the_successor_as_soon_as_it_is_promoted(
    make_stack: StackFactory,
) -> None:
    """kill -9 of the master: the recovery leader's ``MasterChanged`` (not a takeover: the
    dead master is not said to replicate) is applied, and ``/api/master`` of the old cluster
    name names the promoted replica from the moment the ``promoted`` event is out."""
    stack = ready(make_stack, RecoveryPeriodBlockSeconds=0)
    sandbox = stack.sandbox
    dead = sandbox.master.key
    async with (
        bus_messages(stack.nats_url, Subjects().all_master_changed, MasterChanged) as heard,
        recovery_events(stack.nats_url) as events,
    ):
        sandbox.kill(0)
        promoted = await wait_for_phase(events, RecoveryPhase.PROMOTED, timeout=30, no_failure=True)
        successor = promoted.data.successor
        async with httpx.AsyncClient(base_url=stack.api, timeout=10) as client:
            assert await master_of(client, dead) == successor
        wait_until(lambda: heard, timeout=5, what="the MasterChanged message")
    [message] = heard
    assert (message.failed, message.successor, message.demoted_replicates) == (
        dead,
        successor,
        False,
    )
    assert metric(stack, "orchestrator_api_master_changes_applied") == 1
    assert not read_only(sandbox, next(n.index for n in sandbox.nodes if n.key == successor))
