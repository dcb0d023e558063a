"""The values recovery planning works with: its options, and the three possible answers.

``PlanOptions``     orchestrator's candidate-related settings, as plain values
``MasterPlan``      who replaces a dead master, who follows it, who is lost, and why
``RelocationPlan``  where each replica of a dead intermediate master goes, who is lost, and why
``Refusal``         no plan: one sentence saying why, plus the reason each replica was turned down

Plans and refusals are frozen values. ``rejected`` and ``lost`` are read-only mappings from
instance key to one human sentence, so the audit log, the events and the API can explain every
decision; ``to_dict`` gives their JSON form (keys as ``host:port`` text).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from orchestrator_shared.filters import matching_hostname_filter
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

__all__ = [
    "GtidKind",
    "MasterPlan",
    "PlanOptions",
    "Refusal",
    "RefusalCode",
    "RelocationPlan",
    "frozen_reasons",
]


def frozen_reasons(reasons: Mapping[InstanceKey, str]) -> Mapping[InstanceKey, str]:
    """A read-only copy of ``reasons``, ordered by key (so equal plans print alike)."""
    return MappingProxyType(dict(sorted(reasons.items())))


def _reasons_json(reasons: Mapping[InstanceKey, str]) -> dict[str, str]:
    return {str(key): reason for key, reason in sorted(reasons.items())}


def _keys_text(keys: tuple[InstanceKey, ...] | list[InstanceKey]) -> str:
    return ", ".join(str(key) for key in keys)


class GtidKind(enum.StrEnum):
    """Which GTID implementation a plan relies on (decides the executor's SQL)."""

    MARIADB = "mariadb"
    """``master_use_gtid=slave_pos``; positions compared per domain."""
    MYSQL = "mysql"
    """``MASTER_AUTO_POSITION=1``; GTID sets."""


class RefusalCode(enum.StrEnum):
    """Why there is no plan, for machines (the sentence is in ``Refusal.reason``)."""

    FILTERED = "filtered"
    """The cluster does not match the recovery cluster filters (automated recovery only)."""
    NO_REPLICAS = "no-replicas"
    """The failed instance has no replicas to promote or relocate."""
    NO_CANDIDATE = "no-candidate"
    """Every replica was rejected as a successor."""
    DATA_LOSS = "data-loss"
    """No eligible replica has every transaction the other surviving replicas have."""
    REQUESTED_NOT_REPLICA = "requested-not-replica"
    """The requested successor is not a replica of the failed master."""
    REQUESTED_REJECTED = "requested-rejected"
    """The requested successor is not eligible, or lacks transactions another replica has."""
    NOTHING_RELOCATABLE = "nothing-relocatable"
    """No replica of a dead intermediate master (or of a failed Galera node) can be moved
    anywhere."""
    NO_SEMI_SYNC_CHANGE = "no-semi-sync-change"
    """A semi-sync recovery found no replica whose semi-sync setting it could change."""
    GALERA_NODE = "galera-node"
    """The master is a Galera node: its async replicas are never promoted (the other nodes of
    its Galera cluster stay writable), forced or not; and a healthy Galera node's replicas are
    not relocated."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    """orchestrator's settings that decide candidate choice, as plain values.

    The recovery worker builds this from ``Settings``; planning never reads configuration.
    """

    fail_on_lag_seconds: float | None = None
    """``FailMasterPromotionOnLagMinutes`` * 60: a replica lagging this much or more is not
    promoted. ``None`` or 0 turns the check off."""
    prevent_cross_data_center: bool = False
    """``PreventCrossDataCenterMasterFailover``: only promote in the failed master's data center."""
    prevent_cross_region: bool = False
    """``PreventCrossRegionMasterFailover``: only promote in the failed master's region."""
    recover_master_cluster_filters: tuple[str, ...] = ()
    """``RecoverMasterClusterFilters``: clusters with automated master recovery (empty: none)."""
    recover_intermediate_master_cluster_filters: tuple[str, ...] = ()
    """``RecoverIntermediateMasterClusterFilters``: the same for dead intermediate masters."""
    promotion_ignore_hostname_filters: tuple[str, ...] = ()
    """``PromotionIgnoreHostnameFilters``: a replica whose host name matches one of these
    regular expressions is never promoted (as ``must_not``)."""
    postpone_lag_seconds: float | None = None
    """``PostponeReplicaRecoveryOnLagMinutes`` * 60: a follower whose ``SQL_Delay`` or lag is
    beyond this is moved under the successor after the recovery (``MasterPlan.postponed``).
    ``None`` or 0 turns it off."""

    @property
    def lag_limit_seconds(self) -> float | None:
        """The lag limit in force, or ``None`` when the check is off."""
        limit = self.fail_on_lag_seconds
        return limit if limit is not None and limit > 0 else None

    @property
    def postpone_limit_seconds(self) -> float | None:
        """The postponing limit in force, or ``None`` when nothing is postponed."""
        limit = self.postpone_lag_seconds
        return limit if limit is not None and limit > 0 else None

    def promotion_ignored(self, key: InstanceKey) -> str:
        """Why ``PromotionIgnoreHostnameFilters`` keeps ``key`` from ever being promoted, or
        ''."""
        pattern = matching_hostname_filter(self.promotion_ignore_hostname_filters, key.host)
        if pattern is None:
            return ""
        return f"host name matches PromotionIgnoreHostnameFilters ({pattern!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterPlan:
    """Promote ``successor`` in place of the dead master ``failed``.

    The executor stops replication everywhere, waits (bounded) for the successor to apply its
    relay log when ``successor_must_catch_up`` (to ``catch_up_gtid`` when known, else to
    ``catch_up_coordinates`` of the failed master's binlog), promotes it, then moves every key
    of ``repoint`` under it with GTID (``gtid_kind``). ``postponed`` replicas can follow it too
    but are delayed or lagging beyond ``PostponeReplicaRecoveryOnLagMinutes``: their IO thread
    is stopped with the others', and they are moved once the recovery completed, in the
    background. ``lost`` replicas cannot follow it safely: detach and downtime them. Every
    replica other than the successor has a reason in ``rejected``.
    """

    cluster: str
    failed: InstanceKey
    successor: InstanceKey
    repoint: tuple[InstanceKey, ...]
    lost: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    rejected: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    postponed: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    """Followers moved after the recovery, each with why (its delay or lag)."""
    semi_sync_master: bool = False
    """Enable semi-sync master on the successor: the failed master had it enabled."""
    successor_must_catch_up: bool = False
    """The successor has received transactions it has not applied yet (relay log)."""
    catch_up_gtid: str = ""
    """The GTID position (MariaDB) or set (MySQL) to wait for when it must catch up."""
    catch_up_coordinates: str = ""
    """The failed master's ``file:pos`` the successor has read up to, when known."""
    successor_gtid_position: str = ""
    """Everything the successor has or will have once caught up, in its server's notation."""
    gtid_kind: GtidKind
    flavor: Flavor = Flavor.UNKNOWN
    requested: InstanceKey | None = None
    forced: bool = False
    failed_hung: bool = False
    """The failed master's last probe timed out (it hangs; a dead one refuses): the executor's
    attempt to fence it is short, since a hung server answers nothing, and it is fenced when it
    wakes instead (docs/recovery.md, "Hung master")."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lost", frozen_reasons(self.lost))
        object.__setattr__(self, "rejected", frozen_reasons(self.rejected))
        object.__setattr__(self, "postponed", frozen_reasons(self.postponed))

    def describe(self) -> str:
        parts = [f"promote {self.successor} in place of dead master {self.failed}"]
        if self.successor_must_catch_up:
            parts.append("after it applies its relay log")
        parts.append(f"repoint {_keys_text(self.repoint)}" if self.repoint else "repoint none")
        if self.postponed:
            parts.append(f"then {_keys_text(list(self.postponed))} in the background")
        if self.lost:
            parts.append(f"lost {_keys_text(list(self.lost))}")
        return f"cluster {self.cluster}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "master",
            "cluster": self.cluster,
            "failed": str(self.failed),
            "successor": str(self.successor),
            "repoint": [str(key) for key in self.repoint],
            "lost": _reasons_json(self.lost),
            "rejected": _reasons_json(self.rejected),
            "postponed": _reasons_json(self.postponed),
            "semi_sync_master": self.semi_sync_master,
            "successor_must_catch_up": self.successor_must_catch_up,
            "catch_up_gtid": self.catch_up_gtid,
            "catch_up_coordinates": self.catch_up_coordinates,
            "successor_gtid_position": self.successor_gtid_position,
            "gtid_kind": self.gtid_kind.value,
            "flavor": self.flavor.value,
            "requested": str(self.requested) if self.requested is not None else None,
            "forced": self.forced,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RelocationPlan:
    """Move the replicas of the dead intermediate master ``failed`` (or, with ``galera``, of
    the failed Galera node ``failed``): ``moves`` holds ``(replica, new master)`` pairs, each a
    GTID move. ``lost`` replicas cannot be moved safely; ``rejected`` says why each possible
    new master (sibling or master; the other Galera nodes) was not used."""

    cluster: str
    failed: InstanceKey
    moves: tuple[tuple[InstanceKey, InstanceKey], ...]
    lost: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    rejected: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    gtid_kind: GtidKind
    forced: bool = False
    galera: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lost", frozen_reasons(self.lost))
        object.__setattr__(self, "rejected", frozen_reasons(self.rejected))

    @property
    def targets(self) -> tuple[InstanceKey, ...]:
        """The new masters used, in key order."""
        return tuple(sorted({target for _, target in self.moves}))

    def describe(self) -> str:
        moved = ", ".join(f"{replica} under {target}" for replica, target in self.moves)
        failed = "failed Galera node" if self.galera else "dead intermediate master"
        text = f"cluster {self.cluster}: relocate replicas of {failed} {self.failed}"
        text += f": {moved}" if moved else ": none"
        if self.lost:
            text += f"; lost {_keys_text(list(self.lost))}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "galera-node" if self.galera else "intermediate-master",
            "cluster": self.cluster,
            "failed": str(self.failed),
            "moves": [
                {"replica": str(replica), "master": str(target)} for replica, target in self.moves
            ],
            "lost": _reasons_json(self.lost),
            "rejected": _reasons_json(self.rejected),
            "gtid_kind": self.gtid_kind.value,
            "forced": self.forced,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """No recovery: ``reason`` is one human sentence; ``rejected`` explains each instance that
    was considered (replicas as successors, or possible new masters and unmovable replicas)."""

    cluster: str
    failed: InstanceKey
    code: RefusalCode
    reason: str
    rejected: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    forced: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rejected", frozen_reasons(self.rejected))

    def describe(self) -> str:
        return f"cluster {self.cluster}: no recovery of {self.failed}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "refusal",
            "cluster": self.cluster,
            "failed": str(self.failed),
            "code": self.code.value,
            "reason": self.reason,
            "rejected": _reasons_json(self.rejected),
            "forced": self.forced,
        }


Refuse = Callable[[RefusalCode, str, Mapping[InstanceKey, str]], Refusal]
"""A planner's way out: the refusal code, why, and the replicas rejected with their reasons."""


def refuser(cluster: str, failed: InstanceKey, *, forced: bool) -> Refuse:
    """The :data:`Refuse` of one planning: refusals of ``failed``'s recovery in ``cluster``."""

    def refuse(code: RefusalCode, reason: str, rejected: Mapping[InstanceKey, str]) -> Refusal:
        return Refusal(
            cluster=cluster,
            failed=failed,
            code=code,
            reason=reason,
            rejected=frozen_reasons(rejected),
            forced=forced,
        )

    return refuse


def shown_cluster(cluster: str, alias: str) -> str:
    """A cluster as a refusal names it: with its alias when it has one."""
    return f"{cluster} (alias {alias})" if alias else cluster
