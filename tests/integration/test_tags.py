"""Instance tags (issue 6) on both stores (SQLite and PostgreSQL): the store methods, the
API routes with orchestrator's answers (its tag/tagged/untag system tests' data), audit,
forgetting an instance, ``topology-tags``, and the CLI over a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import Store
from orchestrator_api.store.tags import Tag
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from tests.integration.api_support import serve_cli
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration

MASTER = "testhost:22293"
PORTS = (22293, 22294, 22295, 22296, 22297)
# orchestrator's tests/integration tag data
TAGS = {
    22293: [("role", "backup")],
    22294: [("role", "delayed")],
    22295: [("role", "")],
    22296: [("role", "backup"), ("candidate", "")],
    22297: [("candidate", "")],
}


def key(port: int) -> InstanceKey:
    return InstanceKey("testhost", port)


def keys_json(*ports: int) -> list[dict[str, Any]]:
    return [{"Hostname": "testhost", "Port": port} for port in ports]


@pytest.fixture
async def api(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await store.write_batch(
        [snapshot(MASTER), *(snapshot(f"testhost:{port}", MASTER) for port in PORTS[1:])]
    )
    for port, tags in TAGS.items():
        for name, value in tags:
            await store.put_tag(key(port), Tag(name, value, has_value=True))
    context = ApiContext(settings=Settings(), store=store)
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        client.app_context = context  # type: ignore[attr-defined]
        yield client


async def test_store_tags(store: Store) -> None:
    await store.put_tag(key(1), Tag("role", "backup", has_value=True))
    await store.put_tag(key(1), Tag("role", "delayed", has_value=True))  # replaces
    await store.put_tag(key(1), Tag("candidate"))
    await store.put_tag(key(2), Tag("role", "backup", has_value=True))
    assert [str(t) for t in await store.instance_tags(key(1))] == ["candidate=", "role=delayed"]
    assert await store.tags_by_instance() == {
        key(1): {"role": "delayed", "candidate": ""},
        key(2): {"role": "backup"},
    }
    assert await store.untag(key(1), Tag("role", "backup", has_value=True)) == []
    assert await store.untag(None, Tag("role", "backup", has_value=True)) == [key(2)]
    assert await store.untag(key(1), Tag("role")) == [key(1)]
    assert await store.instance_tags(key(2)) == []


async def test_reads(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/tags/testhost/22296")).json() == ["candidate=", "role=backup"]
    assert (await api.get("/api/tags/testhost/22299")).json() == []
    assert (await api.get("/api/tag-value/testhost/22293?tag=role")).json() == "backup"
    assert (await api.get("/api/tag-value/testhost/22293/role")).json() == "backup"
    assert (await api.get("/api/tag-value/testhost/22295?tag=role")).json() == ""
    missing = await api.get("/api/tag-value/testhost/22295?tag=no-such-tag")
    assert missing.status_code == 404
    assert missing.json()["Message"] == "tag no-such-tag not found for testhost:22295"
    for search, ports in [
        ("role", (22293, 22294, 22295, 22296)),
        ("role=backup", (22293, 22296)),
        ("role=", (22295,)),
        ("~role", (22297,)),
        ("role,~candidate", (22293, 22294, 22295)),
        ("~role=backup", (22294, 22295)),
        ("role=delayed,candidate", ()),
    ]:
        answer = await api.get("/api/tagged", params={"tag": search})
        assert answer.json() == keys_json(*ports), search
    bad = await api.get("/api/tagged?tag=")
    assert (bad.status_code, bad.json()["Message"]) == (400, "no tag given")
    assert (await api.get("/api/tags/testhost/x")).status_code == 400


async def test_tag_and_untag(api: httpx.AsyncClient, store: Store) -> None:
    tagged = await api.post("/api/tag/testhost/22294", params={"tag": "priority=low"})
    assert tagged.status_code == 200
    assert tagged.json() == {
        "Code": "OK",
        "Message": "testhost:22294 tagged with priority=low",
        "Details": {"Hostname": "testhost", "Port": 22294},
    }
    assert (await api.get("/api/tag/testhost/22294/dc/east")).status_code == 200
    assert (await api.get("/api/tags/testhost/22294")).json() == [
        "dc=east",
        "priority=low",
        "role=delayed",
    ]
    unknown = await api.post("/api/tag/testhost/22299?tag=role")
    assert unknown.status_code == 404
    negated = await api.post("/api/tag/testhost/22294?tag=~role")
    assert negated.status_code == 400
    assert (await api.post("/api/tag/testhost/22294")).status_code == 400  # no tag

    nothing = (await api.post("/api/untag/testhost/22293?tag=candidate")).json()
    assert (nothing["Message"], nothing["Details"]) == ("candidate removed from 0 instances", [])
    assert (await api.post("/api/untag/testhost/22293?tag=role=delayed")).json()["Details"] == []
    removed = (await api.post("/api/untag/testhost/22293/role")).json()
    assert (removed["Message"], removed["Details"]) == (
        "role removed from 1 instances",
        keys_json(22293),
    )
    everywhere = await api.post("/api/untag-all", params={"tag": "role=backup"})
    assert everywhere.json()["Details"] == keys_json(22296)
    assert (await api.get("/api/untag-all/role/delayed")).json()["Details"] == keys_json(22294)
    by_name_only = await api.post("/api/untag-all?tag=role")
    assert by_name_only.status_code == 400
    assert "either indicate an instance or a tag value" in by_name_only.json()["Message"]
    assert (await api.post("/api/untag/testhost/22295?tag=~role")).status_code == 400
    assert (await store.tags_by_instance())[key(22295)] == {"role": ""}

    audit = await store.audit_log(limit=10)
    assert [(e.type, e.message, e.user) for e in reversed(audit)] == [
        ("put-instance-tag", "priority=low", "anonymous"),
        ("put-instance-tag", "dc=east", "anonymous"),
        ("delete-instance-tag", "role= from testhost:22293", "anonymous"),
        ("delete-instance-tag", "role=backup from 1 instances", "anonymous"),
        ("delete-instance-tag", "role=delayed from 1 instances", "anonymous"),
    ]


async def test_forgotten_instances_lose_their_tags(api: httpx.AsyncClient, store: Store) -> None:
    assert (await api.post("/api/forget/testhost/22296")).status_code == 200
    assert (await api.get("/api/tags/testhost/22296")).json() == []
    assert key(22296) not in await store.tags_by_instance()
    assert (await api.post(f"/api/forget-cluster/{MASTER}")).status_code == 200
    assert await store.tags_by_instance() == {}


async def test_topology_tags(api: httpx.AsyncClient) -> None:
    answer = (await api.get("/api/topology-tags/testhost/22294")).json()
    plain = (await api.get("/api/topology/testhost/22294")).json()
    assert answer["Code"] == "OK"
    lines, plain_lines = answer["Details"].split("\n"), plain["Details"].split("\n")
    assert len(lines) == len(plain_lines) == 5
    expected = {
        "testhost:22293": "[role=backup]",
        "testhost:22294": "[role=delayed]",
        "testhost:22295": "[role]",
        "testhost:22296": "[candidate,role=backup]",
        "testhost:22297": "[candidate]",
    }
    for line, bare in zip(lines, plain_lines, strict=True):
        name = bare.split()[0] if not bare.startswith(("+", "-")) else bare.split()[1]
        assert line == f"{bare} {expected[name]}"
    assert (await api.get("/api/topology-tags/nowhere")).status_code == 404


async def test_cli(api: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]) -> None:
    context = api.app_context  # type: ignore[attr-defined]
    async with serve_cli(context, capsys) as cli:
        assert await cli("-c", "tags", "-i", "testhost:22296") == (
            0,
            "candidate=\nrole=backup\n",
            "",
        )
        assert await cli("-c", "tags", "-i", "testhost:22295") == (0, "role=\n", "")
        assert await cli("-c", "tag-value", "-i", "testhost:22293", "-tag", "role") == (
            0,
            "backup\n",
            "",
        )
        code, out, err = await cli("-c", "tag-value", "-i", "testhost:22295", "-t", "nope")
        assert (code, out) == (1, "")
        assert "tag nope not found" in err
        assert await cli("-c", "tagged", "--tag", "role,~candidate") == (
            0,
            "testhost:22293\ntesthost:22294\ntesthost:22295\n",
            "",
        )
        assert await cli("-c", "tag", "-i", "testhost:22294", "-tag", "priority=low") == (
            0,
            "testhost:22294\n",
            "",
        )
        assert await cli("-c", "untag", "-i", "testhost:22293", "-tag", "role=delayed") == (
            0,
            "",
            "",
        )
        assert await cli("-c", "untag", "-i", "testhost:22293", "-tag", "role") == (
            0,
            "testhost:22293\n",
            "",
        )
        assert await cli("-c", "untag-all", "-tag", "role=backup") == (0, "testhost:22296\n", "")
        code, out, err = await cli("-c", "untag-all", "-tag", "role")
        assert (code, out) == (1, "")
        assert "either indicate an instance or a tag value" in err
        code, out, _ = await cli("-c", "topology-tags", "-i", "testhost:22294")
        assert code == 0
        assert out.splitlines()[1].endswith("[priority=low,role=delayed]")
