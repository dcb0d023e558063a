"""Bus fuzzing (issue 13 §6): seeded random and mutated messages on every subject a service
consumes, against a real nats-server. No consumer crashes, none loops on redeliveries, every
refused message is counted (and, for the durable consumers, kept as a dead letter), and good
messages published after the fuzz are still handled.

- topology-api's store consumer: the snapshot and event streams (durable consumers);
- discovery: its ``discovery.*`` requests (core request/reply: every one answered);
- topology-api's leader watch: ``leader`` events (an ordered consumer), and its new-master
  subscriber: ``master.*`` (core NATS; every fuzzed one refused and counted);
- the recovery worker: ``command.*`` requests, signed and unsigned (every one answered, only
  with a refusal), and its fleet feed of snapshots and events.

The coordinator consumes nothing from the bus (it reads etcd and publishes leader events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest

from orchestrator_api.leadership import LeaderWatch
from orchestrator_api.promotions import Promotions
from orchestrator_api.store import open_store
from orchestrator_api.store.consumer import DEFAULT_DURABLE_PREFIX, StoreConsumer
from orchestrator_recovery.fleet import FleetFeed, FleetState
from orchestrator_shared.bus import (
    CommandReply,
    CommandRequest,
    DiscoveryReply,
    DiscoveryVerb,
    LeaderEvent,
    LeaderIdentity,
    MasterChanged,
    Subjects,
    UnreachableEvent,
)
from orchestrator_shared.clock_skew import TOLERANCE
from orchestrator_shared.command_signing import CommandSigner, generate_key
from orchestrator_shared.dead_letters import DEAD_LETTERS_STREAM
from orchestrator_shared.events import AnalysisEvent, AnalysisProblem, AuditEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.master_change import MasterChangeSigner, MasterChangeVerifier
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.streams import events_stream_config, snapshots_stream_config
from tests import harness
from tests.integration.bus_fuzz import Fuzzer
from tests.integration.stack_support import TOPOLOGY
from tests.integration.test_discovery import running_discovery, settings_for
from tests.integration.test_poison_messages import recovery_event
from tests.integration.test_stack import start, stop
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()
NOW = datetime(2026, 12, 7, tzinfo=UTC)
SEED = 13
# how discovery's replies to requests it refuses begin (bad verb or key, a host not allowed)
REFUSALS = ("unknown verb", "invalid instance key", "refused:")


def as_dict(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert isinstance(document, dict)
    return document


def event_samples() -> dict[str, dict[str, Any]]:
    """A well-formed message of each kind on the events stream, by subject kind."""
    identity = LeaderIdentity(id="w1", host="h1", pid=1, started_at=NOW)
    problem = AnalysisProblem(instance="db1:3306", code="DeadMaster", is_actionable=True)
    return {
        "unreachable": as_dict(
            UnreachableEvent(key="db1:3306", detected_at=NOW, last_seen_at=NOW, error="x").to_json()
        ),
        "analysis": as_dict(
            AnalysisEvent(cluster="db1:3306", problems=(problem,), at=NOW).to_json()
        ),
        "audit": as_dict(
            AuditEvent(type="relocate", message="m", key="db1:3306", at=NOW, ok=True).to_json()
        ),
        "recovery": recovery_event(),
        "leader": as_dict(
            LeaderEvent(leader=identity, fencing_token=5, since=NOW, observed_at=NOW).to_json()
        ),
    }


def fuzzed_events(fuzzer: Fuzzer, count: int) -> list[tuple[str, bytes]]:
    """(subject, payload) on the events stream's subjects, each kind with its own samples."""
    samples = event_samples()
    root = SUBJECTS.root
    messages = []
    for _ in range(count):
        kind = fuzzer.random.choice(sorted(samples))
        subject = {
            "unreachable": f"{root}.unreachable.{fuzzer.token()}",
            "analysis": f"{root}.analysis.{fuzzer.token()}",
            "audit": f"{root}.audit.{fuzzer.token()}",
            "recovery": f"{root}.recovery.{fuzzer.token()}.started",
            "leader": f"{root}.leader",
        }[kind]
        messages.append((subject, fuzzer.message([samples[kind]])))
    return messages


def fuzzed_snapshots(fuzzer: Fuzzer, count: int) -> list[tuple[str, bytes]]:
    sample = as_dict(snapshot("db1:3306", "db0:3306").to_json())
    return [
        (f"{SUBJECTS.root}.snapshot.{fuzzer.token()}{n}", fuzzer.message([sample]))
        for n in range(count)
    ]


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def test_the_store_consumer_survives_fuzzed_snapshots_and_events(
    nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    fuzzer = Fuzzer(SEED)
    store = await open_store("sqlite", sqlite_path=tmp_path / "store.sqlite3")
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    consumer = StoreConsumer(store, SUBJECTS, fetch_wait_seconds=0.2, retry_seconds=0.2)
    try:
        await js.add_stream(snapshots_stream_config(SUBJECTS))
        await js.add_stream(events_stream_config(SUBJECTS, retention_days=1))
        await consumer.connect([nats_server.url])
        consuming = asyncio.create_task(consumer.run())
        for subject, payload in fuzzed_snapshots(fuzzer, 150) + fuzzed_events(fuzzer, 250):
            await js.publish(subject, payload)
        # good messages after the fuzz: once they are in, everything before them was handled
        good = snapshot("db-after:3306")
        await js.publish(SUBJECTS.snapshot(good.instance_key), good.to_json())
        after = AnalysisProblem(instance="db-after:3306", code="DeadMaster")
        await js.publish(
            f"{SUBJECTS.root}.analysis.db-after",
            AnalysisEvent(cluster="db-after:3306", problems=(after,), at=NOW).to_json(),
        )

        async def good_ones_in() -> bool:
            view = await store.view()
            changes = await store.analysis_changelog()
            return view.instance(InstanceKey.parse("db-after:3306")) is not None and any(
                str(change.key) == "db-after:3306" for change in changes
            )

        await eventually(good_ones_in, timeout=40, what="the good messages after the fuzz")
        assert not consuming.done(), consuming
        stats = consumer.stats
        assert stats.messages_skipped > 0 and stats.loop_failures == 0, stats
        # nothing left to redeliver: each one acknowledged or terminated, none redelivered
        for durable, stream in (("snapshots", "ORCHESTRATOR_SNAPSHOTS"),
                                ("events", "ORCHESTRATOR_EVENTS")):  # fmt: skip
            info = await js.consumer_info(stream, f"{DEFAULT_DURABLE_PREFIX}-{durable}")
            assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)
        letters = await js.stream_info(DEAD_LETTERS_STREAM)
        assert letters.state.messages == stats.messages_skipped
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
    finally:
        await consumer.close()
        await nc.close()
        await store.close()


async def test_discovery_answers_every_fuzzed_request(nats_server: harness.NatsLike) -> None:
    fuzzer = Fuzzer(SEED)
    settings = settings_for(nats_server.url, [], DiscoveryAllowedHostnameFilters=["127.0.0.1"])
    samples = [{"key": "127.0.0.1:1"}, {"key": "db1:3306"}]
    verbs = ["discover", "refresh", "forget", "explode", "_"]
    async with running_discovery(settings) as service:
        nc = await nats.connect(nats_server.url)
        try:
            requests = [
                nc.request(
                    f"{SUBJECTS.root}.discovery.{fuzzer.random.choice(verbs)}",
                    fuzzer.message(samples),
                    timeout=20,
                )
                for _ in range(200)
            ]
            answers = await asyncio.gather(*requests)
            replies = [DiscoveryReply.model_validate_json(answer.data) for answer in answers]
            assert all(reply.error for reply in replies if not reply.ok)
            refused = [r for r in replies if not r.ok and r.error.startswith(REFUSALS)]
            assert len(refused) > 50
            registry = service.metrics.registry
            counted = sum(
                registry.get_sample_value(
                    "orchestrator_discovery_requests_refused_total", {"reason": reason}
                )
                or 0
                for reason in ("bad-request", "host-refused")
            )
            assert counted == len(refused)
            # still answering good requests
            forget = await nc.request(
                SUBJECTS.discovery(DiscoveryVerb.FORGET), b'{"key": "127.0.0.1:2"}', timeout=5
            )
            assert DiscoveryReply.model_validate_json(forget.data).ok
        finally:
            await nc.close()


async def test_the_recovery_fleet_feed_skips_and_counts_fuzzed_messages(
    nats_server: harness.NatsLike,
) -> None:
    fuzzer = Fuzzer(SEED)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    state = FleetState()
    feed = FleetFeed(nc, SUBJECTS, state)
    try:
        await js.add_stream(snapshots_stream_config(SUBJECTS))
        await js.add_stream(events_stream_config(SUBJECTS, retention_days=1))
        following = asyncio.create_task(feed.run())
        await asyncio.wait_for(state.loaded.wait(), timeout=10)
        snapshots = fuzzed_snapshots(fuzzer, 150)
        unreadable = 0
        for subject, payload in snapshots:
            try:
                if payload:  # an empty one is a purge marker: not refused
                    InstanceSnapshot.from_json(payload).instance_key  # noqa: B018
            except ValueError:
                unreadable += 1
            await js.publish(subject, payload)
        good = snapshot("db-after:3306")
        await js.publish(SUBJECTS.snapshot(good.instance_key), good.to_json())

        async def good_one_in() -> bool:
            return InstanceKey.parse("db-after:3306") in state.snapshots

        await eventually(good_one_in, timeout=20, what="the good snapshot after the fuzz")
        assert not following.done(), following
        assert unreadable > 0 and feed.refused == unreadable
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    finally:
        await nc.close()


def command_samples() -> list[dict[str, Any]]:
    """Well-formed command requests, each of another kind of operation."""
    return [
        as_dict(CommandRequest(operation=op, instance=instance, destination=to).to_json())
        for op, instance, to in (
            ("check-global-recoveries", "", ""),
            ("relocate", "127.0.0.1:1", "127.0.0.1:2"),
            ("stop-replica", "127.0.0.1:1", ""),
            ("recover", "127.0.0.1:1", ""),
            ("begin-maintenance", "127.0.0.1:1", ""),
            ("gtid-errant-inject-empty", "127.0.0.1:1", ""),
            ("no-such-operation", "db1:3306", ""),
        )
    ]


async def test_the_recovery_worker_answers_every_fuzzed_command(
    nats_server: harness.NatsLike, etcd_server: harness.EtcdLike, tmp_path: Path
) -> None:
    """A real ``orchestrator-recovery`` process: unsigned garbage, mutated requests, and
    requests signed with the right key but carrying hostile values. Each is answered (a
    refusal), the worker keeps leading and answering, and nothing in its log is a traceback."""
    fuzzer = Fuzzer(SEED)
    key = generate_key()
    signer = CommandSigner(key)
    worker = start(
        "orchestrator_recovery.main",
        {
            **TOPOLOGY,
            "NATSServers": [nats_server.url],
            "EtcdEndpoints": [etcd_server.endpoint],
            "CommandSigningKey": key,
            "DiscoveryAllowedHostnameFilters": ["127.0.0.1"],
        },
        tmp_path,
    )
    nc = await nats.connect(nats_server.url)
    try:

        async def ask(request: CommandRequest, timeout: float = 30) -> CommandReply:
            answer = await nc.request(
                SUBJECTS.command(request.operation), signer.sign(request).to_json(), timeout
            )
            return CommandReply.model_validate_json(answer.data)

        async def leading() -> bool:
            with contextlib.suppress(nats.errors.Error):
                return (await ask(CommandRequest(operation="check-global-recoveries"), 1)).ok
            return False

        await eventually(leading, timeout=30, what="the worker leading and answering")
        samples = command_samples()
        replies = []
        for _ in range(150):
            body = fuzzer.message(samples)
            try:
                request = CommandRequest.model_validate_json(body)
            except ValueError:
                request = None
            if request is not None and request.operation and fuzzer.random.random() < 0.5:
                subject, payload = SUBJECTS.command(request.operation), signer.sign(request)
                sent = payload.to_json()
            else:  # unsigned, or on a subject of its own
                subject, sent = SUBJECTS.command(fuzzer.random.choice(("relocate", "x"))), body
            answer = await nc.request(subject, sent, timeout=30)
            replies.append(CommandReply.model_validate_json(answer.data))
        assert replies and all(reply.error for reply in replies if not reply.ok)
        assert all("\n" not in reply.error for reply in replies), "an error of one line"
        # past the envelope: signed requests reached the handlers, which refused them
        assert any("cannot read 127.0.0.1:1" in reply.error for reply in replies)
        assert sum(1 for reply in replies if not reply.ok) > 100
        assert (await ask(CommandRequest(operation="check-global-recoveries"))).ok
        assert worker.poll() is None, "the worker died"
    finally:
        await nc.close()
        code, output = stop(worker)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


async def test_the_api_leader_watch_skips_and_counts_fuzzed_leader_events(
    nats_server: harness.NatsLike,
) -> None:
    fuzzer = Fuzzer(SEED)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    watch = LeaderWatch(SUBJECTS)
    try:
        await js.add_stream(events_stream_config(SUBJECTS, retention_days=1))
        await watch.connect([nats_server.url])
        watching = asyncio.create_task(watch.run())
        await asyncio.sleep(0.5)  # subscribed
        sample = event_samples()["leader"]
        unreadable = 0
        for _ in range(150):
            payload = fuzzer.message([sample])
            try:
                LeaderEvent.model_validate_json(payload)
            except ValueError:
                unreadable += 1
            await js.publish(SUBJECTS.leader, payload)
        # the honest event after them is the latest, whatever times the fuzzed ones claimed
        # (a future one counts as when the stream stored it: issue 13 §5)
        await asyncio.sleep(TOLERANCE.total_seconds() + 0.1)
        good = LeaderEvent(leader=None, observed_at=datetime.now(UTC))
        await js.publish(SUBJECTS.leader, good.to_json())

        async def all_taken() -> bool:
            return watch.refused == unreadable and watch.latest == good

        await eventually(all_taken, timeout=20, what="every fuzzed leader event handled")
        assert unreadable > 0 and not watching.done(), watching
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    finally:
        await watch.close()
        await nc.close()


async def test_the_api_new_master_subscriber_refuses_and_counts_fuzzed_messages(
    nats_server: harness.NatsLike,
) -> None:
    """Fuzzed ``master.*`` messages (mutations of a signed one included) are all refused and
    counted, none applied; the honest one after them is."""
    fuzzer = Fuzzer(SEED)
    key = generate_key()
    identity = LeaderIdentity(id="w1", host="h", pid=1, started_at=NOW)
    leader = LeaderEvent(leader=identity, fencing_token=5, observed_at=NOW)
    signer = MasterChangeSigner(key)
    honest = MasterChanged(
        cluster="db1:3306",
        failed="db1:3306",
        successor="db2:3306",
        recovery_id="r1",
        fencing_token=5,
        worker="w1",
        promoted_at=datetime.now(UTC),
    )
    promotions = Promotions(SUBJECTS, MasterChangeVerifier(key), lambda: leader)
    nc = await nats.connect(nats_server.url)
    try:
        await promotions.connect([nats_server.url])
        signed = signer.sign(honest.model_copy(update={"recovery_id": "r0"}))
        sample = as_dict(signed.to_json())
        intact = 0  # fuzzed payloads that still say exactly what was signed (the first holds)
        for _ in range(150):
            payload = fuzzer.message([sample])
            with contextlib.suppress(ValueError):
                intact += MasterChanged.model_validate_json(payload) == signed
            await nc.publish(SUBJECTS.master_changed("db1:3306"), payload)
        await nc.publish(SUBJECTS.master_changed("db1:3306"), signer.sign(honest).to_json())
        await nc.flush()

        async def all_taken() -> bool:
            return promotions.refused + promotions.applied == 151

        await eventually(all_taken, timeout=20, what="every fuzzed master change handled")
        # nothing altered passed; an intact copy counts once, its replays are refused
        assert promotions.applied == 1 + min(intact, 1), (promotions.refused, intact)
    finally:
        await promotions.close()
        await nc.close()
