"""The recovery worker's event queue while NATS is away: bounded, the oldest dropped first,
counted, and logged once (issue 13 §4), against a real nats-server stopped and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import nats
import pytest

from orchestrator_recovery.publisher import EventPublisher
from orchestrator_shared.bus import EVENTS_STREAM, Subjects
from orchestrator_shared.events import AnalysisEvent
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
