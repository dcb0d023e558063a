"""Requests a browser was tricked into sending, against the real API served by uvicorn on a
free loopback port (a SQLite store holding one instance): a DNS-rebound Host is refused, a
cross-site mutation (GET or POST) is refused and changes nothing, while orchestrator-client's
way (GET, no Origin, no Sec-Fetch-*) and the web UI's (a same-origin fetch) still work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import open_store
from orchestrator_shared.config import Settings
from tests.integration.api_support import run_cli, serve
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration

MASTER = "db1.example:3306"


@asynccontextmanager
async def api(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    store = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    try:
        await store.write_batch([snapshot(MASTER)])
        context = ApiContext(settings=Settings.model_validate(settings), store=store)
        async with serve(context) as url, httpx.AsyncClient(base_url=url) as client:
            yield url, client
    finally:
        await store.close()


async def alias_of(client: httpx.AsyncClient) -> str:
    infos = (await client.get("/api/clusters-info")).json()
    return str(infos[0]["ClusterAlias"])


def set_alias(alias: str) -> str:
    return f"/api/set-cluster-alias/{MASTER}?alias={alias}"


async def test_a_rebound_host_name_is_refused(tmp_path: Path) -> None:
    async with api(tmp_path) as (url, client):
        rebound = {"Host": "rebound.evil.example:3000"}
        for path in ("/api/clusters", "/", set_alias("evil")):
            answer = await client.get(path, headers=rebound)
            assert answer.status_code == 403, path
            assert "rebound.evil.example" in answer.json()["Message"]
        assert await alias_of(client) == MASTER  # unset: the cluster name
        # probes by address answer under any Host; the loopback names are the API's own
        assert (await client.get("/api/health", headers=rebound)).status_code == 200
        assert (await client.get("/metrics", headers=rebound)).status_code == 200
        assert (await client.get("/health", headers=rebound)).json() == {"status": "alive"}
        unfed = await client.get("/ready", headers=rebound)  # served without a bus consumer
        assert (unfed.status_code, unfed.json()) == (
            503,
            {"status": "not ready", "reason": "no bus consumer feeds the store"},
        )
        port = url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert (await client.get("/api/clusters", headers={"Host": host})).status_code == 200


async def test_allowed_hosts_setting(tmp_path: Path) -> None:
    async with api(tmp_path, HTTPAllowedHosts=["orchestrator.svc"]) as (_, client):
        assert (await client.get("/api/clusters", headers={"Host": "orchestrator.svc"})).is_success
        assert (await client.get("/api/clusters", headers={"Host": "other.svc"})).status_code == 403
    async with api(tmp_path, HTTPAllowedHosts=["*"]) as (_, client):
        assert (await client.get("/api/clusters", headers={"Host": "other.svc"})).is_success


async def test_cross_site_mutations_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with api(tmp_path) as (url, client):
        attacks: list[tuple[str, dict[str, str]]] = [
            ("GET", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}),  # <img src>
            ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}),  # a form
            ("POST", {"Sec-Fetch-Site": "same-site", "Origin": "http://a.127.0.0.1.nip.io"}),
            ("POST", {"Origin": "http://evil.example"}),  # a browser without Sec-Fetch-*
            ("POST", {"Origin": "null"}),  # a sandboxed frame
        ]
        for method, headers in attacks:
            answer = await client.request(method, set_alias("evil"), headers=headers)
            assert answer.status_code == 403, (method, headers)
            assert "may not change the topology" in answer.json()["Message"]
        assert await alias_of(client) == MASTER  # unset: the cluster name
        # reads are not mutations: a cross-site read is answered (the browser hides it)
        read = await client.get("/api/clusters", headers={"Sec-Fetch-Site": "cross-site"})
        assert read.status_code == 200
        # the web UI: a same-origin fetch
        ui = {"Sec-Fetch-Site": "same-origin", "Origin": url}
        assert (await client.post(set_alias("ui"), headers=ui)).status_code == 200
        assert await alias_of(client) == "ui"
        # orchestrator-client: curl, a GET, neither Origin nor Sec-Fetch-*
        assert (await client.get(set_alias("curl"))).status_code == 200
        assert await alias_of(client) == "curl"
        # our CLI
        code, _ = await asyncio.to_thread(
            run_cli, url, "-c", "set-cluster-alias", "-i", MASTER, "-alias", "cli"
        )
        assert code == 0
        assert await alias_of(client) == "cli"


async def test_get_mutations_can_be_refused(tmp_path: Path) -> None:
    async with api(tmp_path, HTTPRefuseGETMutations=True) as (_, client):
        answer = await client.get(set_alias("get"))
        assert answer.status_code == 405
        assert "POST only" in answer.json()["Message"]
        assert await alias_of(client) == MASTER  # unset: the cluster name
        assert (await client.post(set_alias("post"))).status_code == 200
        assert await alias_of(client) == "post"
        # reads stay on GET
        assert (await client.get("/api/clusters")).status_code == 200


async def test_a_proxy_header_from_an_untrusted_peer_is_refused(tmp_path: Path) -> None:
    """The gateway is 127.0.0.2 (TrustedProxyCIDRs); a client on 127.0.0.1 that sends the
    header itself, even with an X-Forwarded-For naming the gateway, is refused."""
    settings = {
        "AuthenticationMethod": "proxy",
        "TrustedProxyCIDRs": ["127.0.0.2/32"],
        "PowerAuthUsers": ["alice"],
    }
    async with api(tmp_path, **settings) as (url, direct):
        gateway = httpx.AsyncClient(
            base_url=url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        )
        async with gateway:
            alice = {"X-Forwarded-User": "alice"}
            spoofed = {**alice, "X-Forwarded-For": "127.0.0.2", "X-Real-IP": "127.0.0.2"}
            for method, path in (("POST", set_alias("spoofed")), ("GET", "/api/clusters")):
                answer = await direct.request(method, path, headers=spoofed)
                assert answer.status_code == 401, path
                assert "TrustedProxyCIDRs" in answer.json()["Message"]
            assert (await gateway.get("/api/clusters-info", headers=alice)).json()[0][
                "ClusterAlias"
            ] == MASTER  # nothing changed
            # through the gateway: alice may change things, bob (not a power user) may read
            assert (await gateway.post(set_alias("alice"), headers=alice)).status_code == 200
            bob = {"X-Forwarded-User": "bob"}
            assert (await gateway.post(set_alias("bob"), headers=bob)).status_code == 403
            infos = (await gateway.get("/api/clusters-info", headers=bob)).json()
            assert infos[0]["ClusterAlias"] == "alice"


async def test_proxy_power_users_default_to_nobody(tmp_path: Path) -> None:
    async with api(tmp_path, AuthenticationMethod="proxy") as (_, client):
        carol = {"X-Forwarded-User": "carol"}
        answer = await client.post(set_alias("carol"), headers=carol)
        assert answer.status_code == 403
        assert "needs the admin role" in answer.json()["Message"]
        assert (await client.get("/api/clusters", headers=carol)).status_code == 200
