"""From the store's view to orchestrator's JSON (downtime and candidates joined in)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from orchestrator_api import wire
from orchestrator_api.store.view import FleetView
from orchestrator_shared.topology import TopologyInstance


def instance_payload(
    view: FleetView, node: TopologyInstance, *, now: datetime, poll: float
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
        downtime=view.downtime_of(node.key, now=now),
        candidate=view.candidate_of(node.key, now=now),
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
