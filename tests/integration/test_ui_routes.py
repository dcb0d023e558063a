"""The web UI's routes served by the real API (uvicorn on a free port, a SQLite store): the page,
its assets with their content types, orchestrator's ``/web/...`` pages redirecting to the new
ones, ``URLPrefix``, and the API's authentication in front of all of it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import open_store
from orchestrator_api.ui.routes import STATIC
from orchestrator_shared.config import Settings
from tests.integration.api_support import serve

pytestmark = pytest.mark.integration

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@asynccontextmanager
async def ui(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    try:
        context = ApiContext(settings=Settings.model_validate(settings), store=store)
        async with serve(context) as url, httpx.AsyncClient(base_url=url) as client:
            yield client
    finally:
        await store.close()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_the_page_and_every_asset_with_its_type(tmp_path: Path) -> None:
    async with ui(tmp_path) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert '<meta name="orchestrator-prefix" content="">' in page.text
        assert '<script type="module" src="/ui/app.js">' in page.text
        assert "__URL_PREFIX__" not in page.text
        assets = sorted(p for p in STATIC.rglob("*") if p.is_file())
        assert {p.suffix for p in assets} == set(TYPES)
        for asset in assets:
            name = asset.relative_to(STATIC).as_posix()
            answer = await client.get(f"/ui/{name}")
            assert answer.status_code == 200, name
            assert answer.headers["content-type"].startswith(TYPES[asset.suffix]), name
            assert answer.headers["cache-control"] == "no-cache"
            assert answer.content == asset.read_bytes()
        assert (await client.head("/ui/app.js")).status_code == 200


async def test_unknown_assets_and_paths_outside_are_404(tmp_path: Path) -> None:
    async with ui(tmp_path) as client:
        for path in ("/ui/nothing.js", "/ui/%2e%2e/routes.py", "/ui/..%2Froutes.py", "/ui/pages"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["Code"] == "ERROR"
        assert (await client.get("/ui/%2e%2e/__init__.py")).status_code == 404


async def test_orchestrators_pages_redirect_to_the_new_ones(tmp_path: Path) -> None:
    expected = {
        "/web": "/#/clusters",
        "/web/home": "/#/clusters",
        "/web/clusters": "/#/clusters",
        "/web/clusters-analysis": "/#/problems",
        "/web/cluster/db1:3306": "/#/cluster/db1:3306",
        "/web/cluster/alias/shop%20main": "/#/cluster/shop%20main",
        "/web/audit": "/#/audit",
        "/web/audit-failure-detection": "/#/recoveries",
        "/web/audit-recovery": "/#/recoveries",
        "/web/audit-recovery/cluster/db1:3306": "/#/recoveries",
        "/web/discover": "/#/discover",
        "/web/status": "/#/status",
        "/web/search?s=db1": "/#/clusters?q=db1",
        "/web/search": "/#/clusters",
        "/web/something-new": "/#/clusters",
    }
    async with ui(tmp_path) as client:
        for path, target in expected.items():
            answer = await client.get(path)
            assert answer.status_code == 302, path
            assert answer.headers["location"] == target, path


async def test_under_url_prefix(tmp_path: Path) -> None:
    async with ui(tmp_path, URLPrefix="/orchestrator") as client:
        for path in ("/orchestrator", "/orchestrator/"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert '<meta name="orchestrator-prefix" content="/orchestrator">' in page.text
            assert 'src="/orchestrator/ui/app.js"' in page.text
        asset = await client.get("/orchestrator/ui/api.js")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith("text/javascript")
        moved = await client.get("/orchestrator/web/clusters")
        assert moved.status_code == 302
        assert moved.headers["location"] == "/orchestrator/#/clusters"
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/ui/app.js")).status_code == 404


async def test_the_ui_needs_the_read_role_like_the_api(tmp_path: Path) -> None:
    settings = {"AuthenticationMethod": "multi", "HTTPAuthUser": "ops", "HTTPAuthPassword": "pw"}
    async with ui(tmp_path, **settings) as client:
        for path in ("/", "/ui/app.js", "/web/clusters"):
            denied = await client.get(path)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"].startswith("Basic")
            wrong = await client.get(path, headers=_basic("ops", "nope"))
            assert wrong.status_code == 401, path
        reader = _basic("readonly", "anything")
        assert (await client.get("/", headers=reader)).status_code == 200
        assert (await client.get("/ui/app.js", headers=reader)).status_code == 200
        assert (await client.get("/web/clusters", headers=reader)).status_code == 302
        assert (await client.get("/", headers=_basic("ops", "pw"))).status_code == 200
    async with ui(tmp_path, AuthenticationMethod="token", APITokens={"rd": "read"}) as client:
        assert (await client.get("/")).status_code == 401
        answer = await client.get("/ui/style.css", headers={"Authorization": "Bearer rd"})
        assert answer.status_code == 200
