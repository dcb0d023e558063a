"""The replicas' heartbeat, managed by the recovery leader (``ManageReplicaHeartbeat``).

A hung master (SIGSTOP, a full disk, a lock) keeps its TCP connections open: its replicas'
IO threads only notice when nothing arrived for ``@@slave_net_timeout`` seconds (60 by
default), and until then they say they replicate, so the holistic check (rightly) refuses to
fail the master over. The leader therefore keeps each healthy replica at
``slave_net_timeout = ReplicaNetTimeoutSeconds`` and ``MASTER_HEARTBEAT_PERIOD`` at half of it
(an idle master sends a heartbeat that often, so a healthy idle link never times out).

What MariaDB requires (measured on 10.11, docs/recovery.md "Hung master"): ``SET GLOBAL
slave_net_timeout`` does not reach a running IO thread (it reads the value when it connects);
``CHANGE MASTER TO master_heartbeat_period`` is refused while either replication thread runs;
and any later ``CHANGE MASTER`` that does not name the period sets it to
``slave_net_timeout / 2``, so every repoint the stack (or an operator) does afterwards keeps
the managed period. A server that replicates from nobody (a master) only gets the ``SET
GLOBAL``, which touches nothing running: when it is later repointed (a takeover demotes it, an
operator attaches it) its IO thread starts with the managed timeout and the period follows.
Applying it to a replica is thus ``SET GLOBAL``, ``STOP SLAVE``, ``CHANGE MASTER``,
``START SLAVE``: a replica stops replicating for a few milliseconds. To keep that harmless it is
done only on a replica that replicates healthily from a master that answers, one replica per
cluster per pass, never while a recovery or an operation runs, each statement behind the
leader's guard, and audited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.ports import Publisher
from orchestrator_shared.errors import LeaseLost, OrchestratorError
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot

__all__ = [
    "HeartbeatPolicy",
    "ReplicaHeartbeat",
    "heartbeat_statements",
    "masters_to_prime",
    "replicas_to_manage",
]

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0
"""A replica whose change failed is not tried again before this long (never a tight loop)."""

ApplyStatements = Callable[[InstanceKey, Sequence[str], Guard], Awaitable[None]]
"""Runs the statements on the instance, in order, each behind ``guard()``; raises
OrchestratorError when one fails."""


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """``ManageReplicaHeartbeat`` and ``ReplicaNetTimeoutSeconds``."""

    managed: bool = True
    net_timeout: int = 1

    @property
    def period(self) -> float:
        """The heartbeat period: half the net timeout (MariaDB's own default ratio)."""
        return self.net_timeout / 2


def heartbeat_statements(policy: HeartbeatPolicy) -> tuple[str, ...]:
    """What makes a replica's link use the policy (see the module's docstring for why each)."""
    return (
        f"SET GLOBAL slave_net_timeout = {int(policy.net_timeout)}",
        "STOP SLAVE",
        f"CHANGE MASTER TO master_heartbeat_period = {policy.period:.3f}",
        "START SLAVE",
    )


def differs(snapshot: InstanceSnapshot, policy: HeartbeatPolicy) -> bool:
    """Whether the replica's reported values are not the policy's."""
    channel = snapshot.primary_channel
    if channel is None or channel.heartbeat_period is None:
        return False
    if snapshot.slave_net_timeout != policy.net_timeout:
        return True
    return abs(channel.heartbeat_period - policy.period) > 0.0005


def healthy_replica(
    snapshot: InstanceSnapshot, snapshots: Mapping[InstanceKey, InstanceSnapshot]
) -> bool:
    """A MariaDB replica with one (default) channel, both threads running without an error,
    from a master that answered its last probe: the only kind whose threads are restarted."""
    if not snapshot.probe.ok or snapshot.flavor is not Flavor.MARIADB:
        return False
    if len(snapshot.channels) != 1:
        return False
    channel = snapshot.channels[0]
    if channel.name or channel.master_detached or not channel.is_replicating:
        return False
    if channel.last_io_errno or channel.last_sql_errno:
        return False
    master = snapshots.get(InstanceKey.parse(channel.master_key))
    return master is not None and master.probe.ok


def replicas_to_manage(
    snapshots: Mapping[InstanceKey, InstanceSnapshot],
    policy: HeartbeatPolicy,
    *,
    excluded: Iterable[InstanceKey] = (),
) -> list[InstanceKey]:
    """The replicas to change now: healthy ones whose values differ, at most one under each
    master (so a cluster never has two replicas restarting at once), none in ``excluded``
    (downtimed, recently failed). Pure."""
    if not policy.managed:
        return []
    skip = set(excluded)
    chosen: dict[str, InstanceKey] = {}
    for key in sorted(snapshots):
        snapshot = snapshots[key]
        if key in skip or not differs(snapshot, policy):
            continue
        if not healthy_replica(snapshot, snapshots):
            continue
        channel = snapshot.channels[0]
        chosen.setdefault(channel.master_key, key)
    return list(chosen.values())


def masters_to_prime(
    snapshots: Mapping[InstanceKey, InstanceSnapshot],
    policy: HeartbeatPolicy,
    *,
    excluded: Iterable[InstanceKey] = (),
) -> list[InstanceKey]:
    """The MariaDB servers replicating from nobody that answer with another
    ``slave_net_timeout``: they get only ``SET GLOBAL`` (nothing restarts). Pure."""
    if not policy.managed:
        return []
    skip = set(excluded)
    return [
        key
        for key in sorted(snapshots)
        if key not in skip
        and (snapshot := snapshots[key]).probe.ok
        and snapshot.flavor is Flavor.MARIADB
        and not snapshot.channels
        and snapshot.slave_net_timeout is not None
        and snapshot.slave_net_timeout != policy.net_timeout
    ]


class ReplicaHeartbeat:
    """Applies the policy to the replicas that differ, one step of the leader's upkeep."""

    def __init__(
        self,
        policy: HeartbeatPolicy,
        *,
        apply: ApplyStatements,
        publisher: Publisher,
        worker_id: str,
        clock: Callable[[], datetime],
        refresh: Callable[[Iterable[InstanceKey]], Awaitable[None]] | None = None,
    ) -> None:
        self.policy = policy
        self._refresh = refresh
        # the snapshot each change was decided on: the replica is left alone until a newer
        # one says what it is now (never changed twice on the same stale facts)
        self._acted_on: dict[InstanceKey, datetime] = {}
        self._apply = apply
        self._publisher = publisher
        self._worker_id = worker_id
        self._clock = clock
        self._failed_at: dict[InstanceKey, float] = {}

    async def keep(
        self,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        guard: Guard,
        *,
        downtimed: Iterable[InstanceKey] = (),
    ) -> list[InstanceKey]:
        """Change the replicas that differ (see :func:`replicas_to_manage`); the ones changed."""
        now = time.monotonic()
        recent = {k for k, at in self._failed_at.items() if now - at < RETRY_SECONDS}
        stale = {
            key
            for key, seen in self._acted_on.items()
            if key in snapshots and snapshots[key].probe.checked_at <= seen
        }
        changed: list[InstanceKey] = []
        excluded = {*downtimed, *recent, *stale}
        for key in replicas_to_manage(snapshots, self.policy, excluded=excluded):
            before = snapshots[key]
            self._acted_on[key] = before.probe.checked_at
            if await self._change(key, before, guard, heartbeat_statements(self.policy)):
                changed.append(key)
        for key in masters_to_prime(snapshots, self.policy, excluded=excluded):
            before = snapshots[key]
            self._acted_on[key] = before.probe.checked_at
            if await self._change(key, before, guard, heartbeat_statements(self.policy)[:1]):
                changed.append(key)
        if changed and self._refresh is not None:
            await self._refresh(changed)  # discovery reports them as they are now
        return changed

    async def _change(
        self, key: InstanceKey, before: InstanceSnapshot, guard: Guard, statements: Sequence[str]
    ) -> bool:
        channel = before.primary_channel
        was = f"slave_net_timeout {before.slave_net_timeout}"
        if channel is not None:
            was += f", heartbeat period {channel.heartbeat_period}"
        policy = self.policy
        want = f"slave_net_timeout {policy.net_timeout}"
        if len(statements) > 1:
            want += f", heartbeat period {policy.period:g}"
        try:
            await self._apply(key, statements, guard)
        except LeaseLost:
            raise
        except OrchestratorError as exc:
            self._failed_at[key] = time.monotonic()
            log.warning("%s: could not set the managed heartbeat: %s", key, exc)
            await self._audit(key, f"could not set {want} (was {was}): {exc}", ok=False)
            return False
        self._failed_at.pop(key, None)
        log.info("%s: replication heartbeat managed: %s (was %s)", key, want, was)
        done = "its threads restarted" if len(statements) > 1 else "no thread running"
        await self._audit(key, f"set {want} (was {was}); {done}", ok=True)
        return True

    async def _audit(self, key: InstanceKey, message: str, *, ok: bool) -> None:
        await self._publisher.audit(
            AuditEvent(
                type="replica-heartbeat",
                message=f"{key}: {message}",
                key=str(key),
                user=self._worker_id,
                at=self._clock(),
                ok=ok,
            )
        )
