"""The worker's warm picture of the fleet, kept from the bus (no database involved).

Every recovery worker, leader or standby, keeps:

* the latest snapshot of every instance, from ``ORCHESTRATOR_SNAPSHOTS`` (an ordered consumer
  that starts with the last message of every subject, so a worker that starts or takes over
  knows the whole fleet within one read of the stream, then follows it live);
* ``unreachable`` events from ``ORCHESTRATOR_EVENTS`` (new ones only: a stale one says nothing
  about now), which wake the analysis at once instead of at the next tick; when each arrived
  and how long discovery took to send it are kept for the recovery's phase times
  (:class:`Suspicion`).

Failover never depends on topology-api or its storage (DESIGN.md §1): this and the worker's
own probes are all it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError

from orchestrator_shared.bus import EVENTS_STREAM, SNAPSHOTS_STREAM, Subjects, UnreachableEvent
from orchestrator_shared.clock_skew import bounded_by_arrival
from orchestrator_shared.dead_letters import one_line
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot

log = logging.getLogger(__name__)

LOAD_GRACE_SECONDS = 3.0
SUSPICION_FRESH_SECONDS = 5.0
"""An ``unreachable`` event older than this when its recovery starts does not time it: the
recovery was started by something else (a later snapshot, an operator)."""


@dataclass(frozen=True, slots=True)
class Suspicion:
    """An ``unreachable`` event as the worker received it: when (monotonic) and how long
    discovery took from seeing the master go to sending it (ms; None when it did not say)."""

    arrived: float
    detect_ms: float | None = None


class FleetState:
    """Latest snapshots by instance, and a wake-up for whoever analyses them."""

    def __init__(self) -> None:
        self._snapshots: dict[InstanceKey, InstanceSnapshot] = {}
        self._changed = asyncio.Event()
        self.unreachable: asyncio.Queue[InstanceKey] = asyncio.Queue()
        self._suspicions: dict[InstanceKey, Suspicion] = {}
        self.loaded = asyncio.Event()  # set once the stream's backlog has been read

    @property
    def snapshots(self) -> Mapping[InstanceKey, InstanceSnapshot]:
        return self._snapshots

    def put(self, snapshot: InstanceSnapshot) -> None:
        """Keep ``snapshot`` unless an equally new or newer one of the instance is kept."""
        key = snapshot.instance_key
        known = self._snapshots.get(key)
        if known is not None and known.probe.checked_at > snapshot.probe.checked_at:
            return
        self._snapshots[key] = snapshot
        self._changed.set()

    def forget(self, key: InstanceKey) -> None:
        if self._snapshots.pop(key, None) is not None:
            self._changed.set()

    def mark_unreachable(self, key: InstanceKey, *, detect_ms: float | None = None) -> None:
        self._suspicions[key] = Suspicion(time.monotonic(), detect_ms)
        self.unreachable.put_nowait(key)
        self._changed.set()

    def take_suspicion(self, key: InstanceKey) -> Suspicion | None:
        """The last ``unreachable`` event of ``key`` if it arrived within
        ``SUSPICION_FRESH_SECONDS`` (forgotten either way: one recovery is timed by it)."""
        suspicion = self._suspicions.pop(key, None)
        if suspicion is None or time.monotonic() - suspicion.arrived > SUSPICION_FRESH_SECONDS:
            return None
        return suspicion

    async def wait_changed(self, within: float) -> bool:
        """Wait until something changed (for at most ``within`` seconds); whether it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._changed.wait()
        changed = self._changed.is_set()
        self._changed.clear()
        return changed


class FleetFeed:
    """Keeps a :class:`FleetState` from the bus."""

    def __init__(self, nc: Client, subjects: Subjects, state: FleetState) -> None:
        self._nc = nc
        self._subjects = subjects
        self._state = state
        # messages skipped as unreadable (the feed's consumers are ordered and unacknowledged:
        # a skipped message is never redelivered, so there is no dead letter to keep)
        self.refused = 0

    async def run(self) -> None:
        """Follow both streams until cancelled, subscribing again after bus errors."""
        js = self._nc.jetstream()
        while True:
            subscriptions = []
            try:
                backlog = (await js.stream_info(SNAPSHOTS_STREAM)).state.messages
                subscriptions.append(
                    await js.subscribe(
                        self._subjects.all_snapshots,
                        stream=SNAPSHOTS_STREAM,
                        ordered_consumer=True,
                        config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
                        cb=self._snapshot_taker(backlog),
                    )
                )
                if backlog == 0:
                    self._state.loaded.set()
                else:
                    # The backlog count can overstate what arrives (an instance forgotten in
                    # between): never wait for it longer than this.
                    asyncio.get_running_loop().call_later(
                        LOAD_GRACE_SECONDS, self._state.loaded.set
                    )
                subscriptions.append(
                    await js.subscribe(
                        self._subjects.all_unreachable,
                        stream=EVENTS_STREAM,
                        ordered_consumer=True,
                        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
                        cb=self._take_unreachable,
                    )
                )
                await asyncio.Event().wait()  # until cancelled
            except (NatsError, JetStreamError) as exc:
                log.warning("fleet feed: %s; subscribing again", exc or type(exc))
                await asyncio.sleep(0.5)
            finally:
                for subscription in subscriptions:
                    with contextlib.suppress(NatsError, JetStreamError):
                        await subscription.unsubscribe()

    def _snapshot_taker(self, backlog: int) -> Callable[[Msg], Awaitable[None]]:
        """The subscription's callback; the state counts as loaded after ``backlog`` messages."""
        seen = 0

        async def take(msg: Msg) -> None:
            nonlocal seen
            seen += 1
            self._take_snapshot(msg)
            if seen >= backlog:
                self._state.loaded.set()

        return take

    def _take_snapshot(self, msg: Msg) -> None:
        if not msg.data:  # a purge marker: the instance was forgotten
            with contextlib.suppress(ValueError):
                self._state.forget(self._subjects.key_of_snapshot_subject(msg.subject))
            return
        try:
            snapshot = InstanceSnapshot.from_json(msg.data)
        except Exception as exc:  # whatever a malformed message makes the parser raise
            self.refused += 1
            log.error("fleet feed: unreadable snapshot on %s skipped: %s", msg.subject,
                      one_line(exc))  # fmt: skip
            return
        with contextlib.suppress(NatsError, ValueError, IndexError):
            # a probe time after the stream stored it is a clock ahead (or forged): bounded
            snapshot = bounded_by_arrival(snapshot, msg.metadata.timestamp)
        self._state.put(snapshot)

    async def _take_unreachable(self, msg: Msg) -> None:
        try:
            key = InstanceKey.from_subject_token(msg.subject.rsplit(".", 1)[-1])
        except ValueError as exc:
            self.refused += 1
            log.warning("fleet feed: bad unreachable subject %s: %s", msg.subject, exc)
            return
        self._state.mark_unreachable(key, detect_ms=_detect_ms(msg.data))


def _detect_ms(body: bytes) -> float | None:
    """How long discovery took from seeing the master go to sending the event (its own clock
    both times), in ms; None when the event does not say (an older discovery) or is unreadable
    (the subject alone still wakes the analysis)."""
    try:
        event = UnreachableEvent.model_validate_json(body)
    except ValueError:
        return None
    if event.lost_at is None:
        return None
    return max((event.detected_at - event.lost_at).total_seconds() * 1000, 0.0)
