"""Instance tags (issue 6), kept in topology-api's store (:mod:`orchestrator_api.store.tags`),
with orchestrator's routes and answers:

* ``tags/h/p`` → ``["name=value", ...]``; ``tag-value/h/p[/name]`` or ``?tag=`` → the value (a
  JSON string); ``tagged?tag=`` → the matching keys;
* ``tag/h/p[/name/value]`` or ``?tag=`` → envelope, ``Details`` the key;
* ``untag/h/p[/name]`` or ``?tag=``, ``untag-all[/name/value]`` or ``?tag=`` → envelope,
  ``Details`` the keys the tag was removed from (``untag-all`` needs a value);
* ``topology-tags/<cluster>`` (or ``/h/p``) → the topology text, each line followed by the
  instance's tags.

Changes are audited (``put-instance-tag``, ``delete-instance-tag``). Statuses: 400 a tag that
cannot be read (or negated, or ``untag-all`` without a value), 404 unknown instance (tagging
only; reading and untagging accept any key) or tag not set (``tag-value``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import AdminAccess, ReadAccess
from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.registration import add_mutation
from orchestrator_api.store.tags import Tag, TagError, parse_tag, parse_tags, tagged, untag_scope
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.topology import render_topology

router = APIRouter(prefix="/api")


def _tag(query: str, name: str = "", value: str | None = None) -> Tag:
    """orchestrator's getTag: ``?tag=`` first, else the path's name (and value)."""
    try:
        if query:
            return parse_tag(query)
        if not name.strip():
            raise TagError("no tag given (?tag=name or ?tag=name=value)")
        return Tag(name.strip(), value or "", has_value=value is not None)
    except TagError as exc:
        raise ApiError(400, str(exc)) from None


def _mutation(path: str, handler: Any, name: str) -> None:
    add_mutation(router, path, handler, name)


# --- reads ----------------------------------------------------------------------------------


@router.get("/tags/{host}/{port}")
async def tags(host: str, port: str, context: Context, _: ReadAccess) -> list[str]:
    return [str(tag) for tag in await context.store.instance_tags(context.key(host, port))]


async def tag_value(
    host: str, port: str, context: Context, _: ReadAccess, tag_name: str = "", tag: str = ""
) -> str:
    key = context.key(host, port)
    wanted = _tag(tag, tag_name)
    for found in await context.store.instance_tags(key):
        if found.name == wanted.name:
            return found.value
    raise NotFound(f"tag {wanted.name} not found for {key}")


router.add_api_route("/tag-value/{host}/{port}", tag_value, methods=["GET"])
router.add_api_route(
    "/tag-value/{host}/{port}/{tag_name}",
    tag_value,
    methods=["GET"],
    operation_id="tag_value_by_name",
)


@router.get("/tagged")
async def tagged_instances(
    context: Context, _: ReadAccess, tag: str = Query(default="")
) -> list[dict[str, Any]]:
    try:
        terms = parse_tags(tag)
    except TagError as exc:
        raise ApiError(400, str(exc)) from None
    keys = tagged(await context.store.tags_by_instance(), terms)
    return [wire.instance_key_json(key) for key in keys]


# --- changes --------------------------------------------------------------------------------


async def tag_instance(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str,
    port: str,
    context: Context,
    who: AdminAccess,
    tag_name: str = "",
    tag_value: str | None = None,
    tag: str = "",
) -> dict[str, Any]:
    _, node = await context.instance(host, port)
    wanted = _tag(tag, tag_name, tag_value)
    if wanted.negate:
        raise ApiError(400, f"cannot tag with a negation: {tag}")
    await context.store.put_tag(node.key, wanted)
    await context.audit("put-instance-tag", str(wanted), key=node.key, user=who.user)
    return wire.ok_envelope(f"{node.key} tagged with {wanted}", wire.instance_key_json(node.key))


async def untag_instance(  # noqa: PLR0917 - FastAPI passes path parameters by name
    host: str, port: str, context: Context, who: AdminAccess, tag_name: str = "", tag: str = ""
) -> dict[str, Any]:
    return await _untag(context, context.key(host, port), _tag(tag, tag_name), who.user)


async def untag_all(
    context: Context,
    who: AdminAccess,
    tag_name: str = "",
    tag_value: str | None = None,
    tag: str = "",
) -> dict[str, Any]:
    return await _untag(context, None, _tag(tag, tag_name, tag_value), who.user)


async def _untag(
    context: ApiContext, key: InstanceKey | None, tag: Tag, user: str
) -> dict[str, Any]:
    try:
        untag_scope(key, tag)
    except TagError as exc:
        raise ApiError(400, str(exc)) from None
    removed = await context.store.untag(key, tag)
    if removed:
        where = str(key) if key is not None else f"{len(removed)} instances"
        await context.audit("delete-instance-tag", f"{tag} from {where}", key=key, user=user)
    return wire.ok_envelope(
        f"{tag.name} removed from {len(removed)} instances",
        [wire.instance_key_json(found) for found in removed],
    )


_mutation("/tag/{host}/{port}", tag_instance, "tag")
_mutation("/tag/{host}/{port}/{tag_name}/{tag_value}", tag_instance, "tag_by_name")
_mutation("/untag/{host}/{port}", untag_instance, "untag")
_mutation("/untag/{host}/{port}/{tag_name}", untag_instance, "untag_by_name")
_mutation("/untag-all", untag_all, "untag_all")
_mutation("/untag-all/{tag_name}/{tag_value}", untag_all, "untag_all_by_name")


# --- the topology with tags -----------------------------------------------------------------


async def _topology_tags(context: ApiContext, hint: str) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    cluster = view.topology.clusters[name]
    text = render_topology(
        cluster, now=context.clock(), poll_seconds=context.settings.InstancePollSeconds
    )
    tags_of = await context.store.tags_by_instance()
    lines = []
    for node, line in zip(cluster.walk(), text.split("\n") if text else [], strict=True):
        names = sorted(tags_of.get(node.key, {}).items())
        shown = ",".join(Tag(n, v).display for n, v in names)
        lines.append(f"{line} [{shown}]")
    return wire.ok_envelope(f"Topology for cluster {name}", "\n".join(lines))


@router.get("/topology-tags/{hint}")
async def topology_tags(hint: str, context: Context, _: ReadAccess) -> dict[str, Any]:
    return await _topology_tags(context, hint)


@router.get("/topology-tags/{host}/{port}")
async def topology_tags_of_instance(
    host: str, port: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    return await _topology_tags(context, str(context.key(host, port)))
