"""``plan_master_recovery``: choose the replica that replaces a dead master, or refuse.

The choice, in order (``docs/recovery-planning.md`` has the operator's version):

0. A Galera node is never replaced by one of its async replicas, forced or not
   (:mod:`~orchestrator_shared.recovery.galera`).
1. Gate: an automated recovery needs the cluster to match ``RecoverMasterClusterFilters``;
   a forced (manual) one ignores the filters.
2. Eligibility: each replica is checked against every rule; all reasons it fails are kept.
3. No data loss: the successor must have every transaction that any other reachable replica
   has or has received (errant GTIDs aside: they are not the cluster's data). When no eligible
   replica does, planning refuses and names what would be lost.
4. Among the replicas left (their positions are then equal), the best promotion rule, then the
   failed master's data center, then the smallest key.
5. The others are repointed under the successor with GTID when it has everything they have;
   the rest are lost, each with its reason. Of those repointed, the ones delayed or lagging
   beyond ``PostponeReplicaRecoveryOnLagMinutes`` are *postponed*: moved after the recovery.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from orchestrator_shared.filters import cluster_matches_filters
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.facts import RULE_RANK, ServerFacts, compare_has_all
from orchestrator_shared.recovery.galera import galera_refusal
from orchestrator_shared.recovery.model import (
    GtidKind,
    MasterPlan,
    PlanOptions,
    Refusal,
    RefusalCode,
    frozen_reasons,
    refuser,
    shown_cluster,
)
from orchestrator_shared.recovery.positions import gtid_kind_of
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["plan_master_recovery"]

_NO_CANDIDATES: Mapping[InstanceKey, PromotionRule] = MappingProxyType({})


class _Rule(enum.Enum):
    """Which rule turned a replica down (to word the refusal; the text goes in ``rejected``)."""

    UNREACHABLE = enum.auto()
    NOT_A_REPLICA = enum.auto()
    NO_GTID = enum.auto()
    UNKNOWN_POSITION = enum.auto()
    FLAVOR = enum.auto()
    DELAYED = enum.auto()
    ERRANT = enum.auto()
    NO_LOG_BIN = enum.auto()
    NO_LOG_SLAVE_UPDATES = enum.auto()
    MUST_NOT = enum.auto()
    PROMOTION_IGNORED = enum.auto()
    VERSION = enum.auto()
    LAG = enum.auto()
    DATA_CENTER = enum.auto()
    REGION = enum.auto()


@dataclass(slots=True)
class _Verdict:
    facts: ServerFacts
    rules: list[tuple[_Rule, str]] = field(default_factory=list)

    @property
    def is_eligible(self) -> bool:
        return not self.rules

    def reason(self) -> str:
        return "; ".join(text for _, text in self.rules)


def plan_master_recovery(
    failed: InstanceSnapshot,
    replicas: Sequence[InstanceSnapshot],
    *,
    cluster: str,
    cluster_alias: str = "",
    candidates: Mapping[InstanceKey, PromotionRule] = _NO_CANDIDATES,
    options: PlanOptions,
    requested: InstanceKey | None = None,
    forced: bool = False,
) -> MasterPlan | Refusal:
    """A plan to replace the dead master ``failed`` by one of its direct ``replicas``, or a
    refusal saying why not.

    ``replicas`` are the failed master's direct replicas as last seen (the worker reads them
    directly before planning). ``candidates`` holds the registered promotion rules
    (``register-candidate``); they override what a snapshot detected. ``requested`` is the
    operator's choice (``recover -d``): promoted only if eligible and complete, else refused.
    ``forced`` (a manual recovery) ignores the cluster filters, nothing else; a Galera node
    is refused even then.
    """
    failed_key = failed.instance_key

    refuse = refuser(cluster, failed_key, forced=forced)

    galera = galera_refusal(failed)
    if galera:
        return refuse(RefusalCode.GALERA_NODE, galera, {})

    if not forced and not cluster_matches_filters(
        options.recover_master_cluster_filters, cluster=cluster, alias=cluster_alias
    ):
        shown = shown_cluster(cluster, cluster_alias)
        return refuse(
            RefusalCode.FILTERED,
            f"cluster {shown} does not match RecoverMasterClusterFilters, so automated master "
            "recovery is off for it (a manual recovery ignores the filters)",
            {},
        )

    by_key: dict[InstanceKey, InstanceSnapshot] = {}
    for snapshot in replicas:
        if snapshot.instance_key != failed_key:
            by_key.setdefault(snapshot.instance_key, snapshot)
    if not by_key:
        return refuse(RefusalCode.NO_REPLICAS, f"{failed_key} has no replicas to promote", {})

    peers = list(by_key.values())
    facts = [
        ServerFacts.of(by_key[key], master=failed, peers=peers, candidates=candidates)
        for key in sorted(by_key)
    ]
    verdicts = _judge(facts, failed=failed, options=options)
    surviving = [item for item in facts if item.is_reachable and item.channel is not None]
    rejected: dict[InstanceKey, str] = {
        key: verdict.reason() for key, verdict in verdicts.items() if not verdict.is_eligible
    }

    chosen = (
        _choose_requested(requested, verdicts, surviving, rejected, failed_key=failed_key)
        if requested is not None
        else _choose_best(verdicts, surviving, rejected, failed=failed)
    )
    if isinstance(chosen, _Refused):
        return refuse(chosen.code, chosen.reason, rejected)
    successor = chosen

    repoint, lost = _followers(successor, facts, verdicts)
    postponed = _postponed(successor, [item for item in facts if item.key in repoint], options)
    repoint = [key for key in repoint if key not in postponed]
    for item in facts:  # every replica not chosen has a reason
        if item.key != successor.key and item.key not in rejected:
            rejected[item.key] = lost.get(item.key, "not chosen")
    kind = successor.gtid_kind or gtid_kind_of(failed) or GtidKind.MARIADB
    eventual = successor.positions.eventual
    must_catch_up = successor.must_catch_up
    read = successor.read_coordinates
    return MasterPlan(
        cluster=cluster,
        failed=failed_key,
        successor=successor.key,
        repoint=tuple(repoint),
        lost=frozen_reasons(lost),
        rejected=frozen_reasons(rejected),
        postponed=frozen_reasons(postponed),
        semi_sync_master=failed.semi_sync.master_enabled,
        successor_must_catch_up=must_catch_up,
        catch_up_gtid=str(eventual) if must_catch_up and eventual is not None else "",
        catch_up_coordinates=str(read) if read is not None else "",
        successor_gtid_position=str(eventual) if eventual is not None else "",
        gtid_kind=kind,
        flavor=successor.snapshot.flavor,
        requested=requested,
        forced=forced,
        failed_hung=not failed.probe.ok and failed.probe.timed_out,
    )


@dataclass(frozen=True, slots=True)
class _Refused:
    code: RefusalCode
    reason: str


def _choose_requested(
    requested: InstanceKey,
    verdicts: Mapping[InstanceKey, _Verdict],
    surviving: Sequence[ServerFacts],
    rejected: dict[InstanceKey, str],
    *,
    failed_key: InstanceKey,
) -> ServerFacts | _Refused:
    """The requested replica if it is eligible and complete; adds the others' reasons."""
    verdict = verdicts.get(requested)
    if verdict is None:
        return _Refused(
            RefusalCode.REQUESTED_NOT_REPLICA,
            f"requested successor {requested} is not a direct replica of {failed_key}",
        )
    if not verdict.is_eligible:
        return _Refused(
            RefusalCode.REQUESTED_REJECTED,
            f"requested successor {requested} cannot be promoted: {verdict.reason()}",
        )
    missing = _what_it_lacks(verdict.facts, surviving)
    if missing:
        return _Refused(
            RefusalCode.REQUESTED_REJECTED,
            f"requested successor {requested} {missing}, which promoting it would lose",
        )
    for key, other in verdicts.items():
        if key != requested and other.is_eligible:
            rejected[key] = f"eligible, but {requested} was requested"
    return verdict.facts


def _choose_best(
    verdicts: Mapping[InstanceKey, _Verdict],
    surviving: Sequence[ServerFacts],
    rejected: dict[InstanceKey, str],
    *,
    failed: InstanceSnapshot,
) -> ServerFacts | _Refused:
    """The best complete eligible replica; adds the reasons of the eligible ones not chosen."""
    eligible = [verdict.facts for verdict in verdicts.values() if verdict.is_eligible]
    if not eligible:
        return _Refused(RefusalCode.NO_CANDIDATE, _no_candidate_sentence(failed, verdicts))
    lacking = {item.key: _what_it_lacks(item, surviving) for item in eligible}
    complete = [item for item in eligible if not lacking[item.key]]
    if not complete:
        for item in eligible:
            rejected[item.key] = f"eligible, but it {lacking[item.key]}"
        details = "; ".join(f"{item.key} {lacking[item.key]}" for item in eligible)
        return _Refused(
            RefusalCode.DATA_LOSS,
            f"no eligible replica of {failed.instance_key} has every transaction the other "
            f"replicas have, so promoting any of them would lose data ({details})",
        )
    ranked = sorted(complete, key=lambda item: _rank(item, failed))
    successor = ranked[0]
    for item in ranked[1:]:
        rejected[item.key] = (
            f"eligible and has every transaction, but {successor.key} ranks first "
            f"({_why_first(successor, item, failed)})"
        )
    for item in eligible:
        if lacking[item.key]:
            # What it lacks compared with the successor, which has everything.
            versus_successor = _what_it_lacks(item, [successor])
            rejected[item.key] = f"eligible, but it {versus_successor or lacking[item.key]}"
    return successor


def _judge(
    facts: Sequence[ServerFacts], *, failed: InstanceSnapshot, options: PlanOptions
) -> dict[InstanceKey, _Verdict]:
    """Every rule against every replica; a replica is eligible when it breaks none."""
    failed_key = failed.instance_key
    failed_kind = gtid_kind_of(failed)
    lag_limit = options.lag_limit_seconds
    verdicts = {item.key: _Verdict(item) for item in facts}
    for item in facts:
        rules = verdicts[item.key].rules
        snapshot = item.snapshot
        if not item.is_reachable:
            rules.append((_Rule.UNREACHABLE, item.unreachable_reason))
        if item.channel is None:
            rules.append((_Rule.NOT_A_REPLICA, f"does not replicate from {failed_key}"))
        elif not item.uses_gtid:
            rules.append(
                (
                    _Rule.NO_GTID,
                    "does not replicate with GTID (Using_Gtid=No, no MASTER_AUTO_POSITION), "
                    "and binlog file:pos is not guessed",
                )
            )
        if item.positions.eventual is None:
            rules.append((_Rule.UNKNOWN_POSITION, "its GTID position is unknown"))
        if failed_kind is not None and item.gtid_kind not in (None, failed_kind):
            rules.append(
                (_Rule.FLAVOR, f"runs {item.gtid_kind} GTID, the failed master {failed_kind}")
            )
        if item.sql_delay > 0:
            rules.append((_Rule.DELAYED, f"is a delayed replica (SQL_Delay={item.sql_delay}s)"))
        if item.errant is not None:
            rules.append((_Rule.ERRANT, f"has errant GTIDs {item.errant.gtids}"))
        if not snapshot.log_bin:
            rules.append((_Rule.NO_LOG_BIN, "has no binary log (log_bin=OFF)"))
        elif not snapshot.log_slave_updates:
            rules.append(
                (
                    _Rule.NO_LOG_SLAVE_UPDATES,
                    "does not log replicated transactions (log_slave_updates=OFF)",
                )
            )
        if item.rule is PromotionRule.MUST_NOT:
            rules.append((_Rule.MUST_NOT, f"promotion rule must_not ({item.rule_source})"))
        ignored = options.promotion_ignored(item.key)
        if ignored:
            rules.append((_Rule.PROMOTION_IGNORED, ignored))
        older = _older_replica(item, facts)
        if older is not None:
            rules.append(
                (
                    _Rule.VERSION,
                    f"runs {item.major_text}, newer than {older.major_text} on {older.key} "
                    "(a newer master cannot replicate to older replicas)",
                )
            )
        lag = item.lag_seconds
        if lag_limit is not None and lag is not None and lag >= lag_limit:
            rules.append(
                (
                    _Rule.LAG,
                    f"lags {lag}s, at or beyond FailMasterPromotionOnLagMinutes ({lag_limit:g}s)",
                )
            )
        if options.prevent_cross_data_center and snapshot.data_center != failed.data_center:
            rules.append(
                (
                    _Rule.DATA_CENTER,
                    f"is in data center {snapshot.data_center or '(none)'!r}, not the failed "
                    f"master's {failed.data_center or '(none)'!r} "
                    "(PreventCrossDataCenterMasterFailover)",
                )
            )
        if options.prevent_cross_region and snapshot.region != failed.region:
            rules.append(
                (
                    _Rule.REGION,
                    f"is in region {snapshot.region or '(none)'!r}, not the failed master's "
                    f"{failed.region or '(none)'!r} (PreventCrossRegionMasterFailover)",
                )
            )
    return verdicts


def _older_replica(item: ServerFacts, facts: Sequence[ServerFacts]) -> ServerFacts | None:
    """The replica that would follow a successor (reachable, replicating with GTID) with the
    oldest major version below ``item``'s, if any."""
    mine = item.major
    if mine is None:
        return None
    older = [
        other
        for other in facts
        if other.key != item.key
        and other.is_reachable
        and other.uses_gtid
        and other.major is not None
        and other.major < mine
    ]
    return min(older, key=lambda other: (other.major, other.key)) if older else None


def _what_it_lacks(item: ServerFacts, surviving: Sequence[ServerFacts]) -> str:
    """'' when ``item`` has every transaction of every other surviving replica; else, in
    words, what it lacks (or cannot be shown to have)."""
    problems: list[str] = []
    for other in surviving:
        if other.key == item.key:
            continue
        verdict, lacking = compare_has_all(
            item,
            other,
            holder_position=item.positions.eventual,
            other_position=other.legitimate,
        )
        if verdict is None:
            problems.append(f"cannot be compared with {other.key} (no common GTID or coordinates)")
        elif not verdict:
            problems.append(f"lacks {lacking} that {other.key} has")
    return "; ".join(problems)


def _rank(item: ServerFacts, failed: InstanceSnapshot) -> tuple[int, int, InstanceKey]:
    return (RULE_RANK[item.rule], 0 if _same_dc(item, failed) else 1, item.key)


def _same_dc(item: ServerFacts, failed: InstanceSnapshot) -> bool:
    return bool(failed.data_center) and item.snapshot.data_center == failed.data_center


def _why_first(winner: ServerFacts, loser: ServerFacts, failed: InstanceSnapshot) -> str:
    if winner.rule is not loser.rule:
        return f"promotion rule {winner.rule} over {loser.rule}"
    if _same_dc(winner, failed) != _same_dc(loser, failed):
        return f"in the failed master's data center {failed.data_center!r}"
    return "same rule and data center; the smaller key wins"


def _no_candidate_sentence(
    failed: InstanceSnapshot, verdicts: Mapping[InstanceKey, _Verdict]
) -> str:
    failed_key = failed.instance_key
    reachable = [v for v in verdicts.values() if _Rule.UNREACHABLE not in _rules_of(v)]
    if not reachable:
        return f"no replica of {failed_key} is reachable"
    if all(_Rule.NO_GTID in _rules_of(v) for v in reachable):
        return (
            f"no reachable replica of {failed_key} replicates with GTID; refusing rather than "
            "guessing binlog file:pos"
        )
    geo = {_Rule.DATA_CENTER, _Rule.REGION}
    if any(_rules_of(v) and _rules_of(v) <= geo for v in reachable):
        where = []
        if any(_Rule.DATA_CENTER in _rules_of(v) for v in reachable):
            where.append(f"data center {failed.data_center or '(none)'!r}")
        if any(_Rule.REGION in _rules_of(v) for v in reachable):
            where.append(f"region {failed.region or '(none)'!r}")
        return (
            f"no replica of {failed_key} in its {' and '.join(where)} can be promoted, and "
            "cross-site failover is prevented (PreventCrossDataCenterMasterFailover / "
            "PreventCrossRegionMasterFailover)"
        )
    summary = "; ".join(f"{v.facts.key} {v.rules[0][1]}" for v in verdicts.values())
    return f"no replica of {failed_key} can be promoted ({summary})"


def _rules_of(verdict: _Verdict) -> set[_Rule]:
    return {rule for rule, _ in verdict.rules}


def _followers(
    successor: ServerFacts,
    facts: Sequence[ServerFacts],
    verdicts: Mapping[InstanceKey, _Verdict],
) -> tuple[list[InstanceKey], dict[InstanceKey, str]]:
    """Which other replicas can move under the successor with GTID, and why the rest cannot."""
    repoint: list[InstanceKey] = []
    lost: dict[InstanceKey, str] = {}
    for item in facts:
        if item.key == successor.key:
            continue
        reason = _cannot_follow(successor, item, verdicts[item.key])
        if reason:
            lost[item.key] = reason
        else:
            repoint.append(item.key)
    return repoint, lost


def _cannot_follow(successor: ServerFacts, item: ServerFacts, verdict: _Verdict) -> str:
    rules = _rules_of(verdict)
    if _Rule.UNREACHABLE in rules:
        reason = f"{item.unreachable_reason}: cannot be repointed now"
        verdict_last, lacking = compare_has_all(
            successor,
            item,
            holder_position=successor.positions.eventual,
            other_position=item.legitimate,
        )
        if verdict_last is False:
            reason += f"; when last seen it had {lacking}, which {successor.key} lacks"
        return reason
    if _Rule.NOT_A_REPLICA in rules:
        return f"does not replicate from the failed master ({verdict.reason()})"
    if _Rule.NO_GTID in rules:
        return (
            "does not replicate with GTID; moving it would need binlog file:pos, which is not "
            "guessed"
        )
    if item.errant is not None:
        return (
            f"has errant GTIDs {item.errant.gtids} that {successor.key} lacks; under it the "
            "replica would diverge"
        )
    if item.gtid_kind is not None and successor.gtid_kind not in (None, item.gtid_kind):
        return f"runs {item.gtid_kind} GTID, the successor {successor.gtid_kind}"
    mine, theirs = item.major, successor.major
    if mine is not None and theirs is not None and theirs > mine:
        return f"runs {item.major_text}, older than {successor.major_text} on {successor.key}"
    verdict_all, lacking = compare_has_all(
        successor,
        item,
        holder_position=successor.positions.eventual,
        other_position=item.positions.eventual,
    )
    if verdict_all is None:
        return f"cannot be compared with {successor.key} (no common GTID or coordinates)"
    if not verdict_all:
        return f"has {lacking} that {successor.key} lacks"
    return ""


def _postponed(
    successor: ServerFacts, followers: Sequence[ServerFacts], options: PlanOptions
) -> dict[InstanceKey, str]:
    """The followers delayed or lagging beyond ``PostponeReplicaRecoveryOnLagMinutes``, each
    with why: they are moved under the successor after the recovery, not during it."""
    limit = options.postpone_limit_seconds
    if limit is None:
        return {}
    postponed: dict[InstanceKey, str] = {}
    for item in followers:
        lag = item.lag_seconds
        if item.sql_delay > limit:
            why = f"is delayed (SQL_Delay={item.sql_delay}s)"
        elif lag is not None and lag > limit:
            why = f"lags {lag}s"
        else:
            continue
        postponed[item.key] = (
            f"{why}, beyond PostponeReplicaRecoveryOnLagMinutes ({limit:g}s): moved under "
            f"{successor.key} after the recovery"
        )
    return postponed
