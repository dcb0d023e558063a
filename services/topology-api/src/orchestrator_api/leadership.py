"""Who the active recovery worker is, as topology-api learns it from the bus.

``orchestrator-coordinator`` publishes ``orchestrator.v1.leader`` on every leadership change
(``orchestrator_shared.bus.LeaderEvent``). topology-api follows that subject with an ordered
JetStream consumer that starts from the last event, so a starting API replica knows the current
leader at once. ``/api/health`` shows it and ``/api/leader-check`` answers 200 only while a
recovery worker leads: the worker is what carries out the operations an API replica forwards,
and every replica forwards them, so a load balancer may send requests to any replica that
answers 200.

topology-api never asks etcd itself: the coordinator is the one reporter of leadership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError
from pydantic import ValidationError

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.bus import EVENTS_STREAM, LeaderEvent, Subjects
from orchestrator_shared.clock_skew import TOLERANCE, aware
from orchestrator_shared.dead_letters import one_line
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth

log = logging.getLogger(__name__)


class LeaderWatch:
    """The latest ``LeaderEvent`` (None until one arrives)."""

    def __init__(self, subjects: Subjects) -> None:
        self._subjects = subjects
        self._nc: Client | None = None
        self.latest: LeaderEvent | None = None
        # unreadable leader events skipped (an ordered consumer: never redelivered)
        self.refused = 0

    async def connect(self, servers: list[str], auth: NatsAuth = ANONYMOUS) -> None:
        self._nc = await connect_nats(servers, name="orchestrator-topology-api-leader", auth=auth)

    async def run(self) -> None:
        """Follow the leader subject until cancelled (subscribing again after bus errors)."""
        if self._nc is None:
            raise RuntimeError("connect() first")
        js = self._nc.jetstream()
        while True:
            subscription = None
            try:
                subscription = await js.subscribe(
                    self._subjects.leader,
                    stream=EVENTS_STREAM,
                    ordered_consumer=True,
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
                    cb=self._take,
                )
                await asyncio.Event().wait()
            except (NatsError, JetStreamError) as exc:
                log.info("leader watch: %s; subscribing again", exc or type(exc))
                await asyncio.sleep(1.0)
            finally:
                if subscription is not None:
                    with contextlib.suppress(NatsError, JetStreamError):
                        await subscription.unsubscribe()

    async def _take(self, msg: Msg) -> None:
        try:
            event = LeaderEvent.model_validate_json(msg.data)
        except ValidationError as exc:
            self.refused += 1
            log.warning("leader watch: unreadable leader event skipped: %s", one_line(exc))
            return
        with contextlib.suppress(NatsError, ValueError, IndexError):
            # a time after the stream stored the event is a clock ahead (or forged): it must
            # not keep the events that follow from being the latest
            stored_at = aware(msg.metadata.timestamp)
            if aware(event.observed_at) > stored_at + TOLERANCE:
                event = event.model_copy(update={"observed_at": stored_at})
        latest = self.latest
        if latest is None or aware(event.observed_at) >= aware(latest.observed_at):
            self.latest = event

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(NatsError, TimeoutError):
                async with asyncio.timeout(5):
                    await nc.close()
