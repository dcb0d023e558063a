"""orchestrator routes operators' scripts use that the other route modules do not serve
(issue 10, section 4), with orchestrator's semantics and JSON:

* ``begin-downtime/{host}/{port}/{owner}/{reason}``: no duration, so
  ``MaintenanceExpireMinutes`` (orchestrator's default, 10 minutes);
* ``search/{searchString}``: ``search?s=`` as a path;
* ``bulk-instances`` (every key, by host then port) and ``bulk-promotion-rules`` (the
  registered rules, by host then port), admin role as in orchestrator;
* ``cluster-osc-replicas/{hint}`` (``cluster-osc-slaves``): :mod:`orchestrator_api.osc`;
* ``submit-masters-to-kv-stores[/{hint}]``: the pairs orchestrator would write
  (:mod:`orchestrator_api.kv`); no key-value store is wired, nothing is written;
* ``automated-recovery-filters``: the recovery filter settings;
* ``reload-cluster-alias``: retired in orchestrator, answered as it does (an error);
* ``snapshot-topologies``: every instance's master copied into the topology history;
* ``replication-analysis-changelog``: each instance's analysis changes.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response

from orchestrator_api import wire
from orchestrator_api.http import routes
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.registration import add_mutation
from orchestrator_api.kv import master_kv_pairs, resolve_addresses
from orchestrator_api.osc import osc_replicas
from orchestrator_api.store.view import FleetView
from orchestrator_api.wire.timefmt import go_datetime, go_duration
from orchestrator_shared.topology import TopologyInstance

router = APIRouter(prefix="/api")

RECOVERY_FILTER_SETTINGS = (
    "RecoverMasterClusterFilters",
    "RecoverIntermediateMasterClusterFilters",
    "RecoveryIgnoreHostnameFilters",  # shown once the setting exists
)


# --- downtime and search ----------------------------------------------------------------------


async def begin_downtime_default(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str, port: str, owner: str, reason: str, context: Context, who: AdminAccess
) -> dict[str, Any]:
    """``begin-downtime`` for ``MaintenanceExpireMinutes``."""
    minutes = context.settings.MaintenanceExpireMinutes
    answer: dict[str, Any] = await routes.begin_downtime(
        host, port, owner, reason, f"{minutes}m", context, who
    )
    return answer


add_mutation(router, "/begin-downtime/{host}/{port}/{owner}/{reason}", begin_downtime_default)


@router.get("/search/{search_string}")
async def search_path(search_string: str, context: Context, who: ReadAccess) -> Response:
    return await routes.search(context, who, s=search_string)


# --- bulk reads (admin role, as orchestrator) -------------------------------------------------


@router.get("/bulk-instances")
async def bulk_instances(context: Context, _: AdminAccess) -> list[dict[str, Any]]:
    """Every known instance's key, by host then port."""
    view = await context.view()
    keys = sorted(view.snapshots)  # InstanceKey orders by host, then port
    return [wire.instance_key_json(key) for key in keys]


@router.get("/bulk-promotion-rules")
async def bulk_promotion_rules(context: Context, _: AdminAccess) -> list[dict[str, Any]]:
    """orchestrator's ``CandidateDatabaseInstance`` rows of the rules in force, by host then
    port; ``PromotionRuleExpiry`` is when the registration expires."""
    candidates = await context.store.candidates(now=context.clock())
    return [
        {
            "Hostname": candidate.key.host,
            "Port": candidate.key.port,
            "PromotionRule": candidate.rule.value,
            "LastSuggestedString": go_datetime(candidate.registered_at),
            "PromotionRuleExpiry": go_datetime(candidate.expires_at),
        }
        for candidate in sorted(candidates, key=lambda c: c.key)
    ]


# --- online schema change control replicas ----------------------------------------------------


async def _osc(hint: str, context: ApiContext) -> Response:
    view, name = await context.cluster_name(hint)
    now, poll = context.clock(), context.settings.InstancePollSeconds

    def is_valid(node: TopologyInstance) -> bool:
        return wire.check_state(node.snapshot, now=now, poll_seconds=poll).is_last_check_valid

    chosen = osc_replicas(
        view.topology.clusters[name],
        is_valid=is_valid,
        ignore=context.settings.OSCIgnoreHostnameFilters,
    )
    body = b"[" + b",".join(context.answers.instance(view, n, now=now, poll=poll) for n in chosen)
    return Response(body + b"]", media_type="application/json")


@router.get("/cluster-osc-replicas/{hint}")
async def cluster_osc_replicas(hint: str, context: Context, _: ReadAccess) -> Response:
    return await _osc(hint, context)


@router.get("/cluster-osc-slaves/{hint}")
async def cluster_osc_slaves(hint: str, context: Context, _: ReadAccess) -> Response:
    """orchestrator's older name of ``cluster-osc-replicas``."""
    return await _osc(hint, context)


# --- key-value stores -------------------------------------------------------------------------


async def _kv_pairs(context: ApiContext, view: FleetView, names: list[str]) -> dict[str, Any]:
    pairs: list[dict[str, str]] = []
    for name in names:
        cluster = view.topology.clusters[name]
        master = cluster.instances[cluster.master]
        if master.snapshot.read_only:
            continue  # orchestrator submits writable masters only
        addresses = await resolve_addresses(master.key.host)
        for key, value in master_kv_pairs(
            context.settings.KVClusterMasterPrefix,
            view.summaries[name].alias,
            master.key,
            addresses,
        ):
            pairs.append({"Key": key, "Value": value})
    return wire.ok_envelope(
        f"Submitted 0 masters: no key-value store is wired; {len(pairs)} pairs would be written",
        pairs,
    )


@router.get("/submit-masters-to-kv-stores")
async def submit_masters_to_kv_stores(context: Context, _: ReadAccess) -> dict[str, Any]:
    view = await context.view()
    return await _kv_pairs(context, view, sorted(view.summaries))


@router.get("/submit-masters-to-kv-stores/{hint}")
async def submit_cluster_master_to_kv_stores(
    hint: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    return await _kv_pairs(context, view, [name])


# --- recovery configuration and retired calls -------------------------------------------------


@router.get("/automated-recovery-filters")
async def automated_recovery_filters(context: Context, _: ReadAccess) -> dict[str, Any]:
    settings = context.settings
    details = {
        name: list(getattr(settings, name))
        for name in RECOVERY_FILTER_SETTINGS
        if hasattr(settings, name)
    }
    return wire.ok_envelope("Automated recovery configuration details", details)


async def reload_cluster_alias(context: Context, _: AdminAccess) -> None:
    """Retired in orchestrator (aliases are read from the instances and the overrides at every
    read here too); answered as orchestrator does."""
    raise ApiError(410, "This API call has been retired")


add_mutation(router, "/reload-cluster-alias", reload_cluster_alias)


# --- history ----------------------------------------------------------------------------------


async def snapshot_topologies(context: Context, who: AdminAccess) -> dict[str, Any]:
    """Copy every instance's master into the topology history (orchestrator's
    ``database_instance_topology_history``); ``Details`` is how long it took, as Go writes
    durations (what orchestrator-client prints)."""
    started = time.perf_counter_ns()
    count = await context.store.snapshot_topologies(at=context.clock())
    took = go_duration(time.perf_counter_ns() - started)
    await context.audit("snapshot-topologies", f"{count} instances", user=who.user)
    return wire.ok_envelope("Topology Snapshot completed", f"Took {took}")


add_mutation(router, "/snapshot-topologies", snapshot_topologies)


@router.get("/replication-analysis-changelog")
async def replication_analysis_changelog(context: Context, _: ReadAccess) -> list[dict[str, Any]]:
    """orchestrator's ``[]ReplicationAnalysisChangelog``: per instance (host, then port), its
    changes oldest first, each ``"<YYYY-MM-DD hh:mm:ss>;<analysis>,"``."""
    answer: list[dict[str, Any]] = []
    for change in await context.store.analysis_changelog():
        key = wire.instance_key_json(change.key)
        if not answer or answer[-1]["AnalyzedInstanceKey"] != key:
            answer.append({"AnalyzedInstanceKey": key, "Changelog": []})
        answer[-1]["Changelog"].append(f"{go_datetime(change.at)};{change.analysis},")
    return answer
