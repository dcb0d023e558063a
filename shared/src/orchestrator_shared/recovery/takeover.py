"""``choose_takeover_successor``: which direct replica takes over from a live master.

A planned takeover (``graceful-master-takeover``) differs from a failover in one way that
matters here: the master is alive, so the successor is made to apply everything the master
logged before it is promoted. Whether it has every transaction *now* does not matter, and with
writes going on no two replicas are ever at the same position, so the no-data-loss rule of
:func:`~orchestrator_shared.recovery.plan_master_recovery` is not applied. Every eligibility
rule is (errant GTIDs, delay, binary logs, version, ``must_not``, the data center and region
rules...), and the same ranking picks among the eligible: promotion rule, then the master's
data center, then the smallest key. A Galera node is refused, as in a failover
(:mod:`~orchestrator_shared.recovery.galera`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.candidates import (
    _judge,
    _no_candidate_sentence,
    _rank,
    _why_first,
)
from orchestrator_shared.recovery.facts import ServerFacts
from orchestrator_shared.recovery.galera import galera_refusal
from orchestrator_shared.recovery.model import PlanOptions
from orchestrator_shared.snapshot import InstanceSnapshot

__all__ = ["TakeoverChoice", "choose_takeover_successor"]


@dataclass(frozen=True, slots=True)
class TakeoverChoice:
    """The successor (None: refused, ``reason`` says why) and why each other replica was not
    chosen."""

    successor: InstanceKey | None
    reason: str
    rejected: Mapping[InstanceKey, str]


def choose_takeover_successor(
    master: InstanceSnapshot,
    replicas: Sequence[InstanceSnapshot],
    *,
    options: PlanOptions,
    candidates: Mapping[InstanceKey, PromotionRule],
    requested: InstanceKey | None = None,
) -> TakeoverChoice:
    """The replica of ``master`` to promote: ``requested`` if it is a direct replica breaking
    no rule, else the best-ranked eligible one; none of a Galera node."""
    master_key = master.instance_key
    galera = galera_refusal(master)
    if galera:
        return TakeoverChoice(None, galera, {})
    direct = {
        snap.instance_key: snap
        for snap in replicas
        if snap.instance_key != master_key and snap.master_key == master_key
    }
    if not direct:
        return TakeoverChoice(None, f"{master_key} has no direct replica to promote", {})
    peers = list(direct.values())
    facts = [
        ServerFacts.of(direct[key], master=master, peers=peers, candidates=candidates)
        for key in sorted(direct)
    ]
    verdicts = _judge(facts, failed=master, options=options)
    rejected = {key: v.reason() for key, v in verdicts.items() if not v.is_eligible}
    if requested is not None:
        verdict = verdicts.get(requested)
        if verdict is None:
            return TakeoverChoice(
                None,
                f"{requested} must be directly replicating from the master {master_key}",
                rejected,
            )
        if not verdict.is_eligible:
            return TakeoverChoice(
                None, f"{requested} cannot be promoted: {verdict.reason()}", rejected
            )
        for key in verdicts:
            if key != requested and key not in rejected:
                rejected[key] = f"eligible, but {requested} was requested"
        return TakeoverChoice(requested, "", rejected)
    eligible: list[ServerFacts] = [v.facts for v in verdicts.values() if v.is_eligible]
    if not eligible:
        return TakeoverChoice(None, _no_candidate_sentence(master, verdicts), rejected)
    ranked = sorted(eligible, key=lambda item: _rank(item, master))
    chosen = ranked[0]
    for item in ranked[1:]:
        rejected[item.key] = f"eligible, but {chosen.key} ranks first " + (
            f"({_why_first(chosen, item, master)})"
        )
    return TakeoverChoice(chosen.key, "", rejected)
