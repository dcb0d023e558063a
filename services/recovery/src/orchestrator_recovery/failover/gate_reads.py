"""The etcd facts an automated recovery's gates read, asked for while its failure is verified.

Before anything is planned, a recovery reads four things from etcd: the global switch, the
cluster's recovery still marked active (a leader before us stopped mid-way), the cluster's last
recovery (the block period) and the records that say whether this failure was already handled.
None depends on what the verification finds, and each is a round trip: :class:`PrefetchedReads`
starts all four as the recovery begins, concurrently with the verification probes, and hands
out the answers when the gates ask. They are read after the recovery began, as before (only
a few milliseconds earlier), by the only worker that may write them (the leader), so nothing
they say can be older than it was; a read for another cluster or kind goes to etcd at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from orchestrator_shared.etcd.recovery import (
    ActiveRecovery,
    GlobalSwitch,
    LastRecovery,
    RecordKind,
    RecoveryControl,
)

__all__ = ["GateReads", "PrefetchedReads"]

T = TypeVar("T")


class GateReads(Protocol):
    """What the gates read from etcd (a :class:`RecoveryControl` is one)."""

    async def global_switch(self) -> GlobalSwitch: ...
    async def active(self, cluster: str) -> ActiveRecovery | None: ...
    async def last(self, cluster: str, kind: RecordKind = ...) -> LastRecovery | None: ...
    async def fencing_view(self) -> tuple[dict[str, LastRecovery], list[LastRecovery]]: ...


class PrefetchedReads:
    """The four reads for ``cluster``'s failover, started at once. :meth:`close` when done."""

    def __init__(self, control: RecoveryControl, cluster: str) -> None:
        self._control = control
        self._cluster = cluster
        self._switch = _start(control.global_switch())
        self._active = _start(control.active(cluster))
        self._last = _start(control.last(cluster, RecordKind.FAILOVER))
        self._fencing = _start(control.fencing_view())

    async def global_switch(self) -> GlobalSwitch:
        return await self._switch

    async def active(self, cluster: str) -> ActiveRecovery | None:
        if cluster != self._cluster:
            return await self._control.active(cluster)
        return await self._active

    async def last(
        self, cluster: str, kind: RecordKind = RecordKind.FAILOVER
    ) -> LastRecovery | None:
        if cluster != self._cluster or kind is not RecordKind.FAILOVER:
            return await self._control.last(cluster, kind)
        return await self._last

    async def fencing_view(self) -> tuple[dict[str, LastRecovery], list[LastRecovery]]:
        return await self._fencing

    def close(self) -> None:
        """The recovery is over: an answer nobody asked for is dropped when it comes, its
        error too (the recovery did not need it). A read in flight is left to end (each is
        bounded by the etcd request timeout) rather than cancelled: the client's channel is
        the election's too, and a plain read costs nothing to finish."""
        for task in (self._switch, self._active, self._last, self._fencing):
            task.add_done_callback(_quiet)


def _start(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    return asyncio.ensure_future(coroutine)


def _quiet(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.exception()
