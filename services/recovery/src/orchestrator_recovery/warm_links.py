"""Connections to the replicas kept open by the leading worker, for the verification of a failure.

A failover is verified through the failed master's replicas: each is probed directly, now, and
its IO thread's state decides (docs/recovery.md, "Verification"). Opening a connection (TCP and
authentication) was most of such a probe; so while it leads, the worker keeps one idle pooled
connection to every replica it knows, opened in the background, and the verification probes
them on it. That is safe for a replica: what matters is what it answers now, on whichever
connection, and a kept connection that broke is replaced at once by a new one within the same
probe. The failed master itself is never warmed here: its death is confirmed by a new
connection attempt (a kept one that broke is no evidence; the probe then connects again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from orchestrator_recovery.fleet import FleetState
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["WARM_EVERY_SECONDS", "WARM_LINKS_MAX", "WarmReplicaLinks", "replicas_to_warm"]

log = logging.getLogger(__name__)

WARM_EVERY_SECONDS = 1.0
"""How often the kept connections are looked at (new replicas, broken connections)."""
WARM_LINKS_MAX = 1000
"""At most this many replicas get a kept connection (a very large fleet's rest are probed on a
new connection, as before)."""


def replicas_to_warm(snapshots: Iterable[InstanceSnapshot]) -> list[InstanceKey]:
    """The replicas (instances with a replication channel) that answered their last probe,
    at most ``WARM_LINKS_MAX`` of them, in key order."""
    keys = sorted(s.instance_key for s in snapshots if s.channels and s.probe.ok)
    return keys[:WARM_LINKS_MAX]


class WarmReplicaLinks:
    """Keeps a connection open to each replica of the fleet (:func:`replicas_to_warm`)."""

    def __init__(
        self,
        state: FleetState,
        warm: Callable[[InstanceKey], Awaitable[bool]],
        *,
        every: float = WARM_EVERY_SECONDS,
    ) -> None:
        self._state = state
        self._warm = warm
        self._every = every

    async def once(self) -> int:
        """One round: a connection opened where none is kept; how many are kept now."""
        keys = replicas_to_warm(self._state.snapshots.values())
        kept = await asyncio.gather(*(self._warm(key) for key in keys))
        return sum(kept)

    async def run(self) -> None:
        """Rounds until cancelled (only while leading: a standby keeps no connections)."""
        while True:
            try:
                await self.once()
            except Exception as exc:  # never stop leading for this: verification still works
                log.warning("keeping connections to replicas: %r", exc)
            await asyncio.sleep(self._every)
