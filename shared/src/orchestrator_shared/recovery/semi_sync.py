"""``plan_semi_sync_replicas``: which replicas of a semi-sync master turn semi-sync on or off.

orchestrator's ``AnalyzeSemiSyncReplicaTopology`` as a pure function, for the two recoveries
its settings turn on (reference §3.2 rows 7-8, §4.11):

* ``RecoverLockedSemiSyncMaster`` (:attr:`SemiSyncMode.AT_LEAST`): a ``LockedSemiSyncMaster``
  waits for acknowledgements from more semi-sync replicas than it has. Semi-sync is turned on
  on just enough replicas to reach its wait count (``rpl_semi_sync_master_wait_for_slave_count``;
  MariaDB has no such variable: 1); nothing is turned off.
* ``EnforceExactSemiSyncReplicas`` (:attr:`SemiSyncMode.EXACT`): exactly the wait count's
  best replicas are semi-sync, every other one is turned off. It recovers a
  ``LockedSemiSyncMaster`` and a ``MasterWithTooManySemiSyncReplicas``.

The candidates are the master's replicas that are reachable and replicating (both threads
running) and have semi-sync available; the others are left as they are. A replica that can
never be promoted (promotion rule ``must_not``, a host name matching
``PromotionIgnoreHostnameFilters``, a delayed replica) never acknowledges: otherwise a commit
the master acknowledged to its client could sit only on a server no failover would promote.
The candidates are ranked by promotion rule (``must``, ``prefer``, ``neutral``,
``prefer_not``), then by key (orchestrator ranks by ``DetectSemiSyncEnforcedQuery`` priority
first, which this project does not read).

A replica counts as a semi-sync replica when semi-sync is enabled on it *and* running
(``Rpl_semi_sync_slave_status``): one enabled but not running (the variable set without an IO
thread restart) is enabled again, which restarts its IO thread. ``reasons`` says, for every
replica, what happens to it and why.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.facts import RULE_RANK, ServerFacts
from orchestrator_shared.recovery.model import (
    PlanOptions,
    Refusal,
    RefusalCode,
    frozen_reasons,
)
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot

__all__ = ["SemiSyncMode", "SemiSyncPlan", "plan_semi_sync_replicas"]

_NO_CANDIDATES: Mapping[InstanceKey, PromotionRule] = MappingProxyType({})


class SemiSyncMode(enum.StrEnum):
    """How many semi-sync replicas a semi-sync recovery aims for."""

    AT_LEAST = "at-least"
    """``RecoverLockedSemiSyncMaster``: at least the wait count; nothing is turned off."""
    EXACT = "exact"
    """``EnforceExactSemiSyncReplicas``: exactly the wait count; the others turned off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SemiSyncPlan:
    """Turn semi-sync on on ``enable`` (first), then off on ``disable``; each of them gets an
    IO thread restart so that the master sees the change. ``clients`` is how many semi-sync
    replicas the master counted when the plan was made."""

    cluster: str
    master: InstanceKey
    mode: SemiSyncMode
    wait_count: int
    clients: int
    enable: tuple[InstanceKey, ...]
    disable: tuple[InstanceKey, ...]
    reasons: Mapping[InstanceKey, str] = field(default_factory=lambda: MappingProxyType({}))
    flavor: Flavor = Flavor.UNKNOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", frozen_reasons(self.reasons))

    def is_reached(self, clients: int) -> bool:
        """Whether a master counting ``clients`` semi-sync replicas is as this plan wants."""
        if self.mode is SemiSyncMode.EXACT:
            return clients == self.wait_count
        return clients >= self.wait_count

    @property
    def target(self) -> str:
        """The number of semi-sync replicas aimed for, in words."""
        return _target(self.mode, self.wait_count)

    def describe(self) -> str:
        parts = [f"semi-sync replicas of {self.master}: {self.target} (it counts {self.clients})"]
        if self.enable:
            parts.append("enable on " + ", ".join(map(str, self.enable)))
        if self.disable:
            parts.append("disable on " + ", ".join(map(str, self.disable)))
        return f"cluster {self.cluster}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "semi-sync",
            "cluster": self.cluster,
            "master": str(self.master),
            "mode": self.mode.value,
            "wait_count": self.wait_count,
            "clients": self.clients,
            "enable": [str(key) for key in self.enable],
            "disable": [str(key) for key in self.disable],
            "reasons": {str(key): why for key, why in self.reasons.items()},
            "flavor": self.flavor.value,
        }


def plan_semi_sync_replicas(
    master: InstanceSnapshot,
    replicas: Sequence[InstanceSnapshot],
    *,
    cluster: str,
    mode: SemiSyncMode,
    options: PlanOptions,
    candidates: Mapping[InstanceKey, PromotionRule] = _NO_CANDIDATES,
) -> SemiSyncPlan | Refusal:
    """What to change so that ``master`` has the semi-sync replicas ``mode`` wants, or a
    refusal when nothing can be changed. ``replicas`` are its replicas as just probed;
    ``candidates`` the registered promotion rules (they override the detected ones)."""
    master_key = master.instance_key
    wait = max(master.semi_sync.master_wait_for_replica_count, 1)
    clients = master.semi_sync.master_clients
    facts = [
        ServerFacts.of(snap, master=None, master_key=master_key, candidates=candidates)
        for snap in sorted(replicas, key=lambda snap: snap.instance_key)
        if snap.instance_key != master_key
    ]
    reasons: dict[InstanceKey, str] = {}
    possible: list[ServerFacts] = []
    never: list[ServerFacts] = []
    for item in facts:
        if item.channel is None:
            continue  # not a replica of this master (a stale listing)
        excluded = _excluded(item)
        if excluded:
            reasons[item.key] = f"{excluded}: left as it is"
            continue
        why_never = _never_semi_sync(item, options)
        if why_never:
            reasons[item.key] = why_never
            never.append(item)
        else:
            possible.append(item)
    possible.sort(key=lambda item: (RULE_RANK[item.rule], item.key))

    enable: list[InstanceKey] = []
    disable: list[InstanceKey] = []
    if mode is SemiSyncMode.EXACT:
        for rank, item in enumerate(possible):
            wanted = rank < wait
            if wanted and not _is_semi_sync(item):
                enable.append(item.key)
                reasons[item.key] = f"enabled: one of the {wait} best ({_rank_text(item, rank)})"
            elif wanted:
                reasons[item.key] = f"kept: one of the {wait} best ({_rank_text(item, rank)})"
            elif _is_enabled(item):
                disable.append(item.key)
                reasons[item.key] = (
                    f"disabled: ranks below the {wait} best ({_rank_text(item, rank)})"
                )
            else:
                reasons[item.key] = f"left async: ranks below the {wait} best"
        for item in never:
            if _is_enabled(item):
                disable.append(item.key)
                reasons[item.key] = f"disabled: {reasons[item.key]}"
    else:
        needed = wait - clients
        for rank, item in enumerate(possible):
            if _is_semi_sync(item):
                reasons[item.key] = "kept: a semi-sync replica already"
            elif needed > 0:
                enable.append(item.key)
                needed -= 1
                reasons[item.key] = f"enabled ({_rank_text(item, rank)})"
            else:
                reasons[item.key] = "left async: enough semi-sync replicas"
    if not enable and not disable:
        summary = "; ".join(f"{key} {why}" for key, why in sorted(reasons.items()))
        return Refusal(
            cluster=cluster,
            failed=master_key,
            code=RefusalCode.NO_SEMI_SYNC_CHANGE,
            reason=(
                f"no replica of {master_key} can be changed to give it {_target(mode, wait)} "
                f"semi-sync replicas (it counts {clients}): {summary or 'it has no replicas'}"
            ),
            rejected=frozen_reasons(reasons),
            forced=False,
        )
    return SemiSyncPlan(
        cluster=cluster,
        master=master_key,
        mode=mode,
        wait_count=wait,
        clients=clients,
        enable=tuple(enable),
        disable=tuple(disable),
        reasons=frozen_reasons(reasons),
        flavor=master.flavor,
    )


def _target(mode: SemiSyncMode, wait: int) -> str:
    return f"exactly {wait}" if mode is SemiSyncMode.EXACT else f"at least {wait}"


def _rank_text(item: ServerFacts, rank: int) -> str:
    return f"#{rank + 1} by promotion rule {item.rule}, then key"


def _excluded(item: ServerFacts) -> str:
    """Why a replica is not considered at all (it is left as it is), or ''."""
    if not item.is_reachable:
        return item.unreachable_reason
    channel = item.channel
    if channel is not None and not channel.is_replicating:
        return (
            f"is not replicating (IO thread {channel.io_running or 'not configured'}, "
            f"SQL thread {channel.sql_running or 'not configured'})"
        )
    if not item.snapshot.semi_sync.available:
        return "has no semi-sync (plugin not loaded)"
    return ""


def _never_semi_sync(item: ServerFacts, options: PlanOptions) -> str:
    """Why a replica must never acknowledge (it can never be promoted), or ''."""
    if item.rule is PromotionRule.MUST_NOT:
        return f"never semi-sync: promotion rule must_not ({item.rule_source})"
    ignored = options.promotion_ignored(item.key)
    if ignored:
        return f"never semi-sync: {ignored}"
    if item.sql_delay > 0:
        return f"never semi-sync: a delayed replica (SQL_Delay={item.sql_delay}s)"
    return ""


def _is_enabled(item: ServerFacts) -> bool:
    semi = item.snapshot.semi_sync
    return semi.replica_enabled or semi.replica_status


def _is_semi_sync(item: ServerFacts) -> bool:
    semi = item.snapshot.semi_sync
    return semi.replica_enabled and semi.replica_status
