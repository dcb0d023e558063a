"""orchestrator's read and operator routes (``/api/...``), with its JSON shapes.

Reads answer bare JSON where orchestrator does and its envelope where it does; changes accept
GET (as orchestrator) and POST. Errors: see :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Response

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.payloads import cluster_info_payload
from orchestrator_api.http.registration import mutation
from orchestrator_api.http.routes_moves import moved
from orchestrator_api.store import Candidate, Downtime, PromotionRule
from orchestrator_api.store.aliases import LOST_IN_RECOVERY
from orchestrator_api.store.view import FleetView
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.topology import TopologyInstance

router = APIRouter(prefix="/api")

_DURATION = re.compile(r"^([0-9]{1,12})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# the longest downtime or maintenance: 100 years. Longer ones would overflow the end time (a
# datetime ends in year 9999) or the stores' columns; nobody means them.
MAX_DURATION_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """orchestrator's downtime durations: ``30s``, ``10m``, ``2h``, ``1d`` (bare = seconds)."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ApiError(400, f"invalid duration {text!r}: expected e.g. 30s, 10m, 2h, 1d")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise ApiError(400, f"invalid duration {text!r}: at most 100 years")
    return timedelta(seconds=seconds)


def _encoded(
    context: ApiContext, view: FleetView, key: tuple[Any, ...], build: Callable[[], Any]
) -> bytes:
    """The JSON answer for ``key``, built at most once per view and second.

    Answers depend on the stored state (one view per store generation) and, through the
    validity fields (``IsUpToDate``, ``SecondsSinceLastSeen``...), on the current second; a
    read-heavy dashboard asking for the same thing a thousand times a second costs one
    rendering per second.
    """
    second = int(context.clock().timestamp())
    per_view = _answers.setdefault(view, {})
    cached = per_view.get((key, second))
    if cached is None:
        if len(per_view) > 4096:
            per_view.clear()
        cached = json.dumps(build(), separators=(",", ":")).encode()
        per_view[(key, second)] = cached
    return cached


_answers: weakref.WeakKeyDictionary[FleetView, dict[tuple[Any, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)


async def _instances(
    context: ApiContext, view: FleetView, nodes: list[TopologyInstance], *, single: bool = False
) -> Response:
    now, poll = context.clock(), context.settings.InstancePollSeconds
    parts = [context.answers.instance(view, node, now=now, poll=poll) for node in nodes]
    body = parts[0] if single else b"[" + b",".join(parts) + b"]"
    return Response(body, media_type="application/json")


def _cluster_answer(context: ApiContext, view: FleetView, name: str) -> Response:
    body = context.answers.cluster(
        view, name, now=context.clock(), poll=context.settings.InstancePollSeconds
    )
    return Response(body, media_type="application/json")


# --- clusters -------------------------------------------------------------------------------


@router.get("/clusters")
async def clusters(context: Context, _: ReadAccess) -> list[str]:
    view = await context.view()
    return sorted(view.summaries)


def clusters_info_body(context: ApiContext, view: FleetView) -> bytes:
    return _encoded(
        context,
        view,
        ("clusters-info",),
        lambda: [
            cluster_info_payload(view, name, context.settings) for name in sorted(view.summaries)
        ],
    )


@router.get("/clusters-info")
async def clusters_info(context: Context, _: ReadAccess) -> Response:
    view = await context.view()
    return Response(clusters_info_body(context, view), media_type="application/json")


@router.get("/cluster-info/{hint}")
async def cluster_info(hint: str, context: Context, _: ReadAccess) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    return cluster_info_payload(view, name, context.settings)


@router.get("/cluster/alias/{alias}")
async def cluster_by_alias(alias: str, context: Context, _: ReadAccess) -> Response:
    view = await context.view()
    name = view.cluster_by_alias(alias)
    if name is None:
        raise NotFound(f"Unable to determine cluster name. clusterAlias={alias}")
    return _cluster_answer(context, view, name)


@router.get("/cluster/instance/{host}/{port}")
async def cluster_of_instance(host: str, port: str, context: Context, _: ReadAccess) -> Response:
    view, name = await context.cluster_name(str(context.key(host, port)))
    return _cluster_answer(context, view, name)


@router.get("/cluster-info/alias/{alias}")
async def cluster_info_by_alias(alias: str, context: Context, _: ReadAccess) -> dict[str, Any]:
    view = await context.view()
    name = view.cluster_by_alias(alias)
    if name is None:
        raise NotFound(f"Unable to determine cluster name. clusterAlias={alias}")
    return cluster_info_payload(view, name, context.settings)


@router.get("/cluster/{hint}")
async def cluster(hint: str, context: Context, _: ReadAccess) -> Response:
    view, name = await context.cluster_name(hint)
    return _cluster_answer(context, view, name)


@router.get("/master/{hint}")
async def master(hint: str, context: Context, _: ReadAccess) -> Response:
    view, name = await context.cluster_name(hint)
    cluster = view.topology.clusters[name]
    return await _instances(context, view, [cluster.instances[cluster.master]], single=True)


@router.get("/masters")
async def masters(context: Context, _: ReadAccess) -> Response:
    view = await context.view()
    nodes = [c.instances[c.master] for _, c in sorted(view.topology.clusters.items())]
    return await _instances(context, view, nodes)


async def _topology(context: ApiContext, hint: str, *, tabulated: bool) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    return wire.topology_envelope(
        view.topology.clusters[name],
        now=context.clock(),
        poll_seconds=context.settings.InstancePollSeconds,
        tabulated=tabulated,
    )


@router.get("/topology/{hint}")
async def topology(hint: str, context: Context, _: ReadAccess) -> dict[str, Any]:
    return await _topology(context, hint, tabulated=False)


@router.get("/topology/{host}/{port}")
async def topology_of_instance(
    host: str, port: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    return await _topology(context, str(context.key(host, port)), tabulated=False)


@router.get("/topology-tabulated/{hint}")
async def topology_tabulated(hint: str, context: Context, _: ReadAccess) -> dict[str, Any]:
    return await _topology(context, hint, tabulated=True)


@router.get("/topology-tabulated/{host}/{port}")
async def topology_tabulated_of_instance(
    host: str, port: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    return await _topology(context, str(context.key(host, port)), tabulated=True)


# --- instances ------------------------------------------------------------------------------


@router.get("/instance/{host}/{port}")
async def instance(host: str, port: str, context: Context, _: ReadAccess) -> Response:
    view, node = await context.instance(host, port)
    return await _instances(context, view, [node], single=True)


@router.get("/instance-replicas/{host}/{port}")
async def instance_replicas(host: str, port: str, context: Context, _: ReadAccess) -> Response:
    view, node = await context.instance(host, port)
    cluster = view.topology.clusters[node.cluster_name]
    return await _instances(context, view, [cluster.instances[key] for key in node.replicas])


@router.get("/all-instances")
async def all_instances(context: Context, _: ReadAccess) -> Response:
    view = await context.view()
    return await _instances(context, view, view.all_instances())


@router.get("/search")
async def search(context: Context, _: ReadAccess, s: str = Query(min_length=1)) -> Response:
    view = await context.view()
    return await _instances(context, view, view.search(s))


async def _downtimed(
    context: ApiContext, view: FleetView, cluster: str | None, *, reason: str | None = None
) -> Response:
    """Instances downtimed now (with ``reason`` only), in ``cluster`` or everywhere."""
    downtimes = view.downtimes(now=context.clock())
    nodes = [
        node
        for d in downtimes
        if (reason is None or d.reason == reason)
        and (node := view.instance(d.key)) is not None
        and (cluster is None or node.cluster_name == cluster)
    ]
    return await _instances(context, view, nodes)


@router.get("/downtimed")
async def downtimed(context: Context, _: ReadAccess) -> Response:
    return await _downtimed(context, await context.view(), None)


@router.get("/downtimed/{hint}")
async def downtimed_in_cluster(hint: str, context: Context, _: ReadAccess) -> Response:
    view, name = await context.cluster_name(hint)
    return await _downtimed(context, view, name)


@router.get("/lost-in-recovery")
async def lost_in_recovery(context: Context, _: ReadAccess) -> Response:
    """Instances downtimed as ``lost-in-recovery`` (orchestrator's ``which-lost-in-recovery``):
    failed masters and replicas a recovery could not take along, until they are put back to
    work or their downtime ends."""
    return await _downtimed(context, await context.view(), None, reason=LOST_IN_RECOVERY)


@router.get("/lost-in-recovery/{hint}")
async def lost_in_recovery_of_cluster(hint: str, context: Context, _: ReadAccess) -> Response:
    view, name = await context.cluster_name(hint)
    return await _downtimed(context, view, name, reason=LOST_IN_RECOVERY)


# --- operator actions (GET as orchestrator, POST too) -------------------------------------


Handler = Callable[..., Awaitable[Any]]


def _mutation(path: str) -> Callable[[Handler], Handler]:
    return mutation(router, path)


@_mutation("/discover/{host}/{port}")
async def discover(host: str, port: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    key = context.key(host, port)
    reply = await context.ask_discovery("discover", key)
    await context.audit("discover", f"discovered {key}", key=key, user=who.user)
    return wire.ok_envelope(f"Instance discovered: {key}", _snapshot_summary(reply))


@_mutation("/async-discover/{host}/{port}")
async def async_discover(host: str, port: str, context: Context, _: AdminAccess) -> dict[str, Any]:
    key = context.key(host, port)
    context.check_discoverable(key)
    if context.discovery is None:
        raise ApiError(503, "discovery is not reachable (no NATS connection)")
    requester = context.discovery
    task = asyncio.get_running_loop().create_task(requester.request("discover", key))
    _background.add(task)
    task.add_done_callback(_background.discard)
    # Details.Key (orchestrator: null): what orchestrator-client's async-discover prints
    return wire.ok_envelope(
        f"Asynchronous discovery initiated for Instance: {key}",
        {"Key": wire.instance_key_json(key)},
    )


_background: set[asyncio.Task[Any]] = set()


@_mutation("/refresh/{host}/{port}")
async def refresh(host: str, port: str, context: Context, _: AdminAccess) -> dict[str, Any]:
    key = context.key(host, port)
    reply = await context.ask_discovery("refresh", key)
    return wire.ok_envelope(f"Instance refreshed: {key}", _snapshot_summary(reply))


@_mutation("/forget/{host}/{port}")
async def forget(host: str, port: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    key = context.key(host, port)
    if context.discovery is not None:
        await context.ask_discovery("forget", key)
    await context.store.forget_instance(key)
    await context.audit("forget", f"forgot {key}", key=key, user=who.user)
    return wire.ok_envelope(f"Instance forgotten: {key}", wire.instance_key_json(key))


@_mutation("/forget-cluster/{hint}")
async def forget_cluster(hint: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    for node in view.cluster_instances(name):
        if context.discovery is not None:
            await context.ask_discovery("forget", node.key)
    count = await context.store.forget_cluster(name)
    await context.audit("forget-cluster", f"forgot {count} instances", cluster=name, user=who.user)
    return wire.ok_envelope(f"Cluster forgotten: {name}", None)


@_mutation("/begin-downtime/{host}/{port}/{owner}/{reason}/{duration}")
async def begin_downtime(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str,
    port: str,
    owner: str,
    reason: str,
    duration: str,
    context: Context,
    who: AdminAccess,
) -> dict[str, Any]:
    _, node = await context.instance(host, port)
    now = context.clock()
    downtime = Downtime(
        key=node.key,
        owner=owner,
        reason=reason,
        begins_at=now,
        ends_at=now + parse_duration(duration),
    )
    await context.store.begin_downtime(downtime)
    await context.tell_recovery(lambda state: state.begin_downtime(downtime))
    await context.audit(
        "begin-downtime",
        f"owner: {owner}, reason: {reason}",
        key=node.key,
        user=who.user,
    )
    return wire.ok_envelope(f"Downtime begun: {node.key}", wire.instance_key_json(node.key))


@_mutation("/end-downtime/{host}/{port}")
async def end_downtime(host: str, port: str, context: Context, who: AdminAccess) -> dict[str, Any]:
    key = context.key(host, port)
    await context.store.end_downtime(key)
    await context.tell_recovery(lambda state: state.end_downtime(key))
    await context.audit("end-downtime", "ended", key=key, user=who.user)
    return wire.ok_envelope(f"Downtime ended: {key}", wire.instance_key_json(key))


@_mutation("/register-candidate/{host}/{port}/{rule}")
async def register_candidate(
    host: str, port: str, rule: str, context: Context, who: AdminAccess
) -> dict[str, Any]:
    _, node = await context.instance(host, port)
    try:
        promotion_rule = PromotionRule(rule)
    except ValueError:
        allowed = ", ".join(r.value for r in PromotionRule)
        raise ApiError(400, f"invalid promotion rule {rule!r}: expected one of {allowed}") from None
    now = context.clock()
    candidate = Candidate(
        key=node.key,
        rule=promotion_rule,
        registered_at=now,
        expires_at=now + timedelta(minutes=context.settings.CandidateInstanceExpireMinutes),
    )
    await context.store.register_candidate(candidate)
    await context.tell_recovery(lambda state: state.register_candidate(candidate))
    await context.audit("register-candidate", rule, key=node.key, user=who.user)
    return wire.ok_envelope(f"Registered candidate: {node.key}", wire.instance_key_json(node.key))


@_mutation("/set-cluster-alias/{hint}")
async def set_cluster_alias(
    hint: str, context: Context, who: AdminAccess, alias: str = Query(min_length=1)
) -> dict[str, Any]:
    _, name = await context.cluster_name(hint)
    await context.store.set_cluster_alias(name, alias)
    await context.audit("set-cluster-alias", f"alias: {alias}", cluster=name, user=who.user)
    return wire.ok_envelope(f"Cluster {name} now has alias '{alias}'", None)


def _snapshot_summary(reply: dict[str, Any]) -> dict[str, Any] | None:
    snapshot = reply.get("snapshot")
    if not isinstance(snapshot, dict):
        return None
    key = InstanceKey.parse(str(snapshot["key"]))
    return {"Key": wire.instance_key_json(key), "Version": snapshot.get("version", "")}


# --- topology operations: forwarded to the active recovery worker ---------------------------


@_mutation("/relocate/{host}/{port}/{below_host}/{below_port}")
async def relocate(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str, port: str, below_host: str, below_port: str, context: Context, who: AdminAccess
) -> Any:
    if context.key(host, port) == context.key(below_host, below_port):
        raise ApiError(400, f"cannot relocate {context.key(host, port)} below itself")
    return await moved(context, "relocate", host, port, who.user, below=(below_host, below_port))


@_mutation("/relocate-below/{host}/{port}/{below_host}/{below_port}")
async def relocate_below(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str, port: str, below_host: str, below_port: str, context: Context, who: AdminAccess
) -> Any:
    """orchestrator's other name of ``relocate``."""
    return await relocate(host, port, below_host, below_port, context, who)
