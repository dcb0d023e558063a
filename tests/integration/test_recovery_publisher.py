"""The recovery worker's event queue while NATS is away: bounded, the oldest dropped first,
counted, and logged once (issue 13 §4), against a real nats-server stopped and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.msg import Msg

from orchestrator_recovery.publisher import EventPublisher
from orchestrator_shared.bus import (
    EVENTS_STREAM,
    LeaderEvent,
    LeaderIdentity,
    MasterChanged,
    Subjects,
)
from orchestrator_shared.command_signing import generate_key
from orchestrator_shared.events import AnalysisEvent, RecoveryData
from orchestrator_shared.master_change import MasterChangeSigner, MasterChangeVerifier
from orchestrator_shared.streams import events_stream_config
from tests import harness
from tests.integration.test_store_consumer import eventually

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int) -> AnalysisEvent:
    return AnalysisEvent(cluster=f"db{n}:3306", problems=(), at=NOW)


async def stored_clusters(js: nats.js.JetStreamContext) -> set[str]:
    """The clusters of every analysis event on the stream."""
    info = await js.stream_info(EVENTS_STREAM)
    clusters = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(EVENTS_STREAM, seq)
        assert message.data is not None
        clusters.add(AnalysisEvent.model_validate_json(message.data).cluster)
    return clusters


async def test_a_full_queue_drops_the_oldest_events_counts_and_logs_once(
    nats_server: harness.NatsLike, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    publisher = EventPublisher(nc, SUBJECTS, give_up_after=60, max_queued=5)
    publishing = asyncio.create_task(publisher.run())
    try:
        await nc.jetstream().add_stream(events_stream_config(SUBJECTS, retention_days=1))
        nats_server.stop()
        await publisher.analysis(event(0))  # taken at once: retried while NATS is away

        async def taken() -> bool:
            return publisher.queued == 0

        await eventually(taken)
        caplog.set_level(logging.WARNING, logger="orchestrator_recovery.publisher")
        for n in range(1, 12):
            await publisher.analysis(event(n))
        assert publisher.queued == 5 and publisher.dropped == 6
        full = [r for r in caplog.records if "event queue is full" in r.getMessage()]
        assert len(full) == 1 and full[0].levelno == logging.ERROR

        nats_server.restart()

        wanted = {f"db{n}:3306" for n in (0, 7, 8, 9, 10, 11)}

        async def stored() -> bool:
            return await stored_clusters(nc.jetstream()) == wanted

        await eventually(stored, timeout=30)
        again = [r.getMessage() for r in caplog.records if "has room again" in r.getMessage()]
        assert again == ["the event queue has room again; 6 events were dropped"]
    finally:
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        await nc.close()


async def test_a_promotion_is_announced_at_once_signed_and_only_when_writable(
    nats_server: harness.NatsLike,
) -> None:
    """``promoted``: a signed ``MasterChanged`` on the cluster's subject, not queued (the
    publisher's loop is not even running); none when the successor was left read-only for
    the hooks, nor without a signer."""
    key = generate_key()
    nc = await nats.connect(nats_server.url)
    try:
        heard: list[bytes] = []

        async def keep(msg: Msg) -> None:
            heard.append(msg.data)

        await nc.subscribe(SUBJECTS.all_master_changed, cb=keep)
        await nc.flush()
        data = RecoveryData(
            recovery_id="r1",
            cluster="db1:3306",
            analysis="DeadMaster",
            failed="db1:3306",
            successor="db2:3306",
            fencing_token=3,
            worker="w1",
        )
        signing = EventPublisher(nc, SUBJECTS, master_signer=MasterChangeSigner(key))
        await signing.promoted(data.model_copy(update={"promotion_applied": False}))
        await EventPublisher(nc, SUBJECTS).promoted(data)  # no signer: nothing
        await signing.promoted(data)
        await nc.flush()

        async def arrived() -> bool:
            return len(heard) >= 1

        await eventually(arrived)
        await asyncio.sleep(0.1)  # nothing else comes
        [only] = heard
        message = MasterChanged.model_validate_json(only)
        assert (message.failed, message.successor, message.demoted_replicates) == (
            "db1:3306",
            "db2:3306",
            False,
        )
        leader = LeaderEvent(
            leader=LeaderIdentity(id="w1", host="h", pid=1, started_at=NOW),
            fencing_token=3,
            observed_at=NOW,
        )
        assert MasterChangeVerifier(key).refusal(message, leader) is None
        assert signing.masters_announced == 1 and signing.queued == 0
    finally:
        await nc.close()
