"""orchestrator's cluster shapes: ``ClusterInfo`` and the ``topology`` text envelope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator_api.wire.envelope import Envelope, ok_envelope
from orchestrator_api.wire.instance import cluster_errant
from orchestrator_shared.topology import Cluster, render_topology

__all__ = ["cluster_info_json", "cluster_name_alias_json", "topology_envelope"]


def cluster_info_json(
    cluster: Cluster,
    *,
    has_automated_master_recovery: bool,
    has_automated_intermediate_master_recovery: bool,
    domain: str = "",
) -> dict[str, Any]:
    """``ClusterInfo`` (``go/inst/cluster.go``); ``HeuristicLag`` is never filled in by
    orchestrator either, so it is always 0."""
    return {
        "ClusterName": cluster.name,
        "ClusterAlias": cluster.alias,
        "ClusterDomain": domain,
        "CountInstances": cluster.count,
        "HeuristicLag": 0,
        "HasAutomatedMasterRecovery": has_automated_master_recovery,
        "HasAutomatedIntermediateMasterRecovery": has_automated_intermediate_master_recovery,
    }


def cluster_name_alias_json(cluster: Cluster) -> dict[str, str]:
    """The name and alias of a cluster, as the two ``ClusterInfo`` fields."""
    return {"ClusterName": cluster.name, "ClusterAlias": cluster.alias}


def topology_envelope(
    cluster: Cluster, *, now: datetime, poll_seconds: float, tabulated: bool = False
) -> Envelope:
    """``/api/topology`` (or ``topology-tabulated``): the text tree inside an OK envelope."""
    text = render_topology(
        cluster,
        now=now,
        poll_seconds=poll_seconds,
        tabulated=tabulated,
        errant=cluster_errant(cluster),
    )
    return ok_envelope(f"Topology for cluster {cluster.name}", text)
