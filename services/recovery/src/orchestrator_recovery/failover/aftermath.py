"""What a master failover leaves to do once it completed, in the background.

The recovery does not wait for any of it (its ``completed`` event is already out); every
result is audited on ``orchestrator.v1.audit.<cluster>`` and logged, so a failure here is
never silent:

* **postponed replicas** (``PostponeReplicaRecoveryOnLagMinutes``): replicas delayed or lagging
  beyond the setting had their IO thread stopped with the others but were not moved during the
  recovery; now each is moved under the successor and verified. One that cannot be moved is
  left with replication stopped (audit ``recovery-postponed-replica``, ``ok=false``, with why);
  an operator relocates it.
* **lost replicas** (``DetachLostReplicasAfterMasterFailover``): each gets
  ``detach-replica-master-host`` (``Master_Host`` becomes ``//host``, reversible with
  ``reattach-replica-master-host``), audited by that operation; one that cannot be detached
  (unreachable, say) is audited as ``recovery-detach-lost-replica``, ``ok=false``.

* **the failed master's return**: watched closely for a while
  (:meth:`~orchestrator_recovery.failover.returning.ReturningMasters.watch`), so that one
  restarted at once by its supervisor is fenced the moment it answers.

If the worker stops leading meanwhile, the leadership guard stops what is left (nothing more is
sent) and the audit says which replicas were not handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.ports import Executor, Failures, Publisher
from orchestrator_shared.errors import LeaseLost, OrchestratorError
from orchestrator_shared.events import AuditEvent, RecoveryData
from orchestrator_shared.instance_key import InstanceKey

log = logging.getLogger(__name__)

Refresh = Callable[[Iterable[InstanceKey]], Awaitable[None]]
WatchReturn = Callable[[InstanceKey, Guard], Awaitable[bool]]


class Aftermath:
    """Runs the background work of completed recoveries; one per worker."""

    def __init__(
        self,
        executor: Executor,
        publisher: Publisher,
        *,
        worker_id: str,
        clock: Callable[[], datetime],
        refresh: Refresh | None = None,
        watch_return: WatchReturn | None = None,
    ) -> None:
        self._executor = executor
        self._watch_return = watch_return
        self._publisher = publisher
        self._worker_id = worker_id
        self._clock = clock
        self._refresh = refresh
        self._tasks: set[asyncio.Task[None]] = set()
        self._watches: set[asyncio.Task[None]] = set()  # returns watched (nobody waits for)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def start(self, data: RecoveryData, guard: Guard, *, detach_lost: bool) -> None:
        """Start the work ``data`` (a completed master recovery) leaves: its postponed
        replicas, and its lost ones when ``detach_lost``; the failed master's return watched."""
        if self._watch_return is not None and data.successor:
            watch = self._watch(self._watch_return, InstanceKey.parse(data.failed), guard)
            self._spawn(watch, f"return of {data.failed}", into=self._watches)
        if data.postponed:
            self._spawn(self._move_postponed(data, guard), f"postponed replicas of {data.cluster}")
        if detach_lost and data.lost:
            self._spawn(self._detach_lost(data, guard), f"lost replicas of {data.cluster}")

    def cancel(self) -> None:
        """Stop everything still running (the worker stopped leading)."""
        for task in [*self._tasks, *self._watches]:
            task.cancel()

    async def wait(self) -> None:
        """Until the replicas' work started so far has ended (not the watched returns)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(
        self,
        work: Coroutine[Any, Any, None],
        name: str,
        *,
        into: set[asyncio.Task[None]] | None = None,
    ) -> None:
        tasks = self._tasks if into is None else into
        task = asyncio.create_task(work, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @staticmethod
    async def _watch(watch: WatchReturn, key: InstanceKey, guard: Guard) -> None:
        try:
            await watch(key, guard)
        except LeaseLost:
            return  # no longer leading: the next leader's loop looks at it

    async def _attempt(
        self,
        data: RecoveryData,
        replicas: tuple[str, ...],
        what: str,
        work: Callable[[], Awaitable[Failures]],
    ) -> Failures:
        """``work``'s failures by replica; every replica failed with why when it raised."""
        try:
            return await work()
        except asyncio.CancelledError:
            log.warning(
                "recovery %s: replicas %s not %s: this worker stopped leading",
                data.recovery_id[:8],
                ", ".join(replicas),
                what,
            )
            raise
        except (LeaseLost, OrchestratorError) as exc:
            return dict.fromkeys(replicas, f"not {what}: {exc}")

    async def _move_postponed(self, data: RecoveryData, guard: Guard) -> None:
        replicas = data.postponed
        failures = await self._attempt(
            data,
            replicas,
            "moved",
            lambda: self._executor.move_postponed(data.successor, replicas, guard),
        )
        for replica in replicas:
            why = failures.get(replica)
            if why is None:
                message = (
                    f"{replica} moved under {data.successor} after recovery {data.recovery_id}"
                )
            else:
                message = (
                    f"{replica} could not be moved under {data.successor} after recovery "
                    f"{data.recovery_id}: {why}; it is left with replication stopped"
                )
            await self._audit("recovery-postponed-replica", data, replica, message, ok=why is None)
        if self._refresh is not None:
            try:
                await self._refresh([InstanceKey.parse(replica) for replica in replicas])
            except Exception as exc:
                log.warning("asking discovery to probe postponed replicas again: %s", exc)

    async def _detach_lost(self, data: RecoveryData, guard: Guard) -> None:
        replicas = tuple(sorted(data.lost))
        failures = await self._attempt(
            data, replicas, "detached", lambda: self._executor.detach_lost(replicas, guard)
        )
        for replica, why in sorted(failures.items()):
            message = (
                f"lost replica {replica} of recovery {data.recovery_id} could not be detached "
                f"(DetachLostReplicasAfterMasterFailover): {why}"
            )
            await self._audit("recovery-detach-lost-replica", data, replica, message, ok=False)

    async def _audit(
        self, kind: str, data: RecoveryData, replica: str, message: str, *, ok: bool
    ) -> None:
        (log.info if ok else log.warning)("%s", message)
        await self._publisher.audit(
            AuditEvent(
                type=kind,
                message=message,
                key=replica,
                cluster=data.successor or data.cluster,
                user=self._worker_id,
                at=self._clock(),
                ok=ok,
                details={"recovery_id": data.recovery_id},
            )
        )
