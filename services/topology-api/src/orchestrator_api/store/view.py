"""The read side of the store: the fleet as of one store generation (pure; no I/O).

Cluster membership is not kept row by row: it is computed from the stored snapshots with
:func:`build_topology`, once per change of the store, and every read is a dictionary lookup.
Downtime and promotion candidates ride along, so that one instance's whole API answer comes
from one view.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator_api.store.aliases import (
    LOST_IN_RECOVERY,
    Succession,
    assign_aliases,
    follow_successions,
    is_lost_in_recovery,
    lost_masters,
)
from orchestrator_api.store.models import ClusterSummary
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import Topology, TopologyInstance, build_topology


@dataclass(frozen=True, slots=True)
class ClusterSetting:
    """What an operator set for a cluster: an alias override ("" = none) and a domain."""

    alias_override: str = ""
    domain: str = ""


class FleetView:
    """Snapshots, their topology, and cluster names, aliases and domains.

    Aliases and the names of clusters that changed master follow the rules of
    :mod:`orchestrator_api.store.aliases`.
    """

    def __init__(
        self,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        settings: Mapping[str, ClusterSetting],
        *,
        downtime: Iterable[Downtime] = (),
        candidates: Iterable[Candidate] = (),
        successions: Iterable[Succession] = (),
        topology: Topology | None = None,
        now: datetime | None = None,
    ) -> None:
        self.snapshots = dict(snapshots)
        self.settings = dict(settings)
        self._downtime = {entry.key: entry for entry in downtime}
        self._candidates = {entry.key: entry for entry in candidates}
        self.successions = {entry.cluster: entry for entry in successions}
        self.built_at = now or datetime.now(UTC)
        # ``topology``: the caller's, when it already built it from exactly these snapshots
        self.topology: Topology = topology or build_topology(self.snapshots.values())
        self._summarize()
        self._ordered: list[TopologyInstance] | None = None  # built on first use

    def _summarize(self) -> None:
        """Cluster summaries, aliases and the retired cluster names (see :mod:`.aliases`)."""
        self.lost = lost_masters(self._downtime.values(), self.snapshots, now=self.built_at)
        assignment = assign_aliases(
            self.topology,
            {name: s.alias_override for name, s in self.settings.items() if s.alias_override},
            lost=self.lost,
            successions=self.successions.values(),
        )
        self.alias_conflicts = assignment.conflicts
        self._by_alias = dict(assignment.cluster_of_alias)
        summaries: dict[str, ClusterSummary] = {}
        for name, cluster in sorted(self.topology.clusters.items()):
            summaries[name] = ClusterSummary(
                name=name,
                alias=assignment.alias_of[name],
                domain=self.settings.get(name, ClusterSetting()).domain,
                master=cluster.master,
                count_instances=cluster.count,
            )
        self.summaries = summaries
        self._live = {
            name: cluster.master not in self.lost
            for name, cluster in self.topology.clusters.items()
        }

    def instance(self, key: InstanceKey) -> TopologyInstance | None:
        cluster = self.topology.cluster_of(key)
        return None if cluster is None else cluster.instances[key]

    def with_snapshots(
        self, snapshots: Mapping[InstanceKey, InstanceSnapshot], topology: Topology
    ) -> FleetView:
        """The same operator state over new snapshots (and their topology).

        When ``topology`` placed every instance where this view's did (see
        :func:`~orchestrator_shared.topology.update_topology`), cluster names, aliases and sizes
        are the same: they are reused instead of computed again.
        """
        if topology.cluster_of_instance is self.topology.cluster_of_instance:
            view = copy.copy(self)
            view.snapshots = dict(snapshots)
            view.topology = topology
            view._ordered = None
            lost_probed = any(
                snapshots.get(key) is not self.snapshots.get(key) for key in self.lost
            )
            if self.alias_conflicts or lost_probed:
                # which claimant holds a contested alias, and whether a lost master is back
                # at work, depend on probe facts, not only on where instances sit
                view._summarize()
            return view
        return FleetView(
            snapshots,
            self.settings,
            downtime=self._downtime.values(),
            candidates=self._candidates.values(),
            successions=self.successions.values(),
            topology=topology,
            now=self.built_at,
        )

    def overlaid(
        self,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        *,
        successions: Iterable[Succession] = (),
        downtime: Iterable[Downtime] = (),
    ) -> FleetView:
        """This view with some snapshots replaced and successions and downtime added (what a
        recovery leader's ``MasterChanged`` says before the snapshots do; see
        :mod:`orchestrator_api.store.promoted`)."""
        return FleetView(
            {**self.snapshots, **snapshots},
            self.settings,
            downtime=[*self._downtime.values(), *downtime],
            candidates=self._candidates.values(),
            successions=[*self.successions.values(), *successions],
            now=self.built_at,
        )

    @property
    def operator_state(self) -> tuple[object, object]:
        """Tokens of the downtime and candidate entries: the same objects while these are
        unchanged (views that differ in snapshots only share them)."""
        return (self._downtime, self._candidates)

    def downtime_of(self, key: InstanceKey, *, now: datetime) -> Downtime | None:
        """The instance's downtime in force at ``now``, if any (a ``lost-in-recovery`` one
        ends once the instance is seen replicating again)."""
        entry = self._downtime.get(key)
        return entry if entry is not None and self._holds(entry, now) else None

    def downtimes(self, *, now: datetime) -> list[Downtime]:
        """Every downtime in force at ``now``."""
        return [entry for entry in self._downtime.values() if self._holds(entry, now)]

    @property
    def back_at_work(self) -> tuple[Downtime, ...]:
        """``lost-in-recovery`` downtimes in force whose instance replicates again (the store
        ends them: see :mod:`orchestrator_api.store.upkeep`)."""
        return tuple(
            entry
            for entry in self._downtime.values()
            if entry.reason == LOST_IN_RECOVERY
            and entry.is_active(self.built_at)
            and entry.key not in self.lost
        )

    def _holds(self, entry: Downtime, now: datetime) -> bool:
        if entry.reason == LOST_IN_RECOVERY:
            return is_lost_in_recovery(entry, self.snapshots.get(entry.key), now=now)
        return entry.is_active(now)

    def candidate_of(self, key: InstanceKey, *, now: datetime) -> Candidate | None:
        """The promotion rule registered for the instance and not expired at ``now``."""
        entry = self._candidates.get(key)
        return entry if entry is not None and entry.expires_at > now else None

    def _in_key_order(self) -> list[TopologyInstance]:
        if self._ordered is None:
            self._ordered = [
                self.topology.clusters[self.topology.cluster_of_instance[key]].instances[key]
                for key in sorted(self.snapshots)
            ]
        return self._ordered

    def all_instances(self) -> list[TopologyInstance]:
        return list(self._in_key_order())

    def cluster_instances(self, name: str) -> list[TopologyInstance]:
        cluster = self.topology.clusters.get(name)
        if cluster is None:
            return []
        return [cluster.instances[key] for key in sorted(cluster.instances)]

    def cluster_by_alias(self, alias: str) -> str | None:
        return self._by_alias.get(alias)

    def resolve_cluster(self, hint: str) -> str | None:
        """orchestrator's ``FigureClusterName``, across master changes: a live cluster name,
        an alias, the old name of a cluster that changed master (followed to where it went),
        a retired cluster name, an instance key (``host:port``, or a bare host when exactly
        one known instance has that host)."""
        hint = hint.strip()
        if self._live.get(hint):
            return hint
        by_alias = self._by_alias.get(hint)
        if by_alias is not None:
            return by_alias
        followed = follow_successions(hint, self.successions, self.topology, is_live=self._live)
        if followed is not None:
            return followed
        if hint in self.summaries:
            return hint
        try:
            key = InstanceKey.parse(hint)
        except InvalidInstanceKey:
            return None
        name = self.topology.cluster_of_instance.get(key)
        if name is not None or ":" in hint.strip("[]"):
            return name
        same_host = {
            self.topology.cluster_of_instance[known]
            for known in self.snapshots
            if known.host == key.host
        }
        return same_host.pop() if len(same_host) == 1 else None

    def search(self, text: str) -> list[TopologyInstance]:
        """Instances whose key, cluster name or cluster alias contains ``text`` (any case)."""
        needle = text.strip().lower()
        if not needle:
            return []
        found = []
        for node in self._in_key_order():
            summary = self.summaries[node.cluster_name]
            haystacks = (str(node.key), node.cluster_name, summary.alias)
            if any(needle in haystack.lower() for haystack in haystacks):
                found.append(node)
        return found
