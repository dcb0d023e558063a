"""``plan_intermediate_master_recovery``: where the replicas of a dead intermediate master go.

Each replica that replicates with GTID moves under the first *target* that can take it. The
targets are the dead intermediate master's siblings (the other replicas of its master) and its
master itself, ranked (orchestrator's ``GetCandidateSiblingOfIntermediateMaster``, then its
"match up" to the master as the last resort):

1. siblings before the master;
2. the better promotion rule (``must``, ``prefer``, ``neutral``, ``prefer_not``);
3. the dead intermediate master's data center;
4. the smallest key.

A sibling can be a target when it is reachable, replicates from the master (both threads
running), has ``log_bin`` and ``log_slave_updates``, is not delayed, not ``must_not`` (nor
matched by ``PromotionIgnoreHostnameFilters``) and has no errant GTIDs; the master when it is
reachable and has ``log_bin`` (and ``log_slave_updates`` when it is itself a replica). A target
takes a replica when both use the same GTID implementation, the target does not run a newer
major version, and the target's binary log already holds every transaction the replica has or
has received (a replica asking for a GTID its new master has not logged yet would stop with an
error). A replica no target can take is lost, with the reason each target gave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from orchestrator_shared.filters import cluster_matches_filters
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.facts import RULE_RANK, ServerFacts
from orchestrator_shared.recovery.model import (
    GtidKind,
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
    frozen_reasons,
    refuser,
    shown_cluster,
)
from orchestrator_shared.recovery.positions import gtid_kind_of
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = [
    "assign_moves",
    "plan_intermediate_master_recovery",
    "relocation_plan",
    "unique_snapshots",
]

_NO_CANDIDATES: Mapping[InstanceKey, PromotionRule] = MappingProxyType({})


def plan_intermediate_master_recovery(
    failed: InstanceSnapshot,
    replicas: Sequence[InstanceSnapshot],
    *,
    siblings: Sequence[InstanceSnapshot],
    master: InstanceSnapshot | None,
    cluster: str,
    cluster_alias: str = "",
    upstream: Sequence[InstanceSnapshot] = (),
    candidates: Mapping[InstanceKey, PromotionRule] = _NO_CANDIDATES,
    options: PlanOptions,
    forced: bool = False,
) -> RelocationPlan | Refusal:
    """A plan moving each replica of the dead intermediate master ``failed`` under a sibling or
    under ``master`` (the failed instance's master, ``None`` when unknown), or a refusal.

    ``siblings`` are the other replicas of ``master``. ``upstream`` holds the servers above
    ``master`` when it is itself a replica (nested intermediate masters): the GTIDs they wrote
    are never errant. ``forced`` (a manual recovery) ignores
    ``RecoverIntermediateMasterClusterFilters``.
    """
    failed_key = failed.instance_key

    refuse = refuser(cluster, failed_key, forced=forced)

    if not forced and not cluster_matches_filters(
        options.recover_intermediate_master_cluster_filters, cluster=cluster, alias=cluster_alias
    ):
        shown = shown_cluster(cluster, cluster_alias)
        return refuse(
            RefusalCode.FILTERED,
            f"cluster {shown} does not match RecoverIntermediateMasterClusterFilters, so "
            "automated intermediate master recovery is off for it (a manual recovery ignores "
            "the filters)",
            {},
        )

    master_key = master.instance_key if master is not None else failed.master_key
    replica_snaps = unique_snapshots(replicas, exclude={failed_key})
    if not replica_snaps:
        return refuse(RefusalCode.NO_REPLICAS, f"{failed_key} has no replicas to relocate", {})
    above = [master, *upstream] if master is not None else list(upstream)
    movers = [
        ServerFacts.of(
            snap, master=failed, upstream=above, peers=replica_snaps, candidates=candidates
        )
        for snap in replica_snaps
    ]

    excluded = {failed_key, *(item.key for item in movers)}
    if master_key is not None:
        excluded.add(master_key)
    rejected: dict[InstanceKey, str] = {}
    targets: list[ServerFacts] = []
    for snap in unique_snapshots(siblings, exclude=excluded):
        sibling = ServerFacts.of(
            snap, master=master, master_key=master_key, upstream=upstream, candidates=candidates
        )
        reason = _sibling_unfit(sibling, master_key, options)
        if reason:
            rejected[sibling.key] = reason
        else:
            targets.append(sibling)
    master_facts: ServerFacts | None = None
    if master is not None:
        master_facts = ServerFacts.of(master, master=None, candidates=candidates)
        reason = _master_unfit(master_facts)
        if reason:
            rejected[master_facts.key] = reason
        else:
            targets.append(master_facts)
    targets.sort(key=lambda target: _rank(target, failed, master_facts))

    moves, lost, refusals = assign_moves(
        movers, targets, failed_key=failed_key, targets_are="sibling or master"
    )

    used = {target for _, target in moves}
    first_used = next((target.key for target in targets if target.key in used), None)
    for target in targets:
        if target.key in used:
            continue
        if refusals[target.key]:
            rejected[target.key] = "; ".join(refusals[target.key])
        elif first_used is not None:
            rejected[target.key] = f"fit, but {first_used} ranks first"
        else:
            rejected[target.key] = "fit, but no replica could move"

    if not moves:
        summary = "; ".join(f"{key} {reason}" for key, reason in sorted(lost.items()))
        return refuse(
            RefusalCode.NOTHING_RELOCATABLE,
            f"none of the replicas of {failed_key} can be relocated ({summary})",
            {**rejected, **lost},
        )
    return relocation_plan(
        failed, movers, moves, lost=lost, rejected=rejected, cluster=cluster, forced=forced
    )


def relocation_plan(
    failed: InstanceSnapshot,
    movers: Sequence[ServerFacts],
    moves: Sequence[tuple[InstanceKey, InstanceKey]],
    *,
    lost: Mapping[InstanceKey, str],
    rejected: Mapping[InstanceKey, str],
    cluster: str,
    forced: bool,
    galera: bool = False,
) -> RelocationPlan:
    """The plan of ``moves``, its GTID kind the movers' (else the failed instance's)."""
    kind = (
        next((item.gtid_kind for item in movers if item.gtid_kind), None)
        or gtid_kind_of(failed)
        or GtidKind.MARIADB
    )
    return RelocationPlan(
        cluster=cluster,
        failed=failed.instance_key,
        moves=tuple(sorted(moves)),
        lost=frozen_reasons(lost),
        rejected=frozen_reasons(rejected),
        gtid_kind=kind,
        forced=forced,
        galera=galera,
    )


def assign_moves(
    movers: Sequence[ServerFacts],
    targets: Sequence[ServerFacts],
    *,
    failed_key: InstanceKey,
    targets_are: str,
) -> tuple[
    list[tuple[InstanceKey, InstanceKey]], dict[InstanceKey, str], dict[InstanceKey, list[str]]
]:
    """Each mover under the first ranked target that can take it: the moves, the lost
    replicas with why, and per target why it turned replicas down. ``targets_are`` names the
    targets in a lost replica's reason ("no {targets_are} can take it")."""
    moves: list[tuple[InstanceKey, InstanceKey]] = []
    lost: dict[InstanceKey, str] = {}
    refusals: dict[InstanceKey, list[str]] = {target.key: [] for target in targets}
    for item in movers:
        reason = _cannot_move(item, failed_key)
        if reason:
            lost[item.key] = reason
            continue
        why_not: list[str] = []
        for target in targets:
            problem = _cannot_take(target, item)
            if not problem:
                moves.append((item.key, target.key))
                break
            why_not.append(f"{target.key} {problem}")
            refusals[target.key].append(f"cannot take {item.key}: {problem}")
        else:
            lost[item.key] = (
                f"no {targets_are} can take it: " + "; ".join(why_not)
                if why_not
                else f"no {targets_are} can take it (none is fit)"
            )
    return moves, lost, refusals


def unique_snapshots(
    snapshots: Sequence[InstanceSnapshot], *, exclude: set[InstanceKey]
) -> list[InstanceSnapshot]:
    by_key: dict[InstanceKey, InstanceSnapshot] = {}
    for snap in snapshots:
        if snap.instance_key not in exclude:
            by_key.setdefault(snap.instance_key, snap)
    return [by_key[key] for key in sorted(by_key)]


def _sibling_unfit(
    sibling: ServerFacts, master_key: InstanceKey | None, options: PlanOptions
) -> str:
    snapshot = sibling.snapshot
    problems: list[str] = []
    if not sibling.is_reachable:
        problems.append(sibling.unreachable_reason)
    channel = sibling.channel
    if channel is None:
        problems.append(f"does not replicate from the master {master_key or '(unknown)'}")
    elif not channel.is_replicating:
        problems.append(
            f"is not replicating (IO thread {channel.io_running or 'not configured'}, "
            f"SQL thread {channel.sql_running or 'not configured'})"
        )
    if not snapshot.log_bin:
        problems.append("has no binary log (log_bin=OFF)")
    elif not snapshot.log_slave_updates:
        problems.append("does not log replicated transactions (log_slave_updates=OFF)")
    if sibling.sql_delay > 0:
        problems.append(f"is a delayed replica (SQL_Delay={sibling.sql_delay}s)")
    if sibling.rule is PromotionRule.MUST_NOT:
        problems.append(f"promotion rule must_not ({sibling.rule_source})")
    ignored = options.promotion_ignored(sibling.key)
    if ignored:
        problems.append(ignored)
    if sibling.errant is not None:
        problems.append(f"has errant GTIDs {sibling.errant.gtids}")
    if sibling.positions.binlog is None:
        problems.append("its GTID position is unknown")
    return "; ".join(problems)


def _master_unfit(master: ServerFacts) -> str:
    problems: list[str] = []
    if not master.is_reachable:
        problems.append(master.unreachable_reason)
    if not master.snapshot.log_bin:
        problems.append("has no binary log (log_bin=OFF)")
    elif master.snapshot.is_replica and not master.snapshot.log_slave_updates:
        problems.append(
            "is itself a replica that does not log replicated transactions (log_slave_updates=OFF)"
        )
    if master.positions.binlog is None:
        problems.append("its GTID position is unknown")
    return "; ".join(problems)


def _rank(
    target: ServerFacts, failed: InstanceSnapshot, master: ServerFacts | None
) -> tuple[int, int, int, InstanceKey]:
    is_master = master is not None and target.key == master.key
    same_dc = bool(failed.data_center) and target.snapshot.data_center == failed.data_center
    return (int(is_master), RULE_RANK[target.rule], 0 if same_dc else 1, target.key)


def _cannot_move(item: ServerFacts, failed_key: InstanceKey) -> str:
    if not item.is_reachable:
        return f"{item.unreachable_reason}: cannot be moved now"
    if item.channel is None:
        return f"does not replicate from {failed_key}"
    if not item.uses_gtid:
        return (
            "does not replicate with GTID; moving it would need binlog file:pos, which is not "
            "guessed"
        )
    if item.positions.eventual is None:
        return "its GTID position is unknown"
    if item.errant is not None:
        return f"has errant GTIDs {item.errant.gtids}; under another master it would diverge"
    return ""


def _cannot_take(target: ServerFacts, item: ServerFacts) -> str:
    """'' when ``target`` can be the new master of ``item``; else why not."""
    if target.gtid_kind is not None and item.gtid_kind not in (None, target.gtid_kind):
        return f"runs {target.gtid_kind} GTID, the replica {item.gtid_kind}"
    mine, theirs = item.major, target.major
    if mine is not None and theirs is not None and theirs > mine:
        return f"runs {target.major_text}, newer than {item.major_text} on the replica"
    holder, wanted = target.positions.binlog, item.positions.eventual
    if holder is None or wanted is None:
        return "has no GTID position to compare"
    verdict = holder.contains(wanted)
    if verdict is None:
        return "has no comparable GTID position"
    if not verdict:
        return f"lacks {holder.lacks(wanted)} that the replica has"
    return ""
