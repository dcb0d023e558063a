"""``analyze``: every instance of every cluster, seen as the master of its direct replicas.

This is orchestrator's ``GetReplicationAnalysis`` as a pure function: snapshots, the clock and
the downtimes in, one ``Analysis`` per interesting instance out. The recovery service calls it
on live snapshots; topology-api serves it as ``/api/replication-analysis`` and
``/api/problems``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from types import MappingProxyType

from orchestrator_shared.analysis.codes import REPLICA_SIDE_CODES
from orchestrator_shared.analysis.detect import Subject, classify
from orchestrator_shared.analysis.errant import ErrantGtids, find_errant
from orchestrator_shared.analysis.facts import (
    ReplicaCounts,
    ReplicaLink,
    check_validity,
    desync_evidence,
    galera_evidence,
    is_failing_to_connect,
)
from orchestrator_shared.analysis.model import Analysis, AnalysisOptions, CoordinatesSeen
from orchestrator_shared.analysis.structure import structure_warnings
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.filters import matching_hostname_filter
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot, ReplicationChannel
from orchestrator_shared.topology import Topology, build_topology

_NOTHING_DOWNTIMED: Mapping[InstanceKey, datetime] = MappingProxyType({})
_NO_HISTORY: Mapping[InstanceKey, CoordinatesSeen] = MappingProxyType({})
_NEVER_DESYNCED: Mapping[InstanceKey, datetime] = MappingProxyType({})
_DEFAULT_OPTIONS = AnalysisOptions()


def analyze(
    snapshots: Iterable[InstanceSnapshot],
    *,
    now: datetime,
    downtimed: Mapping[InstanceKey, datetime] = _NOTHING_DOWNTIMED,
    maintenance: Collection[InstanceKey] = frozenset(),
    binlog_history: Mapping[InstanceKey, CoordinatesSeen] = _NO_HISTORY,
    desynced_since: Mapping[InstanceKey, datetime] = _NEVER_DESYNCED,
    options: AnalysisOptions = _DEFAULT_OPTIONS,
    include_no_problem: bool = False,
    include_downtimed: bool = True,
) -> list[Analysis]:
    """One ``Analysis`` per instance with a problem or a structure warning, sorted by key.

    ``downtimed`` maps an instance to the end of its downtime (active while ``now`` is before
    it). Instances in ``maintenance`` are left out entirely, as orchestrator does, and so are the
    analyses of instances whose host name matches ``options.recovery_ignore_hostname_filters``
    (they still count as replicas of their master). Use
    ``binlog_history`` (kept with ``track_binlog_coordinates``) to tell a locked semi-sync master
    from a hypothesis, and ``desynced_since`` (kept with ``track_galera_desync``) to tell a
    Galera node desynced for too long. ``include_downtimed=False`` drops what downtime makes
    skippable (the CLI); the API and the recovery loop keep it.
    """
    snaps = [snap for snap in snapshots if snap.instance_key not in maintenance]
    analysis_pass = _Pass(
        by_key={snap.instance_key: snap for snap in snaps},
        topology=build_topology(snaps),
        now=now,
        options=options,
        downtime={key: end for key, end in downtimed.items() if end > now},
        binlog_history=binlog_history,
        desynced_since=desynced_since,
    )
    results: list[Analysis] = []
    ignored = options.recovery_ignore_hostname_filters
    for key in sorted(analysis_pass.by_key):
        if ignored and matching_hostname_filter(ignored, key.host) is not None:
            continue
        analysis = analysis_pass.analyze_instance(key)
        if not analysis.has_problem and not include_no_problem:
            continue
        if analysis.skippable_due_to_downtime and not include_downtimed:
            continue
        results.append(analysis)
    return results


class _Pass:
    """One analysis pass: the snapshots indexed once, then each instance analysed in turn."""

    def __init__(
        self,
        *,
        by_key: Mapping[InstanceKey, InstanceSnapshot],
        topology: Topology,
        now: datetime,
        options: AnalysisOptions,
        downtime: Mapping[InstanceKey, datetime],
        binlog_history: Mapping[InstanceKey, CoordinatesSeen],
        desynced_since: Mapping[InstanceKey, datetime],
    ) -> None:
        self.by_key = by_key
        self.topology = topology
        self.now = now
        self.options = options
        self.downtime = downtime
        self.binlog_history = binlog_history
        self.desynced_since = desynced_since
        self.validity = {
            key: check_validity(snap, now=now, options=options) for key, snap in by_key.items()
        }
        self.replicas_of = _replicas_by_master(by_key)
        self._errant: dict[InstanceKey, ErrantGtids | None] = {}

    def errant_of(self, replica: InstanceSnapshot) -> ErrantGtids | None:
        key = replica.instance_key
        if key not in self._errant:
            master_keys = _masters_of(replica)
            masters = [self.by_key[master] for master in master_keys if master in self.by_key]
            if len(masters) < len(master_keys):  # a master we never saw: cannot judge
                self._errant[key] = None
            else:
                exclude = None if _node_is_co_master(self.topology, key) else key
                upstream = _ancestors(masters, self.by_key, exclude=exclude)
                self._errant[key] = find_errant(replica, masters, upstream=upstream)
        return self._errant[key]

    def is_stale_coordinates(self, snap: InstanceSnapshot) -> bool:
        seen = self.binlog_history.get(snap.instance_key)
        return (
            seen is not None
            and snap.self_coordinates is not None
            and seen.coordinates == snap.self_coordinates
            and (self.now - seen.since).total_seconds()
            >= self.options.reasonable_locked_semi_sync_master_seconds
        )

    def desynced_at(self, snap: InstanceSnapshot) -> datetime | None:
        """Since when the Galera node has been desynced, if its snapshot says it is."""
        if snap.galera is None or not snap.galera.is_desynced:
            return None
        return self.desynced_since.get(snap.instance_key)

    def analyze_instance(self, key: InstanceKey) -> Analysis:
        snap = self.by_key[key]
        cluster = self.topology.cluster_of(key)
        assert cluster is not None, "build_topology places every snapshot"
        node = cluster.instances[key]
        links = [
            ReplicaLink(
                snapshot=replica,
                channel=channel,
                validity=self.validity[replica.instance_key],
                is_downtimed=replica.instance_key in self.downtime,
            )
            for replica, channel in self.replicas_of.get(key, ())
        ]
        counts = ReplicaCounts.of(links, options=self.options)
        own_channel = snap.primary_channel
        desynced_at = self.desynced_at(snap)
        subject = Subject(
            is_master=not snap.channels,
            is_co_master=node.is_co_master,
            is_valid=self.validity[key].is_valid,
            is_partial=snap.probe.partial,
            is_read_only=snap.read_only,
            depth=node.depth,
            is_failing_to_connect=own_channel is not None and is_failing_to_connect(own_channel),
            semi_sync=snap.semi_sync,
            is_stale_binlog_coordinates=self.is_stale_coordinates(snap),
            galera=snap.galera,
            galera_desynced_seconds=(
                None if desynced_at is None else (self.now - desynced_at).total_seconds()
            ),
        )
        code = classify(subject, counts, self.options)

        errant = {
            link.snapshot.instance_key: found
            for link in links
            if (found := self.errant_of(link.snapshot)) is not None
        }
        counted_errant = [
            found.gtids for replica, found in errant.items() if replica not in self.downtime
        ]
        structure = structure_warnings(
            is_master=subject.is_master,
            is_read_only=snap.read_only,
            gtid_mode=snap.gtid_mode,
            semi_sync=snap.semi_sync,
            counts=counts,
            has_errant_replica=bool(counted_errant),
        )
        downtime_end = self.downtime.get(key)
        replicas_downtimed = counts.replicas == counts.downtimed and code in REPLICA_SIDE_CODES

        evidence = [f"{key}: {self.validity[key].reason}"]
        if snap.galera is not None:
            expected = self.options.galera_expected_cluster_size
            evidence.append(f"{key}: {galera_evidence(snap.galera, expected_size=expected)}")
        if desynced_at is not None:
            too_long = self.options.galera_desynced_too_long_seconds
            evidence.append(f"{key}: {desync_evidence(desynced_at, now=self.now, limit=too_long)}")
        if links:
            evidence.append(
                f"{key}: {counts.valid} of {counts.replicas} replicas reachable, "
                f"{counts.valid_connected} connected to it, {counts.valid_replicating} replicating"
            )
        evidence.extend(link.describe() for link in links)
        evidence.extend(f"replica {replica}: {found.reason}" for replica, found in errant.items())
        if subject.is_stale_binlog_coordinates:
            evidence.append(f"{key}: binlog coordinates have not moved for long enough")
        if downtime_end is not None:
            evidence.append(f"{key}: downtimed until {downtime_end.isoformat()}")

        return Analysis(
            key=key,
            master_key=snap.master_key,
            cluster_name=cluster.name,
            cluster_alias=cluster.alias,
            cluster_instance_count=cluster.count,
            data_center=snap.data_center,
            region=snap.region,
            binlog_coordinates=snap.self_coordinates,
            is_master=subject.is_master,
            is_co_master=subject.is_co_master,
            is_read_only=snap.read_only,
            last_check_valid=subject.is_valid,
            last_check_partial_success=subject.is_partial,
            is_failing_to_connect_to_master=subject.is_failing_to_connect,
            replication_depth=node.depth,
            replicas=tuple(link.snapshot.instance_key for link in links),
            count_replicas=counts.replicas,
            count_valid_replicas=counts.valid,
            count_valid_replicating_replicas=counts.valid_replicating,
            count_valid_replicas_connected_to_master=counts.valid_connected,
            count_replicas_failing_to_connect_to_master=counts.failing_to_connect,
            count_downtimed_replicas=counts.downtimed,
            count_delayed_replicas=counts.delayed,
            count_lagging_replicas=counts.lagging,
            count_logging_replicas=counts.logging,
            count_statement_based_logging_replicas=counts.statement_logging,
            count_mixed_based_logging_replicas=counts.mixed_logging,
            count_row_based_logging_replicas=counts.row_logging,
            count_distinct_major_versions_logging_replicas=counts.distinct_logging_major_versions,
            count_semi_sync_replicas_enabled=counts.semi_sync_enabled,
            oracle_gtid_immediate_topology=counts.oracle_gtid_topology,
            mariadb_gtid_immediate_topology=counts.mariadb_gtid_topology,
            semi_sync_master_enabled=snap.semi_sync.master_enabled,
            semi_sync_master_status=snap.semi_sync.master_status,
            semi_sync_master_wait_for_replica_count=snap.semi_sync.master_wait_for_replica_count,
            semi_sync_master_clients=snap.semi_sync.master_clients,
            is_stale_binlog_coordinates=subject.is_stale_binlog_coordinates,
            gtid_mode=snap.gtid_mode,
            min_replica_gtid_mode=counts.min_gtid_mode,
            max_replica_gtid_mode=counts.max_gtid_mode,
            errant_gtids=MappingProxyType({k: found.gtids for k, found in errant.items()}),
            max_replica_gtid_errant=";".join(counted_errant),
            code=code,
            structure=structure,
            is_downtimed=downtime_end is not None,
            downtime_end=downtime_end,
            downtime_remaining_seconds=(
                int((downtime_end - self.now).total_seconds()) if downtime_end else 0
            ),
            is_replicas_downtimed=replicas_downtimed,
            skippable_due_to_downtime=downtime_end is not None or replicas_downtimed,
            evidence=tuple(evidence),
        )


def track_binlog_coordinates(
    previous: Mapping[InstanceKey, CoordinatesSeen], snapshots: Iterable[InstanceSnapshot]
) -> dict[InstanceKey, CoordinatesSeen]:
    """Since when each instance's own binlog coordinates have stayed the same.

    Feed the result back in on the next call and pass it to ``analyze(binlog_history=...)``. An
    instance whose probe failed keeps its previous entry; one that moved starts again at the
    snapshot's ``checked_at``.
    """
    tracked = dict(previous)
    for snap in snapshots:
        key = snap.instance_key
        coordinates = snap.self_coordinates
        if not snap.probe.ok:
            continue
        if coordinates is None:
            tracked.pop(key, None)
            continue
        seen = tracked.get(key)
        if seen is None or seen.coordinates != coordinates:
            tracked[key] = CoordinatesSeen(coordinates=coordinates, since=snap.probe.checked_at)
    return tracked


def track_galera_desync(
    previous: Mapping[InstanceKey, datetime], snapshots: Iterable[InstanceSnapshot]
) -> dict[InstanceKey, datetime]:
    """Since when each Galera node has been desynced without a break.

    Feed the result back in on the next call and pass it to ``analyze(desynced_since=...)``.
    A node whose probe failed keeps its entry (its wsrep state is unknown, not synced); one
    seen desynced for the first time starts at the snapshot's ``checked_at``; one seen not
    desynced (or not running wsrep) is dropped, so a new desync starts again.
    """
    tracked = dict(previous)
    for snap in snapshots:
        key = snap.instance_key
        if not snap.probe.ok:
            continue
        if snap.galera is None or not snap.galera.is_desynced:
            tracked.pop(key, None)
        elif key not in tracked:
            tracked[key] = snap.probe.checked_at
    return tracked


def _masters_of(snapshot: InstanceSnapshot) -> list[InstanceKey]:
    masters: list[InstanceKey] = []
    for channel in snapshot.channels:
        master = _channel_master(channel)
        if master is not None and master != snapshot.instance_key and master not in masters:
            masters.append(master)
    return masters


def _channel_master(channel: ReplicationChannel) -> InstanceKey | None:
    try:
        return channel.linked_master
    except InvalidInstanceKey:  # pragma: no cover - validated when the snapshot was built
        return None


def _replicas_by_master(
    by_key: Mapping[InstanceKey, InstanceSnapshot],
) -> dict[InstanceKey, list[tuple[InstanceSnapshot, ReplicationChannel]]]:
    """Each known master's direct replicas with the channel that points at it, by key."""
    found: dict[InstanceKey, list[tuple[InstanceSnapshot, ReplicationChannel]]] = {}
    for key in sorted(by_key):
        replica = by_key[key]
        linked: set[InstanceKey] = set()
        for channel in replica.channels:
            master = _channel_master(channel)
            if master is None or master == key or master not in by_key or master in linked:
                continue
            linked.add(master)
            found.setdefault(master, []).append((replica, channel))
    return found


def _ancestors(
    masters: Iterable[InstanceSnapshot],
    by_key: Mapping[InstanceKey, InstanceSnapshot],
    *,
    exclude: InstanceKey | None,
) -> list[InstanceSnapshot]:
    """Every known server above ``masters`` (their masters, and so on), without repeats."""
    seen: set[InstanceKey] = {snap.instance_key for snap in masters}
    if exclude is not None:
        seen.add(exclude)
    pending = [master for snap in masters for master in _masters_of(snap)]
    found: list[InstanceSnapshot] = []
    while pending:
        key = pending.pop()
        if key in seen or key not in by_key:
            continue
        seen.add(key)
        found.append(by_key[key])
        pending.extend(_masters_of(by_key[key]))
    return found


def _node_is_co_master(topology: Topology, key: InstanceKey) -> bool:
    cluster = topology.cluster_of(key)
    return cluster is not None and cluster.instances[key].is_co_master
