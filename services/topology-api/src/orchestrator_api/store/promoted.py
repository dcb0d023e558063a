"""A new master the recovery leader announced, in the view before the snapshots show it (pure).

The recovery leader sends ``MasterChanged`` the moment a successor is writable
(:mod:`orchestrator_shared.master_change`). Until discovery's snapshots catch up, the view
would still name the old master, and every application that follows ``/api/master`` would be
sent to a read-only (or dead) server. :func:`overlay` builds the view as the servers now are:

- the successor: writable, no longer replicating from the old master;
- the old master of a graceful takeover (``demoted_replicates``): read-only, a replica of the
  successor (its replication configured, not yet known to run);
- the old master of a failover: ``lost-in-recovery`` (as the ``completed`` event makes it);
- the cluster's name and alias passed to the successor (a :class:`Succession`).

The snapshots still rule: a promotion is left out as soon as a server probed after it says
otherwise (:func:`disagree`: the successor read-only or replicating, the old master writable),
once the snapshots alone name the successor (:func:`shown_by_snapshots`), when either server is
not known or, before the successor was probed again, they are not in one cluster, and after
:data:`HOLD_SECONDS` in any case. A server probed after the promotion is shown as its snapshot
says, not patched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator_api.store.aliases import LOST_IN_RECOVERY, Succession
from orchestrator_api.store.view import FleetView
from orchestrator_shared.bus import MasterChanged
from orchestrator_shared.clock_skew import aware
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Downtime
from orchestrator_shared.snapshot import InstanceSnapshot, ReplicationChannel, ThreadState

HOLD_SECONDS = 5.0  # the longest a promotion is shown without the snapshots agreeing
OWNER = "orchestrator-recovery"


@dataclass(frozen=True, slots=True)
class Promotion:
    """One verified ``MasterChanged``; ``received`` on the API's monotonic clock."""

    cluster: str
    alias: str
    failed: InstanceKey
    successor: InstanceKey
    demoted_replicates: bool
    promoted_at: datetime
    recovery_id: str
    command: str
    received: float

    @classmethod
    def of(cls, message: MasterChanged, *, received: float) -> Promotion:
        """From a verified message; ``ValueError`` when its keys are not ``host:port`` or are
        the same instance."""
        failed = InstanceKey.parse(message.failed)
        successor = InstanceKey.parse(message.successor)
        if failed == successor:
            raise ValueError(f"the successor {successor} is the failed master itself")
        return cls(
            cluster=message.cluster,
            alias=message.cluster_alias,
            failed=failed,
            successor=successor,
            demoted_replicates=message.demoted_replicates,
            promoted_at=aware(message.promoted_at),
            recovery_id=message.recovery_id,
            command=message.command,
            received=received,
        )

    def expired(self, now: float, hold: float = HOLD_SECONDS) -> bool:
        return now - self.received > hold


def fresh(snapshot: InstanceSnapshot, promotion: Promotion) -> bool:
    """The server answered a probe begun after the promotion: its snapshot says what it is
    now (a failed probe republishes the facts from before)."""
    return snapshot.probe.ok and aware(snapshot.probe.attempted_at) > promotion.promoted_at


def disagree(view: FleetView, promotion: Promotion) -> bool:
    """A server answered, after the promotion, what the promotion denies: the successor
    read-only or replicating, the old master writable. The snapshots rule: not shown."""
    successor = view.snapshots[promotion.successor]
    failed = view.snapshots[promotion.failed]
    successor_says_no = successor.read_only or successor.master_key is not None
    if fresh(successor, promotion) and successor_says_no:
        return True
    return fresh(failed, promotion) and not failed.read_only


def shown_by_snapshots(view: FleetView, promotion: Promotion) -> bool:
    """The view names the successor for the old cluster name without help."""
    name = view.resolve_cluster(promotion.cluster)
    return name is not None and view.topology.clusters[name].master == promotion.successor


def applies(view: FleetView, promotion: Promotion) -> bool:
    """Whether the view still needs the promotion, and it fits the view: both servers known;
    until the successor was probed after it, both in one cluster (the successor was the old
    master's replica there); no server contradicting it; the view not naming it already."""
    if promotion.failed not in view.snapshots or promotion.successor not in view.snapshots:
        return False
    if not fresh(view.snapshots[promotion.successor], promotion):
        cluster_of = view.topology.cluster_of_instance
        if cluster_of.get(promotion.failed) != cluster_of.get(promotion.successor):
            return False
    return not disagree(view, promotion) and not shown_by_snapshots(view, promotion)


def overlay(view: FleetView, promotions: Iterable[Promotion]) -> FleetView:
    """``view`` with the promotions that :func:`applies` (module docstring); ``view`` itself
    when none does."""
    snapshots: dict[InstanceKey, InstanceSnapshot] = {}
    successions: list[Succession] = []
    downtime: list[Downtime] = []
    for promotion in promotions:
        if not applies(view, promotion):
            continue
        successor = view.snapshots[promotion.successor]
        failed = view.snapshots[promotion.failed]
        if not fresh(successor, promotion):  # a fresh one is writable already (``disagree``)
            snapshots[promotion.successor] = _writable(successor, promotion.failed)
        if not promotion.demoted_replicates:
            downtime.append(_lost(promotion))
        elif not fresh(failed, promotion):  # a fresh one shows its own replication
            snapshots[promotion.failed] = _demoted(failed, promotion.successor)
        successions.append(
            Succession(
                cluster=promotion.cluster,
                successor=promotion.successor,
                at=promotion.promoted_at,
                alias=promotion.alias,
                recovery_uid=promotion.recovery_id,
                command=promotion.command,
            )
        )
    if not successions:
        return view
    return view.overlaid(snapshots, successions=successions, downtime=downtime)


def _writable(snapshot: InstanceSnapshot, old_master: InstanceKey) -> InstanceSnapshot:
    """The successor as promoted: writable, its replication from the old master gone."""
    channels = tuple(c for c in snapshot.channels if c.master_key != str(old_master))
    return snapshot.model_copy(
        update={"read_only": False, "super_read_only": False, "channels": channels}
    )


def _demoted(snapshot: InstanceSnapshot, successor: InstanceKey) -> InstanceSnapshot:
    """The old master of a takeover: read-only, set to replicate from the successor."""
    channel = ReplicationChannel(
        master_key=str(successor),
        io_thread=ThreadState.STOPPED,
        sql_thread=ThreadState.STOPPED,
        io_running="No",
        sql_running="No",
    )
    return snapshot.model_copy(update={"read_only": True, "channels": (channel,)})


def _lost(promotion: Promotion) -> Downtime:
    """The dead master of a failover, as the ``completed`` event will downtime it."""
    return Downtime(
        key=promotion.failed,
        owner=OWNER,
        reason=LOST_IN_RECOVERY,
        begins_at=promotion.promoted_at,
        ends_at=promotion.promoted_at + timedelta(seconds=HOLD_SECONDS),
    )
