"""From the store's view to orchestrator's JSON (joins downtime and candidates in)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from orchestrator_api import wire
from orchestrator_api.store import Candidate, Downtime
from orchestrator_api.store.view import FleetView
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.topology import TopologyInstance


@dataclasses.dataclass(frozen=True, slots=True)
class Extras:
    """Operator state joined into instance answers."""

    downtimes: dict[InstanceKey, Downtime]
    candidates: dict[InstanceKey, Candidate]

    @classmethod
    def of(cls, downtimes: Iterable[Downtime], candidates: Iterable[Candidate]) -> Extras:
        return cls(
            downtimes={d.key: d for d in downtimes},
            candidates={c.key: c for c in candidates},
        )


def instance_payload(
    view: FleetView, node: TopologyInstance, extras: Extras, *, now: datetime, poll: float
) -> dict[str, Any]:
    cluster = view.topology.clusters[node.cluster_name]
    summary = view.summaries[node.cluster_name]
    if summary.alias != cluster.alias:
        cluster = dataclasses.replace(cluster, alias=summary.alias)
    return wire.instance_json(
        node,
        cluster,
        now=now,
        poll_seconds=poll,
        downtime=extras.downtimes.get(node.key),
        candidate=extras.candidates.get(node.key),
    )


def cluster_info_payload(view: FleetView, name: str) -> dict[str, Any]:
    cluster = view.topology.clusters[name]
    summary = view.summaries[name]
    if summary.alias != cluster.alias:
        cluster = dataclasses.replace(cluster, alias=summary.alias)
    return wire.cluster_info_json(
        cluster,
        has_automated_master_recovery=False,
        has_automated_intermediate_master_recovery=False,
        domain=summary.domain,
    )
