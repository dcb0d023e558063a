"""Replication topologies built from snapshots (pure; no I/O).

A cluster is named after its master's ``host:port``, as in orchestrator. Each instance is placed
by following its primary replication channel up to the top: the instance at the top is the
cluster's master and its depth is 0. Rules at the edges:

* a replica whose master was never seen becomes the top of its own cluster (orchestrator does the
  same: the name must be a key we know);
* co-masters (A replicates from B and B from A) share one cluster; the writable one is the master
  (if both or neither are writable, the smaller key), the other sits at depth 1 under it;
* any longer replication cycle is broken the same way, at its writable or smallest member;
* the nodes of one Galera cluster (snapshots with the same non-empty ``cluster_state_uuid``; a
  dead node's is the one it last reported) are one cluster with their async replicas. Every
  node is writable and none replicates from another, so there is no master among them: the
  smallest top-level node names the cluster (``master``) and the other top-level trees are its
  ``peers``, each at depth 0 with its own replicas below it. When a Galera node is itself an
  async replica of an outside (non-Galera) master, the group joins that master's cluster, named
  after it, and the other top-level Galera nodes are its peers.

The alias is the master's ``suggested_cluster_alias`` if it has one, else the first alias any
member suggests (by key order), else the ``wsrep_cluster_name`` of a Galera cluster (unless
another Galera cluster of the fleet has the same one, as the default ``my_wsrep_cluster`` often
is: an alias must name one cluster), else the cluster name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import GaleraState, InstanceSnapshot, ThreadState


@dataclass(frozen=True, slots=True)
class TopologyInstance:
    snapshot: InstanceSnapshot
    depth: int
    cluster_name: str
    replicas: tuple[InstanceKey, ...]
    is_co_master: bool = False

    @property
    def key(self) -> InstanceKey:
        return self.snapshot.instance_key


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    alias: str
    master: InstanceKey
    instances: Mapping[InstanceKey, TopologyInstance] = field(default_factory=dict)
    # the other top-level nodes of a Galera cluster, in key order (see the module docstring)
    peers: tuple[InstanceKey, ...] = ()

    @property
    def count(self) -> int:
        return len(self.instances)

    def walk(self) -> Iterable[TopologyInstance]:
        """Instances depth-first from the master, then from each peer; replicas in key order."""
        stack = [*reversed(self.peers), self.master]
        seen: set[InstanceKey] = set()
        while stack:
            key = stack.pop()
            if key in seen or key not in self.instances:
                continue
            seen.add(key)
            node = self.instances[key]
            yield node
            stack.extend(reversed(node.replicas))


@dataclass(frozen=True, slots=True)
class Topology:
    clusters: Mapping[str, Cluster]
    cluster_of_instance: Mapping[InstanceKey, str]

    def cluster_of(self, key: InstanceKey) -> Cluster | None:
        name = self.cluster_of_instance.get(key)
        return self.clusters[name] if name is not None else None


def _prefer_as_master(snapshots: Iterable[InstanceSnapshot]) -> InstanceSnapshot:
    """Among members of a cycle: the writable one, else the smallest key."""
    ordered = sorted(snapshots, key=lambda snap: snap.instance_key)
    writable = [snap for snap in ordered if not snap.read_only]
    return (writable or ordered)[0]


def build_topology(snapshots: Iterable[InstanceSnapshot]) -> Topology:
    by_key: dict[InstanceKey, InstanceSnapshot] = {snap.instance_key: snap for snap in snapshots}

    def known_master(key: InstanceKey) -> InstanceKey | None:
        master = by_key[key].master_key
        return master if master is not None and master in by_key and master != key else None

    # The top of each instance's chain; cycles broken at their preferred member.
    top: dict[InstanceKey, InstanceKey] = {}
    co_masters: set[InstanceKey] = set()
    cycle_roots: set[InstanceKey] = set()
    for start in sorted(by_key):
        path: list[InstanceKey] = []
        on_path: set[InstanceKey] = set()
        key: InstanceKey | None = start
        while key is not None and key not in top and key not in on_path:
            path.append(key)
            on_path.add(key)
            key = known_master(key)
        if key is None:
            root = path[-1]
        elif key in top:
            root = top[key]
        else:  # a cycle: key is on the current path
            cycle = path[path.index(key) :]
            root = _prefer_as_master(by_key[member] for member in cycle).instance_key
            cycle_roots.add(root)
            if len(cycle) == 2:
                co_masters.update(cycle)
        for member in path:
            top[member] = root

    # Parent links inside the tree: the master, except for a cycle root (its master is below).
    parent: dict[InstanceKey, InstanceKey | None] = {
        key: (None if key in cycle_roots else known_master(key)) for key in by_key
    }
    children: dict[InstanceKey, list[InstanceKey]] = {key: [] for key in by_key}
    for key, master in parent.items():
        if master is not None:
            children[master].append(key)

    clusters: dict[str, Cluster] = {}
    cluster_of_instance: dict[InstanceKey, str] = {}
    for roots in _join_galera_trees(by_key, top):
        master, peers = roots[0], tuple(roots[1:])
        name = str(master)
        members: dict[InstanceKey, TopologyInstance] = {}
        stack: list[tuple[InstanceKey, int]] = [(root, 0) for root in roots]
        while stack:
            key, depth = stack.pop()
            if key in members:
                continue
            replicas = tuple(sorted(children[key]))
            members[key] = TopologyInstance(
                snapshot=by_key[key],
                depth=depth,
                cluster_name=name,
                replicas=replicas,
                is_co_master=key in co_masters,
            )
            cluster_of_instance[key] = name
            stack.extend((replica, depth + 1) for replica in replicas)
        clusters[name] = Cluster(name=name, alias="", master=master, instances=members, peers=peers)
    _set_aliases(clusters)
    return Topology(clusters=clusters, cluster_of_instance=cluster_of_instance)


def _join_galera_trees(
    by_key: Mapping[InstanceKey, InstanceSnapshot], top: Mapping[InstanceKey, InstanceKey]
) -> list[list[InstanceKey]]:
    """The tops of the replication trees, grouped into clusters: trees holding nodes of one
    Galera cluster go together. Each group lists its master first (an outside master, one that
    is no Galera node, before Galera nodes; then the smallest key), then its peers in key order;
    the groups come in the order of their masters."""
    joined = {root: root for root in top.values()}

    def find(root: InstanceKey) -> InstanceKey:
        while joined[root] != root:
            joined[root] = joined[joined[root]]
            root = joined[root]
        return root

    tree_of_galera: dict[str, InstanceKey] = {}
    for key in sorted(by_key):
        uuid = by_key[key].galera_cluster_uuid
        if uuid:
            joined[find(top[key])] = find(tree_of_galera.setdefault(uuid, top[key]))
    groups: dict[InstanceKey, list[InstanceKey]] = {}
    for root in sorted(joined):
        groups.setdefault(find(root), []).append(root)
    ordered = []
    for roots in groups.values():
        master = min(roots, key=lambda root: (bool(by_key[root].galera_cluster_uuid), root))
        ordered.append([master, *(root for root in roots if root != master)])
    return sorted(ordered)


def _wsrep_name(cluster: Cluster) -> str:
    """The ``wsrep_cluster_name`` of the cluster's Galera nodes, the smallest node's ("" without
    one). One pass, no sort: every topology build asks it of every cluster."""
    named = [
        (key, node.snapshot.galera.cluster_name)
        for key, node in cluster.instances.items()
        if node.snapshot.galera is not None and node.snapshot.galera.cluster_name
    ]
    return min(named)[1] if named else ""


def _set_aliases(clusters: dict[str, Cluster]) -> None:
    """Give each cluster its alias by the module docstring's rules (a wsrep cluster name only
    where no other cluster has the same one)."""
    wsrep_names = {name: _wsrep_name(cluster) for name, cluster in clusters.items()}
    shared = Counter(wsrep_names.values())
    for name, cluster in clusters.items():
        wsrep = wsrep_names[name] if shared[wsrep_names[name]] == 1 else ""
        alias = cluster.instances[cluster.master].snapshot.suggested_cluster_alias or next(
            (
                node.snapshot.suggested_cluster_alias
                for _, node in sorted(cluster.instances.items())
                if node.snapshot.suggested_cluster_alias
            ),
            wsrep or name,
        )
        clusters[name] = replace(cluster, alias=alias)


def _shape(snapshot: InstanceSnapshot) -> tuple[InstanceKey | None, bool, str, str, str]:
    """What of a snapshot decides where it and others sit: its master link, whether it is
    writable (which member of a cycle is the master), the cluster alias it suggests, and the
    Galera cluster it belongs to and that cluster's name (an alias)."""
    wsrep_name = snapshot.galera.cluster_name if snapshot.galera is not None else ""
    return (
        snapshot.master_key,
        snapshot.read_only,
        snapshot.suggested_cluster_alias,
        snapshot.galera_cluster_uuid,
        wsrep_name,
    )


def update_topology(
    previous: Topology,
    snapshots: Mapping[InstanceKey, InstanceSnapshot],
    changed: Iterable[InstanceKey],
) -> Topology:
    """The topology of ``snapshots``, which differ from those ``previous`` was built from
    only at the ``changed`` keys; equal to ``build_topology(snapshots.values())``.

    When every changed instance was already placed and keeps its shape (master link, writability,
    suggested alias, Galera cluster and its name), nothing moves: only the changed nodes and the
    clusters holding them are replaced, and every other cluster object is reused as is (a store
    ingesting a fleet's polls pays for what changed, not for the whole fleet). Otherwise it
    builds from scratch.
    """
    placed = previous.cluster_of_instance
    keys = set(changed)
    if len(snapshots) != len(placed):
        return build_topology(snapshots.values())
    old_nodes: dict[InstanceKey, TopologyInstance] = {}
    for key in keys:
        name = placed.get(key)
        if name is None:
            return build_topology(snapshots.values())
        node = previous.clusters[name].instances[key]
        if _shape(node.snapshot) != _shape(snapshots[key]):
            return build_topology(snapshots.values())
        old_nodes[key] = node
    clusters = dict(previous.clusters)
    touched: dict[str, dict[InstanceKey, TopologyInstance]] = {}
    for key, node in old_nodes.items():
        name = node.cluster_name
        members = touched.get(name)
        if members is None:
            members = touched[name] = dict(clusters[name].instances)
        members[key] = TopologyInstance(
            snapshot=snapshots[key],
            depth=node.depth,
            cluster_name=name,
            replicas=node.replicas,
            is_co_master=node.is_co_master,
        )
    for name, members in touched.items():
        cluster = clusters[name]
        clusters[name] = replace(cluster, instances=members)
    return Topology(clusters=clusters, cluster_of_instance=placed)


# --- orchestrator's text rendering ---------------------------------------------------------


def instance_status(node: TopologyInstance, *, now: datetime, poll_seconds: float) -> str:
    """orchestrator's ``StatusString``: invalid / unchecked / nonreplicating / lag / ok."""
    snap = node.snapshot
    if not snap.probe.ok:
        return "invalid"
    if (now - snap.probe.checked_at).total_seconds() > 5 * poll_seconds:
        return "unchecked"
    channel = snap.primary_channel
    if channel is not None and node.depth > 0 and not channel.is_replicating:
        return "nonreplicating"
    lag = snap.replication_lag_seconds
    if lag is not None and channel is not None and lag - channel.sql_delay > 10:
        return "lag"
    return "ok"


def _lag_text(snap: InstanceSnapshot, depth: int) -> str:
    if depth == 0 or not snap.channels:
        return "0s"
    lag = snap.replication_lag_seconds
    return "null" if lag is None else f"{lag}s"


def _extras(node: TopologyInstance, *, errant: bool = False) -> list[str]:
    snap = node.snapshot
    extras: list[str] = []
    if snap.log_bin and snap.log_slave_updates:
        extras.append(">>")
    channel = snap.primary_channel
    if channel is not None and channel.uses_gtid:
        extras.append("GTID:errant" if errant else "GTID")
    if snap.semi_sync.master_enabled and snap.semi_sync.master_status:
        extras.append("semi:master")
    if snap.semi_sync.replica_enabled and snap.semi_sync.replica_status:
        extras.append("semi:replica")
    if snap.galera is not None:
        extras.extend(_galera_marks(snap.galera))
    return extras


def _galera_marks(galera: GaleraState) -> list[str]:
    """A Galera node's mark: its local state in the server's words (``galera:Synced``,
    ``galera:Donor/Desynced``...), and its component's status when not ``Primary``
    (``galera:non-Primary``, ``galera:Disconnected``)."""
    marks = [f"galera:{galera.local_state or 'unknown'}"]
    if not galera.is_primary:
        marks.append(f"galera:{galera.cluster_status or 'unknown'}")
    return marks


def render_topology(
    cluster: Cluster,
    *,
    now: datetime,
    poll_seconds: float,
    tabulated: bool = False,
    errant: Collection[InstanceKey] = (),
) -> str:
    """The cluster as orchestrator's ``topology`` (or ``topology-tabulated``) text; the
    instances in ``errant`` (with errant GTIDs) are flagged ``GTID:errant``, Galera nodes
    ``galera:<state>`` (their last known one when they do not answer)."""
    rows: list[tuple[str, list[str]]] = []
    for node in cluster.walk():
        snap = node.snapshot
        prefix = ""
        if node.depth > 0:
            channel = snap.primary_channel
            healthy = (
                snap.probe.ok
                and channel is not None
                and channel.io_thread is ThreadState.RUNNING
                and channel.sql_thread is ThreadState.RUNNING
            )
            prefix = "  " * (node.depth - 1) + ("+ " if healthy else "- ")
        columns = [
            _lag_text(snap, node.depth),
            instance_status(node, now=now, poll_seconds=poll_seconds),
            snap.version or "unknown",
            "ro" if snap.read_only else "rw",
            snap.binlog_format or "unknown",
            ",".join(_extras(node, errant=node.key in errant)),
        ]
        rows.append((prefix + str(node.key), columns))
    width = max((len(name) for name, _ in rows), default=0)
    lines: list[str] = []
    if tabulated:
        widths = [max(len(cols[i]) for _, cols in rows) for i in range(6)] if rows else []
        for name, cols in rows:
            padded = [col.ljust(widths[i]) if i == 5 else col for i, col in enumerate(cols)]
            lines.append(name.ljust(width) + "|" + "|".join(padded))
    else:
        for name, cols in rows:
            extras = list(cols[:5]) + ([cols[5]] if cols[5] else [])
            lines.append(f"{name.ljust(width)} [{','.join(extras)}]")
    return "\n".join(lines)
