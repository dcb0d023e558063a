"""From the store's view to orchestrator's JSON (downtime and candidates joined in)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator_api import wire
from orchestrator_api.store.view import FleetView
from orchestrator_shared.config import Settings
from orchestrator_shared.filters import cluster_matches_filters
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.topology import TopologyInstance


def instance_payload(
    view: FleetView,
    node: TopologyInstance,
    *,
    now: datetime,
    poll: float,
    reasonable_lag: int = wire.DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS,
) -> dict[str, Any]:
    """``/api/instance`` of ``node``; ``reasonable_lag``: ``ReasonableReplicationLagSeconds``."""
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
        reasonable_lag_seconds=reasonable_lag,
    )


def cluster_info_payload(
    view: FleetView, name: str, settings: Settings | None = None
) -> dict[str, Any]:
    """``ClusterInfo``; ``HasAutomated*Recovery`` say whether the recovery cluster filters of
    ``settings`` (this API's configuration; keep it the same as the recovery workers') select
    the cluster."""
    cluster = view.topology.clusters[name]
    summary = view.summaries[name]
    if summary.alias != cluster.alias:
        cluster = dataclasses.replace(cluster, alias=summary.alias)
    alias = summary.alias if summary.alias != name else ""

    def selected(filters: tuple[str, ...]) -> bool:
        return cluster_matches_filters(filters, cluster=name, alias=alias)

    return wire.cluster_info_json(
        cluster,
        has_automated_master_recovery=settings is not None
        and selected(settings.RecoverMasterClusterFilters),
        has_automated_intermediate_master_recovery=settings is not None
        and selected(settings.RecoverIntermediateMasterClusterFilters),
        domain=summary.domain,
    )


@dataclass(frozen=True, slots=True)
class _Encoded:
    stamp: tuple[Any, ...]
    body: bytes
    valid_from: float  # timestamps (seconds): the clock values it is right for
    valid_until: float


def _same(known: tuple[Any, ...], stamp: tuple[Any, ...]) -> bool:
    """Stamps lead with the node or cluster object: a new object means a change (comparing
    its contents would cost more than encoding it again)."""
    return known[0] is stamp[0] and known[1:] == stamp[1:]


class InstanceAnswers:
    """Encoded ``/api/instance`` JSON of each instance and ``/api/cluster`` JSON of each
    cluster, reused while nothing they show changes.

    What an instance's answer shows: its node (a new snapshot or a move makes a new node), the
    nodes above it (``AncestryUUID``), the cluster alias, its downtime and candidate entries,
    and counters of the clock: ``SecondsSinceLastSeen`` and the validity flags, elapsed
    downtime. The clock is read at whole seconds counted from the instance's own last-seen
    time (so ``SecondsSinceLastSeen`` is exact; the flags and elapsed downtime are at most a
    second old). The answers therefore do not all go stale at the start of each second: each
    instance is encoded again once a second at its own moment, or when a snapshot changed it.

    A cluster's answer is its members' bytes joined, kept until its cluster object (replaced
    whenever a member changes), alias or operator state changes, or a member's clock counters
    tick. A store ingesting a few hundred snapshots a second re-encodes only what changed.

    ``reasonable_lag``: ``ReasonableReplicationLagSeconds``, for the ``Problems`` of each answer.
    """

    def __init__(
        self, *, reasonable_lag: int = wire.DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS
    ) -> None:
        self._reasonable_lag = reasonable_lag
        self._instances: dict[InstanceKey, _Encoded] = {}
        self._clusters: dict[str, _Encoded] = {}

    def instance(
        self, view: FleetView, node: TopologyInstance, *, now: datetime, poll: float
    ) -> bytes:
        return self._instance(view, node, now.timestamp(), poll).body

    def cluster(self, view: FleetView, name: str, *, now: datetime, poll: float) -> bytes:
        cluster = view.topology.clusters[name]
        stamp = (cluster, poll, view.summaries[name].alias, *view.operator_state)
        at = now.timestamp()
        known = self._clusters.get(name)
        if (
            known is not None
            and known.valid_from <= at < known.valid_until
            and _same(known.stamp, stamp)
        ):
            return known.body
        parts = [
            self._instance(view, cluster.instances[key], at, poll)
            for key in sorted(cluster.instances)
        ]
        body = b"[" + b",".join(part.body for part in parts) + b"]"
        if len(self._clusters) > 2 * len(view.summaries) + 256:
            self._clusters.clear()  # forgotten clusters
        self._clusters[name] = _Encoded(
            stamp,
            body,
            max((part.valid_from for part in parts), default=-math.inf),
            min((part.valid_until for part in parts), default=math.inf),
        )
        return body

    def _instance(
        self, view: FleetView, node: TopologyInstance, at: float, poll: float
    ) -> _Encoded:
        known = self._instances.get(node.key)
        probe = node.snapshot.probe
        anchor = probe.last_seen_at or probe.checked_at
        anchor_at = anchor.timestamp()
        ticks = math.floor(at - anchor_at)
        as_of = anchor + timedelta(seconds=ticks)
        cluster = view.topology.clusters[node.cluster_name]
        stamp = (
            node,
            poll,
            view.downtime_of(node.key, now=as_of),
            view.candidate_of(node.key, now=as_of),
            view.summaries[node.cluster_name].alias,
            wire.ancestors(node, cluster),
        )
        if (
            known is not None
            and known.valid_from <= at < known.valid_until
            and _same(known.stamp, stamp)
        ):
            return known
        body = json.dumps(
            instance_payload(view, node, now=as_of, poll=poll, reasonable_lag=self._reasonable_lag),
            separators=(",", ":"),
        ).encode()
        if len(self._instances) > 2 * len(view.snapshots) + 1024:
            self._instances.clear()  # forgotten instances
        encoded = _Encoded(stamp, body, anchor_at + ticks, anchor_at + ticks + 1)
        self._instances[node.key] = encoded
        return encoded
