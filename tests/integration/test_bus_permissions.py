"""The shipped NATS permissions (deploy/nats/nats-server.conf) on a real nats-server, with the
real pieces on each side: discovery's bus sets up the streams as its user, a recovery worker's
command responder and event publisher run as the recovery user, topology-api's requester signs
as the API's user. The attacks: discovery's user (or anyone without the API's permission)
cannot get a command to a worker; with the API's permission but not its key, a forged, replayed
or expired command is refused, and the refusal is audited on the bus."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_cli.sandbox import Sandbox
from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_recovery.operations.commands import CommandResponder, Leadership
from orchestrator_recovery.publisher import EventPublisher
from orchestrator_shared.bus import CommandReply, CommandRequest, Subjects
from orchestrator_shared.command_signing import CommandSigner, CommandVerifier, generate_key
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.nats_auth import NatsAuth
from tests.harness.nats import NatsServer
from tests.harness.process import start_with_fresh_ports
from tests.integration.stack_support import StackFactory, stack_factory
from tests.integration.test_recovery_stack import api_get, wait_until

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "nats-server.conf"
SERVICES = {
    "discovery": "ORCHESTRATOR_NATS_DISCOVERY_PASSWORD",
    "topology-api": "ORCHESTRATOR_NATS_API_PASSWORD",
    "recovery": "ORCHESTRATOR_NATS_RECOVERY_PASSWORD",
    "coordinator": "ORCHESTRATOR_NATS_COORDINATOR_PASSWORD",
}
SUBJECTS = Subjects()
KEY = generate_key()


@dataclass
class Bus:
    server: NatsServer
    passwords: dict[str, str]

    def auth(self, service: str) -> NatsAuth:
        return NatsAuth(user=f"orchestrator-{service}", password=self.passwords[service])

    async def connect(self, service: str) -> Client:
        return await connect_nats(
            [self.server.url], name=f"test-{service}", auth=self.auth(service)
        )


@pytest.fixture
def bus() -> Iterator[Bus]:
    # nats-server parses a variable as a config value: a password must start with a letter
    passwords = {service: "pw" + secrets.token_hex(12) for service in SERVICES}
    env = {SERVICES[service]: password for service, password in passwords.items()}
    server = start_with_fresh_ports(lambda: NatsServer(config_file=CONFIG, env=env))
    try:
        yield Bus(server, passwords)
    finally:
        server.close()


@dataclass
class Worker:
    ran: list[CommandRequest]
    audits: list[AuditEvent]  # as topology-api hears them on orchestrator.v1.audit.>


@pytest.fixture
async def worker(bus: Bus) -> AsyncIterator[Worker]:
    """Streams set up by discovery's user; a leading worker (recovery's user) answering
    ``set-writeable`` with its events published; the API's user following the audit."""
    discovery = NatsBus(SUBJECTS, events_retention_days=1)
    await discovery.connect([bus.server.url], name="discovery", auth=bus.auth("discovery"))
    recovery_nc = await bus.connect("recovery")
    publisher = EventPublisher(recovery_nc, SUBJECTS, give_up_after=5)
    ran: list[CommandRequest] = []

    async def set_writeable(request: CommandRequest) -> CommandReply:
        ran.append(request)
        return CommandReply(ok=True, operation=request.operation, message="done")

    async def guard() -> object:
        return None

    responder = CommandResponder(
        recovery_nc,
        SUBJECTS,
        cast(Any, None),
        cast(Any, None),
        Leadership(lambda: True, guard, lambda: 1),
        operations={"set-writeable": set_writeable},
        verifier=CommandVerifier(KEY),
        audit=publisher.audit,
    )
    api_nc = await bus.connect("topology-api")
    audits: list[AuditEvent] = []

    async def heard(msg: Any) -> None:
        audits.append(AuditEvent.model_validate_json(msg.data))

    await api_nc.subscribe(f"{SUBJECTS.root}.audit.>", cb=heard)
    tasks = [asyncio.create_task(responder.run()), asyncio.create_task(publisher.run())]
    await asyncio.sleep(0.2)
    await recovery_nc.flush()
    try:
        yield Worker(ran, audits)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for nc in (api_nc, recovery_nc):
            await nc.close()
        await discovery.close()


async def _request(nc: Client, request: CommandRequest, *, body: bytes = b"") -> CommandReply:
    msg = await nc.request(
        SUBJECTS.command(request.operation), body or request.to_json(), timeout=3
    )
    return CommandReply.model_validate_json(msg.data)


async def _audited(worker: Worker, count: int) -> list[AuditEvent]:
    for _ in range(100):
        if len(worker.audits) >= count:
            break
        await asyncio.sleep(0.05)
    return worker.audits


REQUEST = CommandRequest(operation="set-writeable", instance="db1:3306", requested_by="alice")


async def test_only_the_apis_user_gets_a_command_to_the_worker(
    bus: Bus, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrator_adapters.nats_client")
    signed = CommandSigner(KEY).sign(REQUEST)
    for service in ("discovery", "coordinator"):
        nc = await bus.connect(service)
        try:
            # the server drops the publish: nobody answers, nothing runs
            with pytest.raises((NatsTimeout, NoRespondersError)):
                await _request(nc, signed)
        finally:
            await nc.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("permissions violation for publish" in text for text in warned) == 2
    assert worker.ran == []

    api = NatsRequester(SUBJECTS, signer=CommandSigner(KEY))
    await api.connect([bus.server.url], auth=bus.auth("topology-api"))
    try:
        reply = await api.command(REQUEST, wait=3)
    finally:
        await api.close()
    assert (reply.ok, reply.message) == (True, "done")
    assert [(r.operation, r.instance, r.requested_by) for r in worker.ran] == [
        ("set-writeable", "db1:3306", "alice")
    ]


async def test_what_each_user_may_publish(bus: Bus, worker: Worker) -> None:
    """Discovery cannot forge recovery events, audit entries or leader events; only recovery
    publishes recovery events and only the coordinator leader events. Probed by what a
    subscriber of the API's user hears, and by the events stream's acknowledgement."""
    api_nc = await bus.connect("topology-api")
    heard: list[str] = []

    async def note(msg: Any) -> None:
        heard.append(msg.subject)

    await api_nc.subscribe(f"{SUBJECTS.root}.recovery.>", cb=note)
    await api_nc.flush()
    discovery_nc = await bus.connect("discovery")
    recovery_nc = await bus.connect("recovery")
    try:
        await discovery_nc.publish(f"{SUBJECTS.root}.recovery.db1.completed", b"{}")
        await discovery_nc.publish(f"{SUBJECTS.root}.audit.db1", b"{}")
        await recovery_nc.publish(f"{SUBJECTS.root}.recovery.db1.completed", b"{}")
        for nc in (discovery_nc, recovery_nc):
            await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        for nc in (discovery_nc, recovery_nc, api_nc):
            await nc.close()
    # only the recovery user's event arrived; discovery's audit entry never reached the API
    assert heard == [f"{SUBJECTS.root}.recovery.db1.completed"]
    assert worker.audits == []
    # the leader events: the coordinator's user stores one, discovery's cannot
    coordinator_nc, discovery_nc = await bus.connect("coordinator"), await bus.connect("discovery")
    try:
        ack = await coordinator_nc.jetstream().publish(SUBJECTS.leader, b"{}", timeout=3)
        assert ack.stream == "ORCHESTRATOR_EVENTS"
        with pytest.raises(NatsTimeout):
            await discovery_nc.jetstream().publish(SUBJECTS.leader, b"{}", timeout=1)
    finally:
        for nc in (coordinator_nc, discovery_nc):
            await nc.close()


async def test_forged_replayed_and_expired_commands_are_refused_and_audited(
    bus: Bus, worker: Worker
) -> None:
    """An attacker holding the API's NATS credentials but not its signing key."""
    nc = await bus.connect("topology-api")
    try:
        # forged: signed with another key, claiming to be the admin
        forged = CommandSigner(generate_key()).sign(
            REQUEST.model_copy(update={"requested_by": "admin"})
        )
        reply = await _request(nc, forged)
        assert (
            reply.error
            == "command refused: the command's signature is not valid (forged or altered)"
        )
        # replayed: a genuine request captured on the wire, sent again
        genuine = CommandSigner(KEY).sign(REQUEST)
        assert (await _request(nc, genuine)).ok
        replayed = await _request(nc, genuine)
        assert replayed.error == "command refused: the command was already received (a replay)"
        # expired: a genuine request delivered late
        past = datetime.now(UTC) - timedelta(minutes=5)
        late = CommandSigner(KEY, clock=lambda: past).sign(REQUEST)
        expired = await _request(nc, late)
        assert expired.error.startswith("command refused: the command expired at ")
        # the body names another operation than the subject the permission was checked on
        body = json.loads(CommandSigner(KEY).sign(REQUEST).to_json())
        msg = await nc.request(
            SUBJECTS.command("check-global-recoveries"), json.dumps(body).encode(), timeout=3
        )
        mismatch = CommandReply.model_validate_json(msg.data)
        assert mismatch.error == (
            "command refused: the request's operation 'set-writeable' is not the subject's "
            "'check-global-recoveries'"
        )
    finally:
        await nc.close()
    assert len(worker.ran) == 1  # the genuine one only
    audits = await _audited(worker, 4)
    assert [(a.type, a.ok) for a in audits] == [("command-refused", False)] * 4
    assert [a.user for a in audits] == [
        "unverified:admin",
        "unverified:alice",
        "unverified:alice",
        "unverified:alice",
    ]
    assert all(KEY not in a.model_dump_json() for a in audits)
    assert [a.details["subject"] for a in audits][-1] == SUBJECTS.command("check-global-recoveries")


# --- the whole stack on the permissioned bus ------------------------------------------------------


@pytest.fixture
def secure_stack(
    sandbox_factory: Callable[..., Sandbox], bus: Bus, etcd_server: Any, tmp_path: Path
) -> Iterator[StackFactory]:
    yield from stack_factory(sandbox_factory, bus.server, etcd_server, tmp_path)


def test_the_stack_runs_each_service_as_its_own_user(bus: Bus, secure_stack: StackFactory) -> None:
    """Discovery, topology-api and two recovery workers, each with its own NATS user and only
    the permissions of deploy/nats/nats-server.conf: the API lists the fleet, a manual
    operation reaches the worker and runs, and a dead master is failed over."""
    users = {
        name: {"NATSUser": f"orchestrator-{service}", "NATSPassword": bus.passwords[service]}
        for name, service in (
            ("discovery", "discovery"),
            ("api", "topology-api"),
            ("recovery", "recovery"),
        )
    }
    stack = secure_stack(per_service=users)
    sandbox = stack.sandbox
    master = sandbox.master.key
    wait_until(
        lambda: len(api_get(stack, f"/api/cluster/{master}") or []) == 4,
        timeout=30,
        what="the API lists the 4 instances",
    )
    replica = sandbox.nodes[3]
    time.sleep(1.5)  # every worker has read the fleet; one leads

    def set_writeable() -> bool:
        answer = httpx.post(f"{stack.api}/api/set-writeable/127.0.0.1/{replica.port}", timeout=30)
        return answer.status_code == 200

    wait_until(set_writeable, timeout=15, what="set-writeable answered by the worker")
    assert int(sandbox.execute(3, "SELECT @@global.read_only")[0][0]) == 0
    sandbox.kill(0)
    recovered = wait_until(
        lambda: [r for r in api_get(stack, "/api/audit-recovery") or [] if r["IsSuccessful"]],
        timeout=40,
        what="a successful recovery in the API",
    )
    successor = recovered[0]["SuccessorKey"]
    assert successor is not None and successor["Port"] != sandbox.master.port
