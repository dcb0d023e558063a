"""Request paths (issue 10): every route with and without a trailing slash, never a redirect;
``URLPrefix``; and the leadership routes answered from the leader reports. The real
application over ASGI, on routes that do not read the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.http.paths import route_path, without_trailing_slash
from orchestrator_shared.bus import LeaderEvent, LeaderIdentity
from orchestrator_shared.config import Settings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LEADING = LeaderEvent(
    leader=LeaderIdentity(id="w-2", host="worker-host", pid=9, started_at=NOW),
    fencing_token=5,
    since=NOW,
    observed_at=NOW,
)
NONE_LEADS = LeaderEvent(leader=None, observed_at=NOW)


@dataclass
class Reports:
    """What :class:`~orchestrator_api.leadership.LeaderWatch` would have heard."""

    latest: LeaderEvent | None = None


class Store:
    """Only what /api/health asks of the store."""

    async def ping(self) -> None:
        return None


def client(
    *, prefix: str = "", reports: Reports | None = None, **settings: Any
) -> httpx.AsyncClient:
    context = ApiContext(
        settings=Settings(URLPrefix=prefix, **settings), store=cast(Any, Store()), leader=reports
    )
    transport = httpx.ASGITransport(app=create_app(context))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with client() as c:
        yield c


def test_path_helpers() -> None:
    assert without_trailing_slash("/api/downtimed/") == "/api/downtimed"
    assert without_trailing_slash("/api/x//") == "/api/x"
    assert without_trailing_slash("/") == "/"
    scope = {"path": "/orchestrator/api/x", "root_path": "/orchestrator"}
    assert route_path(scope) == "/api/x"
    assert route_path({"path": "/api/x"}) == "/api/x"


async def test_trailing_slash_answers_as_without_on_get_and_post(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/lb-check"),
        ("GET", "/api/leader-check/429"),
        ("GET", "/api/automated-recovery-filters"),
        ("POST", "/api/reload-cluster-alias"),
        ("GET", "/api/no-such-route"),
    ]:
        plain = await api.request(method, path)
        slashed = await api.request(method, path + "/")
        assert plain.status_code == slashed.status_code, path
        assert not 300 <= slashed.status_code < 400, path
        assert slashed.json() == plain.json(), path
    # a query string after the slash, as orchestrator-client sends tagged/?tag=...
    answer = await api.get("/api/leader-check/503/?ignored=1")
    assert (answer.status_code, answer.json()) == (200, "OK")
    missing = await api.get("/api/no-such-route/")
    assert missing.json()["Message"] == "no such route: /api/no-such-route"


async def test_url_prefix_serves_everything_below_it_and_nothing_else() -> None:
    async with client(prefix="orchestrator/") as api:
        assert (await api.get("/orchestrator/api/lb-check")).json() == "OK"
        assert (await api.get("/orchestrator/api/lb-check/")).json() == "OK"
        outside = await api.get("/api/lb-check")
        assert outside.status_code == 404
        assert outside.json() == {
            "Code": "ERROR",
            "Message": "no such route: /api/lb-check (the API is under URLPrefix /orchestrator)",
            "Details": None,
        }
        assert (await api.get("/orchestratorx/api/lb-check")).status_code == 404
        for mount in ("/orchestrator", "/orchestrator/"):  # the web UI's page
            page = await api.get(mount)
            assert page.status_code == 200
            assert 'src="/orchestrator/ui/app.js"' in page.text
        unknown = await api.get("/orchestrator/api/nothing")
        assert unknown.json()["Message"] == "no such route: /orchestrator/api/nothing"
        # the OpenAPI page points below the prefix
        docs = await api.get("/orchestrator/docs")
        assert docs.status_code == 200
        assert "/orchestrator/openapi.json" in docs.text
        assert (await api.get("/orchestrator/openapi.json")).status_code == 200
        assert (await api.get("/orchestrator/metrics")).status_code == 200


async def test_leader_check_with_a_status_code() -> None:
    async with client(reports=Reports(NONE_LEADS)) as api:
        plain = await api.get("/api/leader-check")
        assert plain.status_code == 503
        assert plain.json()["Message"] == "No active recovery worker: none leads"
        assert (await api.get("/api/leader-check/429")).status_code == 429
        assert (await api.get("/api/routed-leader-check")).status_code == 503
        for bad in ("abc", "99", "600", "-1", "2OO"):
            refused = await api.get(f"/api/leader-check/{bad}")
            assert refused.status_code == 400, bad
            assert "errorStatusCode" in refused.json()["Message"]
    async with client(reports=Reports(LEADING)) as api:
        assert (await api.get("/api/leader-check/429")).json() == "OK"
        assert (await api.get("/api/routed-leader-check")).json() == "OK"


async def test_raft_routes_follow_the_reports() -> None:
    reports = Reports()
    async with client(reports=reports) as api:
        assert (await api.get("/api/raft-state")).json() == "Follower"
        health = await api.get("/api/raft-health")
        assert health.status_code == 503
        assert health.json()["Message"] == (
            "unhealthy: no recovery worker leads (no report from the coordinator yet)"
        )
        reports.latest = NONE_LEADS
        assert (await api.get("/api/raft-state")).json() == "Candidate"
        leader = await api.get("/api/raft-leader")
        assert leader.status_code == 503
        assert leader.json()["Message"] == "raft-leader: no recovery worker leads (none leads)"
        reports.latest = LEADING
        assert (await api.get("/api/raft-state")).json() == "Leader"
        assert (await api.get("/api/raft-leader")).json() == "w-2@worker-host"
        assert (await api.get("/api/raft-health")).json() == "healthy"
        status = (await api.get("/api/status")).json()["Details"]
        assert (status["Hostname"], status["RaftLeader"]) == ("worker-host", "w-2@worker-host")
    async with client() as api:  # no leader watch at all
        answer = await api.get("/api/raft-state")
        assert answer.status_code == 503
        assert "follows no leader election" in answer.json()["Message"]


async def test_automated_recovery_filters_and_retired_calls() -> None:
    async with client(
        RecoverMasterClusterFilters=["alias=bars", "*"], RecoverIntermediateMasterClusterFilters=[]
    ) as api:
        answer = (await api.get("/api/automated-recovery-filters")).json()
        assert answer["Code"] == "OK"
        details = answer["Details"]
        assert details["RecoverMasterClusterFilters"] == ["alias=bars", "*"]
        assert details["RecoverIntermediateMasterClusterFilters"] == []
        expected = {"RecoverMasterClusterFilters", "RecoverIntermediateMasterClusterFilters"}
        if "RecoveryIgnoreHostnameFilters" in Settings.model_fields:
            expected.add("RecoveryIgnoreHostnameFilters")
        assert set(details) == expected
        retired = await api.get("/api/reload-cluster-alias")
        assert retired.status_code == 410
        assert retired.json()["Message"] == "This API call has been retired"
