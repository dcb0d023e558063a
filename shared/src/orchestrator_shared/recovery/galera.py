"""Galera and recovery: a failed Galera node's async replicas move to another node, never up.

Every node of a Galera cluster is writable and replicates to the others synchronously. When
one dies or leaves the primary component, the others go on taking writes: its cluster is not
dead, only one of its writers is gone. Promoting one of its async replicas would make a second,
independent writer of the same data (a split brain). So no path to a promotion accepts a Galera
node as the master to replace (:func:`galera_refusal`); what its async replicas need is a new
source inside the same Galera cluster, which :func:`plan_galera_relocation` chooses.

The targets are the failed node's *peers*: the other nodes of its Galera cluster (the same
``wsrep_cluster_state_uuid``). A peer can take replicas when it is reachable, in the primary
component, ``Synced`` and ready, logs what the cluster replicates to it (``log_bin`` and
``log_slave_updates``: else its binary log lacks the other nodes' writes), is not ``must_not``
(nor matched by ``PromotionIgnoreHostnameFilters``) and its GTID position is known. Peers rank by
promotion rule, then the failed node's data center, then key. A replica moves under the first
peer whose binary log already holds every transaction the replica has or has received (the
rules of the intermediate master's relocation: same GTID implementation, no newer major
version); one that no peer can take is lost, with each peer's reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from orchestrator_shared.analysis.errant import find_errant
from orchestrator_shared.filters import cluster_matches_filters
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.facts import RULE_RANK, ServerFacts, has_gtid_state
from orchestrator_shared.recovery.intermediate import (
    assign_moves,
    relocation_plan,
    unique_snapshots,
)
from orchestrator_shared.recovery.model import (
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
    refuser,
    shown_cluster,
)
from orchestrator_shared.snapshot import GaleraState, InstanceSnapshot

__all__ = ["galera_peers", "galera_refusal", "is_failed_galera_node", "plan_galera_relocation"]

_NO_CANDIDATES: Mapping[InstanceKey, PromotionRule] = MappingProxyType({})


def _named(galera: GaleraState) -> str:
    return f"Galera cluster {galera.cluster_name}" if galera.cluster_name else "a Galera cluster"


def galera_refusal(master: InstanceSnapshot) -> str:
    """Why no replica of ``master`` may replace it (empty: ``master`` is no Galera node).

    The snapshot of a dead master is the last one seen alive (a failed probe keeps the facts),
    so its Galera state is known when it dies."""
    galera = master.galera
    if galera is None:
        return ""
    return (
        f"{master.instance_key} is a node of {_named(galera)}: the other nodes stay writable, "
        "so its async replicas are relocated under another node of its Galera cluster, never "
        "promoted (a promoted replica would be a second writer: split brain)"
    )


def is_failed_galera_node(snapshot: InstanceSnapshot) -> bool:
    """Whether ``snapshot`` is a Galera node its async replicas should leave: unreachable, or
    answering outside the primary component (where it serves no queries)."""
    galera = snapshot.galera
    return galera is not None and (not snapshot.probe.ok or not galera.is_primary)


def galera_peers(
    node: InstanceSnapshot, snapshots: Mapping[InstanceKey, InstanceSnapshot]
) -> list[InstanceSnapshot]:
    """The other nodes of ``node``'s Galera cluster among ``snapshots`` (same state uuid), in
    key order; none for a server that is no Galera node."""
    uuid = node.galera_cluster_uuid
    if not uuid:
        return []
    return [
        snap
        for key, snap in sorted(snapshots.items())
        if key != node.instance_key and snap.galera_cluster_uuid == uuid
    ]


def plan_galera_relocation(
    failed: InstanceSnapshot,
    replicas: Sequence[InstanceSnapshot],
    *,
    peers: Sequence[InstanceSnapshot],
    cluster: str,
    cluster_alias: str = "",
    candidates: Mapping[InstanceKey, PromotionRule] = _NO_CANDIDATES,
    options: PlanOptions,
    forced: bool = False,
) -> RelocationPlan | Refusal:
    """A plan moving each async replica of the failed Galera node ``failed`` under one of its
    ``peers`` (the other nodes of its Galera cluster), or a refusal.

    An automated recovery needs the cluster to match ``RecoverMasterClusterFilters`` (the
    failure is a master's to the analysis); ``forced`` (a manual recovery) ignores it. A node
    that is reachable and in the primary component has not failed: refused, forced or not."""
    failed_key = failed.instance_key
    refuse = refuser(cluster, failed_key, forced=forced)
    galera = failed.galera
    if galera is None:
        return refuse(RefusalCode.GALERA_NODE, f"{failed_key} is no Galera node", {})
    named = _named(galera)
    if not is_failed_galera_node(failed):
        return refuse(
            RefusalCode.GALERA_NODE,
            f"{failed_key} is a healthy node of {named} (reachable, {galera.cluster_status} "
            "component): its async replicas stay where they are",
            {},
        )
    if not forced and not cluster_matches_filters(
        options.recover_master_cluster_filters, cluster=cluster, alias=cluster_alias
    ):
        return refuse(
            RefusalCode.FILTERED,
            f"cluster {shown_cluster(cluster, cluster_alias)} does not match "
            "RecoverMasterClusterFilters, so the async replicas of its failed Galera nodes are "
            "not relocated automatically (a manual recovery ignores the filters)",
            {},
        )
    replica_snaps = unique_snapshots(replicas, exclude={failed_key})
    if not replica_snaps:
        return refuse(RefusalCode.NO_REPLICAS, f"{failed_key} has no replicas to relocate", {})
    peer_snaps = unique_snapshots(peers, exclude={failed_key, *(s.instance_key for s in replicas)})
    movers = [_mover(snap, failed, peer_snaps, candidates) for snap in replica_snaps]
    rejected: dict[InstanceKey, str] = {}
    targets: list[ServerFacts] = []
    for snap in peer_snaps:
        peer = ServerFacts.of(snap, master=None, candidates=candidates)
        reason = _peer_unfit(peer, options)
        if reason:
            rejected[peer.key] = reason
        else:
            targets.append(peer)
    targets.sort(key=lambda target: _rank(target, failed))

    moves, lost, refusals = assign_moves(
        movers, targets, failed_key=failed_key, targets_are=f"node of {named}"
    )
    used = {target for _, target in moves}
    for target in targets:
        if target.key not in used:
            rejected[target.key] = "; ".join(refusals[target.key]) or "fit, but ranks lower"
    if not moves:
        if not targets:
            summary = "; ".join(f"{key} {why}" for key, why in sorted(rejected.items()))
            reason = f"no other node of {named} can take the async replicas of {failed_key}: " + (
                summary or "none is known"
            )
        else:
            summary = "; ".join(f"{key} {why}" for key, why in sorted(lost.items()))
            reason = f"none of the async replicas of {failed_key} can be relocated ({summary})"
        return refuse(RefusalCode.NOTHING_RELOCATABLE, reason, {**rejected, **lost})
    return relocation_plan(
        failed,
        movers,
        moves,
        lost=lost,
        rejected=rejected,
        cluster=cluster,
        forced=forced,
        galera=True,
    )


def _mover(
    replica: InstanceSnapshot,
    failed: InstanceSnapshot,
    peers: Sequence[InstanceSnapshot],
    candidates: Mapping[InstanceKey, PromotionRule],
) -> ServerFacts:
    """A replica to move, its errant GTIDs judged against every node of the Galera cluster:
    what any node has is the cluster's (all nodes log the same GTIDs, under a server id that
    need not be its master's), and the failed node's last snapshot may be older than the
    replica's."""
    facts = ServerFacts.of(replica, master=failed, candidates=candidates)
    nodes = [node for node in (failed, *peers) if has_gtid_state(node)]
    return dataclasses.replace(facts, errant=find_errant(replica, nodes) if nodes else None)


def _peer_unfit(peer: ServerFacts, options: PlanOptions) -> str:
    snapshot, galera = peer.snapshot, peer.snapshot.galera
    problems: list[str] = []
    if not peer.is_reachable:
        problems.append(peer.unreachable_reason)
    elif galera is not None:
        if not galera.is_primary:
            problems.append(f"is not in the primary component ({galera.cluster_status or '?'})")
        if not galera.is_synced:
            problems.append(f"is not Synced ({galera.local_state or '?'})")
        elif not galera.ready:
            problems.append("is not ready (wsrep_ready=OFF)")
    if not snapshot.log_bin:
        problems.append("has no binary log (log_bin=OFF)")
    elif not snapshot.log_slave_updates:
        problems.append(
            "does not log the other nodes' transactions (log_slave_updates=OFF): its binary "
            "log misses writes made elsewhere"
        )
    if peer.rule is PromotionRule.MUST_NOT:
        problems.append(f"promotion rule must_not ({peer.rule_source})")
    ignored = options.promotion_ignored(peer.key)
    if ignored:
        problems.append(ignored)
    if peer.positions.binlog is None:
        problems.append("its GTID position is unknown")
    return "; ".join(problems)


def _rank(target: ServerFacts, failed: InstanceSnapshot) -> tuple[int, int, InstanceKey]:
    same_dc = bool(failed.data_center) and target.snapshot.data_center == failed.data_center
    return (RULE_RANK[target.rule], 0 if same_dc else 1, target.key)
