"""Which cluster each name and alias stands for, across master changes (pure; no I/O).

A cluster is named after its master (``host:port``), so a failover or a takeover renames it.
Clients that address a cluster by its alias or by its old name must reach the new one at once,
and an alias must name exactly one cluster. The rules, as an operator coming from orchestrator
expects them:

* **Successions.** A completed master recovery or takeover records that cluster ``old`` passed to
  ``successor`` (:class:`Succession`; the store keeps the latest one per old name). A name that
  no longer stands for a live cluster follows its successions to the cluster that holds the
  successor now, however many master changes ago.
* **Lost in recovery.** The failed master of a recovery is downtimed with the reason
  ``lost-in-recovery``. Such a master stays a cluster of its own (named after itself), but it
  claims no alias, and its name counts as retired (it follows the succession), until the
  downtime ends: explicitly, by expiring, or by the instance being seen replicating again after
  the downtime began (it was put back to work).
* **One alias, one cluster.** A cluster claims the alias an operator set for it
  (``set-cluster-alias``, moved along successions) or else the one it detected
  (``DetectClusterAliasQuery``). When several clusters claim the same alias, one holds it,
  chosen in this order: a set alias over a detected one; the cluster of the alias's latest
  succession; a master whose last probe answered; a writable master; more instances; the
  smaller name. The others show their own name as alias, and the conflict is reported
  (:class:`AliasConflict`) for the store to log and audit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Downtime
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import Topology

LOST_IN_RECOVERY = "lost-in-recovery"
MAX_SUCCESSIONS_FOLLOWED = 64  # a chain longer than this is a loop we did not see


@dataclass(frozen=True, slots=True)
class Succession:
    """Cluster ``cluster`` (its old name) passed to ``successor`` at ``at``."""

    cluster: str
    successor: InstanceKey
    at: datetime
    alias: str = ""  # the alias the cluster had when it passed ("" = none but its name)
    recovery_uid: str = ""
    command: str = ""  # "" for a recovery; "graceful-master-takeover", ... for an operation


@dataclass(frozen=True, slots=True)
class AliasConflict:
    """``alias`` is claimed by ``holder`` and by ``others``; ``holder`` keeps it because of
    ``why``."""

    alias: str
    holder: str
    others: tuple[str, ...]
    why: str

    def describe(self) -> str:
        others = ", ".join(self.others)
        return (
            f"cluster alias '{self.alias}' is claimed by {self.holder} and by {others}; "
            f"it names {self.holder} ({self.why}); the others show their own name"
        )


@dataclass(frozen=True, slots=True)
class AliasAssignment:
    """The alias each cluster shows, the cluster each alias names, and the conflicts."""

    alias_of: Mapping[str, str]
    cluster_of_alias: Mapping[str, str]
    conflicts: tuple[AliasConflict, ...]


def is_lost_in_recovery(
    downtime: Downtime, snapshot: InstanceSnapshot | None, *, now: datetime
) -> bool:
    """Whether a ``lost-in-recovery`` downtime still holds: in force, and the instance not
    seen replicating (both threads running) since it began."""
    if downtime.reason != LOST_IN_RECOVERY or not downtime.is_active(now):
        return False
    return not (snapshot is not None and is_back_at_work(snapshot, since=downtime.begins_at))


def is_back_at_work(snapshot: InstanceSnapshot, *, since: datetime) -> bool:
    """The instance answered after ``since`` and replicates (both threads running)."""
    channel = snapshot.primary_channel
    return (
        snapshot.probe.ok
        and snapshot.probe.checked_at > since
        and channel is not None
        and channel.is_replicating
    )


def assign_aliases(
    topology: Topology,
    overrides: Mapping[str, str],
    *,
    lost: Iterable[InstanceKey] = (),
    successions: Iterable[Succession] = (),
) -> AliasAssignment:
    """Apply the module's rules. ``overrides``: cluster name -> alias an operator set."""
    lost_keys = frozenset(lost)
    claims: dict[str, list[str]] = {}
    alias_of: dict[str, str] = {}
    for name, cluster in topology.clusters.items():
        alias_of[name] = name
        override = overrides.get(name, "")
        if override:
            claims.setdefault(override, []).append(name)
        elif cluster.master not in lost_keys and cluster.alias != name:
            claims.setdefault(cluster.alias, []).append(name)
    owners = _alias_owners(topology, successions)
    cluster_of_alias: dict[str, str] = {}
    conflicts: list[AliasConflict] = []
    for alias, claimants in sorted(claims.items()):
        ranked = sorted(
            claimants,
            key=lambda name: _rank(topology, overrides, owners.get(alias), name),
        )
        holder = ranked[0]
        alias_of[holder] = alias
        cluster_of_alias[alias] = holder
        if len(ranked) > 1:
            why = _why(topology, overrides, owners.get(alias), holder, ranked[1])
            conflicts.append(AliasConflict(alias, holder, tuple(ranked[1:]), why))
    return AliasAssignment(alias_of, cluster_of_alias, tuple(conflicts))


def _alias_owners(topology: Topology, successions: Iterable[Succession]) -> dict[str, str]:
    """For each alias, the cluster now holding the successor of its latest succession."""
    latest: dict[str, Succession] = {}
    for succession in successions:
        if not succession.alias or succession.alias == succession.cluster:
            continue
        known = latest.get(succession.alias)
        if known is None or succession.at >= known.at:
            latest[succession.alias] = succession
    owners = {}
    for alias, succession in latest.items():
        name = topology.cluster_of_instance.get(succession.successor)
        if name is not None:
            owners[alias] = name
    return owners


def _rank(
    topology: Topology, overrides: Mapping[str, str], owner: str | None, name: str
) -> tuple[int, int, int, int, int, str]:
    cluster = topology.clusters[name]
    master = cluster.instances[cluster.master].snapshot
    return (
        0 if overrides.get(name) else 1,
        0 if name == owner else 1,
        0 if master.probe.ok else 1,
        0 if not master.read_only else 1,
        -cluster.count,
        name,
    )


_REASONS = (
    "an operator set it",
    "it passed there in the latest master change",
    "its master answers",
    "its master is writable",
    "it has more instances",
    "its name sorts first",
)


def _why(
    topology: Topology, overrides: Mapping[str, str], owner: str | None, holder: str, next_: str
) -> str:
    """The first rule on which ``holder`` beat the runner-up."""
    ours = _rank(topology, overrides, owner, holder)
    theirs = _rank(topology, overrides, owner, next_)
    for reason, mine, other in zip(_REASONS, ours, theirs, strict=True):
        if mine != other:
            return reason
    return _REASONS[-1]


def follow_successions(
    name: str,
    successions: Mapping[str, Succession],
    topology: Topology,
    *,
    is_live: Mapping[str, bool],
) -> str | None:
    """The live cluster that ``name``'s successions lead to (the last cluster reached when
    none is live); None when ``name`` has no succession or its successor is not known."""
    reached: str | None = None
    seen = {name}
    current = name
    for _ in range(MAX_SUCCESSIONS_FOLLOWED):
        succession = successions.get(current)
        if succession is None:
            break
        target = topology.cluster_of_instance.get(succession.successor)
        if target is None:
            break
        reached = target
        if is_live.get(target, False) or target in seen:
            break
        seen.add(target)
        current = target
    return reached


def lost_masters(
    downtime: Iterable[Downtime],
    snapshots: Mapping[InstanceKey, InstanceSnapshot],
    *,
    now: datetime,
) -> frozenset[InstanceKey]:
    """Instances whose ``lost-in-recovery`` downtime still holds at ``now``."""
    return frozenset(
        entry.key
        for entry in downtime
        if is_lost_in_recovery(entry, snapshots.get(entry.key), now=now)
    )


__all__ = [
    "LOST_IN_RECOVERY",
    "AliasAssignment",
    "AliasConflict",
    "Succession",
    "assign_aliases",
    "follow_successions",
    "is_back_at_work",
    "is_lost_in_recovery",
    "lost_masters",
]
