"""The discovery scheduler with fake ports: crawling, forgetting, requests, liveness.

The real probe, bus and liveness are exercised against MariaDB and nats-server in
tests/integration; here the fakes let us check the scheduler's decisions exactly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from orchestrator_discovery.service import DiscoveryOptions, DiscoveryService
from orchestrator_shared.bus import UnreachableEvent
from orchestrator_shared.errors import ProbeError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    GaleraState,
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MASTER = InstanceKey("127.0.0.1", 3301)
R1 = InstanceKey("127.0.0.1", 3302)
R2 = InstanceKey("127.0.0.1", 3303)
R2A = InstanceKey("127.0.0.1", 3304)


def ok_snapshot(
    key: InstanceKey, *, master: InstanceKey | None = None, replicas: tuple[InstanceKey, ...] = ()
) -> InstanceSnapshot:
    channels = (
        (ReplicationChannel(master_key=str(master), io_running="Yes", sql_running="Yes"),)
        if master
        else ()
    )
    return InstanceSnapshot(
        key=str(key),
        probe=ProbeFacts(ok=True, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
        version="10.11.19-MariaDB",
        channels=channels,
        replica_keys=tuple(str(r) for r in replicas),
    )


class FakeFleet:
    """Answers probes from a dict; a key absent from it does not answer."""

    def __init__(self) -> None:
        self.snapshots: dict[InstanceKey, InstanceSnapshot] = {
            MASTER: ok_snapshot(MASTER, replicas=(R1, R2)),
            R1: ok_snapshot(R1, master=MASTER),
            R2: ok_snapshot(R2, master=MASTER, replicas=(R2A,)),
            R2A: ok_snapshot(R2A, master=R2),
        }
        self.probed: list[InstanceKey] = []
        self.alive: set[InstanceKey] = set(self.snapshots)
        self.discarded: list[InstanceKey] = []
        self.closed = False
        # set: the waiting liveness connection to that master breaks (then it is cleared)
        self.breaks: dict[InstanceKey, asyncio.Event] = {}

    def break_waiting(self, key: InstanceKey) -> None:
        self.breaks.setdefault(key, asyncio.Event()).set()

    async def probe(
        self, key: InstanceKey, previous: InstanceSnapshot | None = None
    ) -> InstanceSnapshot:
        self.probed.append(key)
        await asyncio.sleep(0)
        if key in self.snapshots and key in self.alive:
            return self.snapshots[key]
        failed = ProbeFacts(
            ok=False, checked_at=NOW, attempted_at=NOW, error="Can't connect", errno=2003
        )
        if previous is not None:
            return previous.model_copy(update={"probe": failed})
        return InstanceSnapshot(key=str(key), probe=failed)

    def discard(self, key: InstanceKey) -> None:
        self.discarded.append(key)

    def close(self) -> None:
        self.closed = True


class FakeLiveness:
    def __init__(self, fleet: FakeFleet, key: InstanceKey) -> None:
        self.fleet = fleet
        self.key = key

    async def check(self) -> None:
        if self.key not in self.fleet.alive:
            raise ProbeError(str(self.key), "Lost connection to server during query", errno=2013)

    async def lost(self, *, retry: float) -> str:
        broken = self.fleet.breaks.setdefault(self.key, asyncio.Event())
        await broken.wait()
        broken.clear()
        return "Lost connection to server during query"

    async def confirm(self) -> ProbeError | None:
        if self.key in self.fleet.alive:
            return None
        return ProbeError(str(self.key), "Can't connect to server (111)", errno=2003)

    def close(self) -> None:
        pass


class FakeBus:
    def __init__(self) -> None:
        self.snapshots: dict[str, InstanceSnapshot] = {}
        self.unreachable: list[UnreachableEvent] = []
        self.purged: list[InstanceKey] = []

    async def publish_snapshot(self, snapshot: InstanceSnapshot) -> None:
        self.snapshots[snapshot.key] = snapshot

    async def publish_unreachable(self, event: UnreachableEvent) -> None:
        self.unreachable.append(event)

    async def purge_snapshot(self, key: InstanceKey) -> None:
        self.purged.append(key)
        self.snapshots.pop(str(key), None)


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


def make_service(
    fleet: FakeFleet, bus: FakeBus, *, seeds: tuple[InstanceKey, ...] = (R1,), **options: object
) -> DiscoveryService:
    settings: dict[str, object] = {
        "poll_seconds": 0.2,
        "max_concurrency": 10,
        "liveness_interval": 0.01,
        "seeds": seeds,
    }
    settings.update(options)
    return DiscoveryService(
        options=DiscoveryOptions(**settings),  # type: ignore[arg-type]
        prober=fleet,
        bus=bus,
        liveness=lambda key: FakeLiveness(fleet, key),
    )


@pytest.fixture
async def running(fleet: FakeFleet, bus: FakeBus) -> AsyncIterator[DiscoveryService]:
    service = make_service(fleet, bus)
    task = asyncio.create_task(service.run())
    yield service
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 3)
    except TimeoutError:
        print("TASK", task, task.get_loop() is asyncio.get_running_loop(), task.done())
        task.print_stack()
        raise


async def wait_for(condition: object, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_one_seed_finds_the_whole_tree(running: DiscoveryService, bus: FakeBus) -> None:
    await wait_for(lambda: len(bus.snapshots) == 4)
    assert set(running.known) == {MASTER, R1, R2, R2A}


async def test_every_instance_is_probed_again_each_poll(
    running: DiscoveryService, fleet: FakeFleet
) -> None:
    await wait_for(lambda: fleet.probed.count(R2A) >= 3, timeout=3)
    # never two probes of one instance at once, and no instance starved
    assert all(fleet.probed.count(key) >= 2 for key in (MASTER, R1, R2))


async def test_ignored_hosts_are_not_crawled(fleet: FakeFleet, bus: FakeBus) -> None:
    fleet.snapshots[R1] = ok_snapshot(R1, master=MASTER, replicas=(InstanceKey("skip-me", 1),))
    service = make_service(fleet, bus, ignore_hosts=("^skip-",))
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: len(bus.snapshots) == 4)
        await asyncio.sleep(0.05)
        assert InstanceKey("skip-me", 1) not in service.known
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_hosts_outside_the_allow_list_are_never_probed(
    fleet: FakeFleet, bus: FakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    foreign_replica, foreign_master = InstanceKey("evil", 3306), InstanceKey("10.9.9.9", 3306)
    fleet.snapshots[R1] = ok_snapshot(R1, master=MASTER, replicas=(foreign_replica,))
    fleet.snapshots[R2A] = ok_snapshot(R2A, master=foreign_master)  # a second channel's master
    seed = InstanceKey("192.0.2.1", 3306)
    service = make_service(
        fleet, bus, seeds=(seed, R1), allowed_hosts=("127.0.0.0/8",), poll_seconds=0.05
    )
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: len(bus.snapshots) == 4)
        await wait_for(lambda: fleet.probed.count(R1) >= 4)  # several polls: several crawls
        reply = json.loads(await service.handle_request("discover", b"evil:3306"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(service.known) == {MASTER, R1, R2, R2A}
    assert {seed, foreign_replica, foreign_master}.isdisjoint(fleet.probed)
    assert reply["ok"] is False
    assert reply["error"] == (
        "refused: evil:3306: host evil is not allowed by DiscoveryAllowedHostnameFilters; "
        "not contacted"
    )
    refusals = [r.getMessage() for r in caplog.records if "not contacting" in r.getMessage()]
    assert sorted(refusals) == sorted(  # once per host, however often it is seen again
        f"not contacting {key}: host {key.host} is not allowed by "
        "DiscoveryAllowedHostnameFilters; not contacted"
        for key in (seed, foreign_replica, foreign_master)
    )
    assert service.metrics.hosts_refused._value.get() >= 4


def galera_node(key: InstanceKey, members: tuple[InstanceKey, ...]) -> InstanceSnapshot:
    state = GaleraState(
        cluster_size=len(members),
        member_keys=tuple(sorted(str(member) for member in members)),
    )
    return ok_snapshot(key).model_copy(update={"galera": state})


G1, G2, G3 = (InstanceKey("127.0.0.1", port) for port in (3311, 3312, 3313))


async def test_galera_peers_are_crawled_from_one_node(fleet: FakeFleet, bus: FakeBus) -> None:
    fleet.snapshots = {key: galera_node(key, (G1, G2, G3)) for key in (G1, G2, G3)}
    fleet.alive = set(fleet.snapshots)
    service = make_service(fleet, bus, seeds=(G1,))
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: len(bus.snapshots) == 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(service.known) == {G1, G2, G3}


async def test_galera_peers_obey_the_allow_list_and_a_new_peer_is_crawled(
    fleet: FakeFleet, bus: FakeBus
) -> None:
    foreign = InstanceKey("10.9.9.9", 3306)
    fleet.snapshots = {G1: galera_node(G1, (G1, foreign))}
    fleet.alive = {G1, G2}
    service = make_service(
        fleet, bus, seeds=(G1,), allowed_hosts=("127.0.0.0/8",), poll_seconds=0.05
    )
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: fleet.probed.count(G1) >= 2)
        assert set(service.known) == {G1}
        # G2 joins: G1's next probe names it, and the changed membership is crawled
        fleet.snapshots[G2] = galera_node(G2, (G1, G2, foreign))
        fleet.snapshots[G1] = galera_node(G1, (G1, G2, foreign))
        await wait_for(lambda: str(G2) in bus.snapshots)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(service.known) == {G1, G2}
    assert foreign not in fleet.probed


async def test_dead_master_is_reported_once_and_replicas_reprobed(
    running: DiscoveryService, fleet: FakeFleet, bus: FakeBus
) -> None:
    await wait_for(lambda: len(bus.snapshots) == 4)
    await asyncio.sleep(0.05)
    probes_before = fleet.probed.count(R1)
    fleet.alive.discard(MASTER)
    await wait_for(lambda: bus.unreachable)
    event = bus.unreachable[0]
    assert event.key == str(MASTER)
    assert set(event.replica_keys) == {str(R1), str(R2)}
    assert event.error == "Lost connection to server during query"
    # the replicas were probed again at once, well before their next poll
    await wait_for(lambda: fleet.probed.count(R1) > probes_before, timeout=0.15)
    await wait_for(lambda: not bus.snapshots[str(MASTER)].probe.ok)
    await asyncio.sleep(0.1)
    assert len(bus.unreachable) == 1  # not repeated on every failed ping
    # once it answers again, a later failure is reported again
    fleet.alive.add(MASTER)
    await wait_for(lambda: bus.snapshots[str(MASTER)].probe.ok)
    fleet.alive.discard(MASTER)
    await wait_for(lambda: len(bus.unreachable) == 2)


async def test_a_broken_waiting_connection_confirmed_dead_is_reported_before_any_ping(
    fleet: FakeFleet, bus: FakeBus
) -> None:
    service = make_service(fleet, bus, liveness_interval=60)  # no second ping in this test
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: len(bus.snapshots) == 4)
        await asyncio.sleep(0.05)
        fleet.alive.discard(MASTER)
        fleet.break_waiting(MASTER)
        await wait_for(lambda: bus.unreachable, timeout=0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [event] = bus.unreachable
    assert event.key == str(MASTER)
    assert event.error == (
        "Can't connect to server (111) (after: Lost connection to server during query)"
    )
    assert service.metrics.liveness_confirm_seconds.collect()[0].samples  # observed


async def test_a_broken_waiting_connection_the_master_survives_reports_nothing(
    fleet: FakeFleet, bus: FakeBus
) -> None:
    service = make_service(fleet, bus, liveness_interval=60)
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: len(bus.snapshots) == 4)
        fleet.break_waiting(MASTER)  # a DBA's KILL: the master answers a new connection
        await wait_for(lambda: service.metrics.liveness_breaks_survived._value.get() == 1)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert bus.unreachable == []


async def test_discover_request_for_new_instance(
    running: DiscoveryService, fleet: FakeFleet, bus: FakeBus
) -> None:
    other = InstanceKey("127.0.0.1", 4000)
    fleet.snapshots[other] = ok_snapshot(other)
    fleet.alive.add(other)
    reply = json.loads(await running.handle_request("discover", b'{"key": "127.0.0.1:4000"}'))
    assert reply["ok"] is True
    assert reply["snapshot"]["key"] == "127.0.0.1:4000"
    assert other in running.known
    assert bus.snapshots[str(other)].probe.ok


@pytest.mark.parametrize(
    ("verb", "body", "error"),
    [
        ("discover", b'{"key": "127.0.0.1:99999"}', "port must be 1..65535"),
        ("discover", b"not a key:x", "invalid instance key"),
        ("refresh", b"", "invalid instance key"),
        ("discover", b'{"key": "127.0.0.1:1"}', "cannot probe 127.0.0.1:1: Can't connect"),
        ("explode", b"127.0.0.1:1", "unknown verb 'explode'"),
    ],
)
async def test_bad_requests_get_clear_errors(
    running: DiscoveryService, verb: str, body: bytes, error: str
) -> None:
    reply = json.loads(await running.handle_request(verb, body))
    assert reply["ok"] is False
    assert error in reply["error"]
    assert InstanceKey("127.0.0.1", 1) not in running.known


async def test_forget_purges_and_is_not_recrawled_at_once(
    running: DiscoveryService, fleet: FakeFleet, bus: FakeBus
) -> None:
    await wait_for(lambda: len(bus.snapshots) == 4)
    reply = json.loads(await running.handle_request("forget", b"127.0.0.1:3304"))
    assert reply["ok"] is True
    assert bus.purged == [R2A]
    assert fleet.discarded == [R2A]  # its pooled connections are closed
    assert R2A not in running.known
    await asyncio.sleep(0.3)  # R2 is probed again and still lists R2A as a replica
    assert R2A not in running.known
    # an explicit discover brings it back at once
    reply = json.loads(await running.handle_request("discover", b"127.0.0.1:3304"))
    assert reply["ok"] is True
    assert R2A in running.known


async def test_refresh_returns_a_fresh_snapshot(running: DiscoveryService, bus: FakeBus) -> None:
    await wait_for(lambda: len(bus.snapshots) == 4)
    reply = json.loads(await running.handle_request("refresh", b'{"key":"127.0.0.1:3302"}'))
    assert reply["ok"] is True
    assert reply["snapshot"]["channels"][0]["master_key"] == "127.0.0.1:3301"


@pytest.mark.parametrize(
    ("verb", "body", "kind"),
    [
        ("discover", b"not a key:x", "bad-request"),
        ("explode", b"127.0.0.1:1", "bad-request"),
        ("discover", b'{"key": "127.0.0.1:1"}', "unreachable"),
        ("discover", b'{"key": "127.0.0.1:22307"}', None),
    ],
)
async def test_failed_requests_say_their_kind(
    running: DiscoveryService, fleet: FakeFleet, verb: str, body: bytes, kind: str | None
) -> None:
    fleet.snapshots[InstanceKey("127.0.0.1", 22307)] = ok_snapshot(InstanceKey("127.0.0.1", 22307))
    fleet.alive.add(InstanceKey("127.0.0.1", 22307))
    reply = json.loads(await running.handle_request(verb, body))
    assert reply["kind"] == kind
    assert reply["ok"] is (kind is None)
