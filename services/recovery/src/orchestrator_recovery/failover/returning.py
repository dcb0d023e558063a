"""Returning old masters kept out of service: a failed master that comes back writable after
its recovery (restarted with ``read_only`` off, or resumed after a hang) is made read_only
again and its clients cut off, until an operator acknowledges the recovery or promotes it.

The leader's loop (:mod:`orchestrator_recovery.failover.worker`) calls
:meth:`ReturningMasters.keep_fenced` between passes; a planned promotion (a takeover) marks
its new master with :meth:`ReturningMasters.promoting` so that it is not taken for one.

Right after a master failover, the failed master is watched closely for a while
(:meth:`ReturningMasters.watch`): a master killed and restarted at once by its supervisor
answers again a few hundred milliseconds after its death, writable if its my.cnf says so, and
is fenced within ``RETURN_WATCH_INTERVAL`` of answering instead of at the loop's next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.fleet import FleetState
from orchestrator_recovery.ports import Executor, Isolate, Probe, Publisher
from orchestrator_shared.errors import OrchestratorError
from orchestrator_shared.etcd.recovery import LastRecovery, RecoveryControl
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["RETURN_WATCH_INTERVAL", "RETURN_WATCH_SECONDS", "ReturningMasters", "back_in_service"]

log = logging.getLogger(__name__)

RETURN_WATCH_INTERVAL = 0.02
"""Seconds between two connection attempts to a failed master just after its failover."""
RETURN_WATCH_SECONDS = 30.0
"""How long after its failover a failed master is watched that closely (then the loop's
``demoted_check`` goes on looking at it)."""


class ReturningMasters:
    """Fences the failed masters of unacknowledged recoveries that answer writable again."""

    def __init__(
        self,
        state: FleetState,
        *,
        probe: Probe,
        executor: Executor,
        publisher: Publisher,
        control: RecoveryControl,
        worker_id: str,
        clock: Callable[[], datetime],
        isolated: Isolate,
    ) -> None:
        self._state = state
        self._probe = probe
        self._executor = executor
        self._publisher = publisher
        self._control = control
        self._worker_id = worker_id
        self._clock = clock
        self._isolated = isolated
        self._promoting: set[InstanceKey] = set()  # see promoting()

    async def keep_fenced(self, guard: Guard) -> list[str]:
        """Probe each failed master of an unacknowledged recovery; one that answers writable
        (restarted with read_only off) is made read_only again and its clients cut off. It
        stays so, outside the cluster (it replicates from nobody), until an operator
        acknowledges the recovery, or promotes it again. The keys fenced now."""
        fenced: list[str] = []
        records, promotions = await self._control.fencing_view()
        for cluster, last in records.items():
            with self._isolated(cluster, "fencing its returning old master"):
                if await self._fence_returning(cluster, last, promotions, guard):
                    fenced.append(str(InstanceKey.parse(last.failed)))
        return fenced

    async def watch(
        self,
        key: InstanceKey,
        guard: Guard,
        *,
        within: float = RETURN_WATCH_SECONDS,
        every: float = RETURN_WATCH_INTERVAL,
    ) -> bool:
        """Try ``key`` (a master just failed over) every ``every`` seconds for ``within``
        seconds; the moment it answers, :meth:`keep_fenced` (with all its checks: a master
        promoted again or serving replicas is left alone). Whether it was fenced."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            snapshot = await self._probe(key, self._state.snapshots.get(key))
            if snapshot.probe.ok:
                try:
                    return str(key) in await self.keep_fenced(guard)
                except OrchestratorError as exc:  # etcd did not answer: the loop tries again
                    log.warning("fencing returning old master %s: %s", key, exc)
                    return False
            await asyncio.sleep(every)
        return False

    @contextlib.contextmanager
    def promoting(self, key: InstanceKey) -> Iterator[None]:
        """While a planned promotion makes ``key`` the master (from before it is writable until
        its record is written), it is not fenced as a returning old master."""
        self._promoting.add(key)
        try:
            yield
        finally:
            self._promoting.discard(key)

    def is_promoting(self, key: InstanceKey) -> bool:
        """Whether a planned promotion is making ``key`` the master right now."""
        return key in self._promoting

    async def _fence_returning(
        self, cluster: str, last: LastRecovery, promotions: Iterable[LastRecovery], guard: Guard
    ) -> bool:
        """Fence ``cluster``'s failed master of ``last`` if it came back writable; whether it
        was made read_only now."""
        if not last.successor or not last.failed:
            return False
        key = InstanceKey.parse(last.failed)
        snapshots = self._state.snapshots
        if key in self._promoting or back_in_service(key, last, promotions, snapshots.values()):
            return False
        snapshot = await self._probe(key, snapshots.get(key))
        if not snapshot.probe.ok or snapshot.read_only or key in self._promoting:
            return False
        fence = await self._executor.fence(key, guard)
        done = "made read_only again" if fence.fenced else f"could not fence it: {fence.detail}"
        await self._publisher.audit(
            AuditEvent(
                type="fence-returning-master",
                message=f"{key} came back writable after recovery {last.recovery_id}: {done}",
                key=str(key),
                cluster=cluster,
                user=self._worker_id,
                at=self._clock(),
                ok=fence.fenced,
            )
        )
        return fence.fenced


def back_in_service(
    key: InstanceKey,
    last: LastRecovery | None,
    promotions: Iterable[LastRecovery],
    snapshots: Iterable[InstanceSnapshot],
) -> bool:
    """Whether the failed master of ``last`` serves again since: a later failover or a
    graceful takeover promoted it, or replicas replicate from it (an operator made it a
    master again). Fencing it then would make a live master read-only."""
    if last is not None and any(
        r.successor == str(key) and r.ended_at > last.ended_at for r in promotions
    ):
        return True
    return any(
        snapshot.master_key == key
        and snapshot.primary_channel is not None
        and snapshot.primary_channel.is_replicating
        for snapshot in snapshots
    )
