"""The recovery worker's warm state, kept from a real nats-server: the snapshot stream's last
message of every instance, then live snapshots, and new unreachable events."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import nats
import pytest

from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_recovery.fleet import FleetFeed, FleetState
from orchestrator_shared.bus import Subjects, UnreachableEvent
from orchestrator_shared.instance_key import InstanceKey
from tests import harness
from tests.integration.test_store import NOW, snapshot

pytestmark = pytest.mark.integration


async def test_the_feed_loads_the_fleet_then_follows_it(nats_server: harness.NatsLike) -> None:
    subjects = Subjects()
    bus = NatsBus(subjects, events_retention_days=1)
    await bus.connect([nats_server.url], name="test-discovery")
    nc = await nats.connect(nats_server.url)
    state = FleetState()
    feed: asyncio.Task[None] | None = None
    try:
        old = NOW - timedelta(seconds=5)
        await bus.publish_snapshot(snapshot("db1:3306", checked_at=old))
        await bus.publish_snapshot(snapshot("db1:3306"))  # the stream keeps the latest only
        await bus.publish_snapshot(snapshot("db2:3306", "db1:3306"))
        feed = asyncio.create_task(FleetFeed(nc, subjects, state).run())
        async with asyncio.timeout(5):
            await state.loaded.wait()
        assert set(state.snapshots) == {InstanceKey("db1", 3306), InstanceKey("db2", 3306)}
        # live: a new snapshot, an unreachable event
        await bus.publish_snapshot(snapshot("db3:3306", "db1:3306"))
        await bus.publish_unreachable(
            UnreachableEvent(
                key="db1:3306",
                detected_at=datetime.now(UTC),
                last_seen_at=old,
                error="refused",
            )
        )
        async with asyncio.timeout(5):
            assert await state.unreachable.get() == InstanceKey("db1", 3306)
            while InstanceKey("db3", 3306) not in state.snapshots:
                await state.wait_changed(0.1)
        # an older snapshot than the one kept is ignored
        state.put(snapshot("db3:3306", "db1:3306", checked_at=old))
        assert state.snapshots[InstanceKey("db3", 3306)].probe.checked_at > old
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        await nc.close()
        await bus.close()


async def test_garbage_and_a_clock_ahead_do_not_stop_or_pin_the_feed(
    nats_server: harness.NatsLike,
) -> None:
    """Issue 13 §1 and §5 for the worker's feed: an unreadable snapshot is skipped and
    counted, the feed goes on; a snapshot probed an hour "later" than NATS stored it is
    taken as probed when stored, so the honest one after it replaces it."""
    subjects = Subjects()
    bus = NatsBus(subjects, events_retention_days=1)
    await bus.connect([nats_server.url], name="test-discovery")
    nc = await nats.connect(nats_server.url)
    state = FleetState()
    fleet_feed = FleetFeed(nc, subjects, state)
    feed = asyncio.create_task(fleet_feed.run())
    db1 = InstanceKey("db1", 3306)
    try:
        async with asyncio.timeout(5):
            await state.loaded.wait()
        await nc.jetstream().publish(subjects.snapshot(InstanceKey("db9", 3306)), b"\x00 not json")
        now = datetime.now(UTC)
        ahead = snapshot("db1:3306", checked_at=now + timedelta(hours=1), version="10.11.5")
        await bus.publish_snapshot(ahead)
        async with asyncio.timeout(5):
            while db1 not in state.snapshots:
                await state.wait_changed(0.1)
        assert state.snapshots[db1].probe.checked_at < now + timedelta(minutes=1)
        assert fleet_feed.refused == 1

        await asyncio.sleep(0.2)
        await bus.publish_snapshot(snapshot("db1:3306", checked_at=datetime.now(UTC)))
        async with asyncio.timeout(5):
            while state.snapshots[db1].version == "10.11.5":
                await state.wait_changed(0.1)
        assert not feed.done()
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        await nc.close()
        await bus.close()
