"""Returning old masters kept out of service: a failed master that comes back writable after
its recovery (restarted with ``read_only`` off, or resumed after a hang) is made read_only
again and its clients cut off, until an operator acknowledges the recovery or promotes it.

The leader's loop (:mod:`orchestrator_recovery.failover.worker`) calls
:meth:`ReturningMasters.keep_fenced` between passes; a planned promotion (a takeover) marks
its new master with :meth:`ReturningMasters.promoting` so that it is not taken for one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.fleet import FleetState
from orchestrator_recovery.ports import Executor, Isolate, Probe, Publisher
from orchestrator_shared.etcd.recovery import LastRecovery, RecoveryControl
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["ReturningMasters", "back_in_service"]


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
