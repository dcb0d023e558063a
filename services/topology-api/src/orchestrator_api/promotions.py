"""New masters as the recovery leader announces them (``orchestrator.v1.master.*``).

Every API process holds a core subscription (every process hears every message: each has its
own view) and keeps the verified promotions for :func:`orchestrator_api.store.promoted.overlay`,
which :meth:`Promotions.apply` lays over the store's view for every read. A message that is not
a valid ``MasterChanged``, not signed with ``CommandSigningKey``, expired, replayed, or not
from the current recovery leader (its fencing token and id, as the leader watch last heard) is
refused: logged at WARNING with why, counted, and never applied
(:class:`~orchestrator_shared.master_change.MasterChangeVerifier`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_api.store.promoted import HOLD_SECONDS, Promotion, overlay
from orchestrator_api.store.view import FleetView
from orchestrator_shared.bus import LeaderEvent, MasterChanged, StoreChanged, Subjects
from orchestrator_shared.dead_letters import one_line
from orchestrator_shared.master_change import MasterChangeVerifier
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth

log = logging.getLogger(__name__)


class Promotions:
    """Verified promotions, held until the snapshots show them or ``hold`` seconds pass."""

    def __init__(
        self,
        subjects: Subjects,
        verifier: MasterChangeVerifier,
        leader: Callable[[], LeaderEvent | None],
        *,
        hold: float = HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_applied: Callable[[Promotion], None] | None = None,
    ) -> None:
        """``on_applied``: told of each promotion held (the live stream tells browsers)."""
        self._subjects = subjects
        self._on_applied = on_applied
        self._verifier = verifier
        self._leader = leader
        self._hold = hold
        self._clock = clock
        self._held: dict[str, Promotion] = {}  # by recovery id: a repeat changes nothing
        self._cache: tuple[FleetView, int, FleetView] | None = None
        self._version = 0
        self._nc: Client | None = None
        self._subscription: Subscription | None = None
        self.applied = 0
        self.refused = 0

    async def connect(self, servers: Sequence[str], auth: NatsAuth = ANONYMOUS) -> None:
        self._nc = await connect_nats(
            servers, name="orchestrator-topology-api-promotions", auth=auth
        )
        self._subscription = await self._nc.subscribe(
            self._subjects.all_master_changed, cb=self._on_message
        )

    async def _on_message(self, msg: Msg) -> None:
        self.receive(msg.data)

    def receive(self, data: bytes) -> str | None:
        """Take one message; None when it is held, else why it was refused."""
        why = self._refusal(data)
        if why is not None:
            self.refused += 1
            log.warning("master change refused: %s", why)
        return why

    def _refusal(self, data: bytes) -> str | None:
        try:
            message = MasterChanged.model_validate_json(data)
        except ValidationError as exc:
            return f"not a valid MasterChanged: {one_line(exc)}"
        why = self._verifier.refusal(message, self._leader())
        if why is not None:
            return why
        try:
            promotion = Promotion.of(message, received=self._clock())
        except ValueError as exc:
            return one_line(exc)
        if message.recovery_id not in self._held:
            self._forget_overtaken(promotion)
            self._held[message.recovery_id] = promotion
            self._version += 1
            self.applied += 1
            if self._on_applied is not None:
                self._on_applied(promotion)
            log.info(
                "%s is the master of %s (%s), as the recovery leader says",
                promotion.successor,
                promotion.cluster,
                promotion.command or "failover",
            )
        return None

    def apply(self, view: FleetView) -> FleetView:
        """``view`` with the held promotions that still apply (the same object for the same
        view and promotions, so answers cached per view stay cached)."""
        self._forget_expired()
        if not self._held:
            return view
        cached = self._cache
        if cached is not None and cached[0] is view and cached[1] == self._version:
            return cached[2]
        shown = overlay(view, self._held.values())
        self._cache = (view, self._version, shown)
        return shown

    def _forget_overtaken(self, newer: Promotion) -> None:
        """A newer change of the same servers (a takeover and back) replaces the older one."""
        involved = {newer.failed, newer.successor}
        for recovery_id, held in list(self._held.items()):
            if {held.failed, held.successor} & involved:
                del self._held[recovery_id]

    def _forget_expired(self) -> None:
        now = self._clock()
        expired = [rid for rid, p in self._held.items() if p.expired(now, self._hold)]
        for recovery_id in expired:
            del self._held[recovery_id]
        if expired:
            self._version += 1
            self._cache = None

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(NatsError, TimeoutError):
            await nc.close()


def changed_notice(promotion: Promotion) -> bytes:
    """A ``store.changed`` body for the live stream: the cluster (old and new name) and both
    servers look different now, so browsers refetch them."""
    return StoreChanged(
        clusters=(promotion.cluster, str(promotion.successor)),
        instances=(str(promotion.failed), str(promotion.successor)),
        writer="master-changed",
    ).to_json()


class PromotionMetrics(Collector):
    """The master changes heard, on the API's ``/metrics``."""

    def __init__(self, promotions: Promotions) -> None:
        self._promotions = promotions

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "orchestrator_api_master_changes_applied",
            "MasterChanged messages of the recovery leader applied to the view at once",
            value=self._promotions.applied,
        )
        yield CounterMetricFamily(
            "orchestrator_api_master_changes_refused",
            "MasterChanged messages refused (unsigned, forged, expired, replayed, not the leader)",
            value=self._promotions.refused,
        )
