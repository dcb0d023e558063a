"""orchestrator's API-side settings through the real application and store (SQLite and
PostgreSQL) and, for candidates, the etcd mirror the recovery workers read:
``ReasonableReplicationLagSeconds`` and ``CandidateInstanceExpireMinutes``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from orchestrator_adapters.etcd import EtcdClient, EtcdOptions
from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import Store
from orchestrator_shared.config import Settings
from orchestrator_shared.etcd.recovery import OperatorState
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from tests.integration.test_api import client_for
from tests.integration.test_store import NOW, snapshot

pytestmark = pytest.mark.integration

CHECKED = NOW + timedelta(seconds=1)  # the clock of the API: the snapshots are fresh


def lagging(key: str, seconds: int) -> Any:
    return snapshot(key, "db1:3306").model_copy(update={"replication_lag_seconds": seconds})


async def lagging_keys(store: Store, **settings: Any) -> tuple[list[str], list[str], list[str]]:
    """Who ``/api/problems``, the instance answers and the cluster answer call lagging."""
    async with client_for(store, clock=lambda: CHECKED, **settings) as api:
        problems = (await api.get("/api/problems")).json() or []
        instances = [(await api.get(f"/api/instance/db{n}/3306")).json() for n in (2, 3)]
        cluster = (await api.get("/api/cluster/db1:3306")).json()

    def named(answers: list[Any]) -> list[str]:
        return sorted(
            f"{a['Key']['Hostname']}" for a in answers if "replication_lag" in a["Problems"]
        )

    return named(problems), named(instances), named(cluster)


async def test_replication_lag_problems_follow_the_setting(store: Store) -> None:
    await store.write_batch([snapshot("db1:3306"), lagging("db2:3306", 30), lagging("db3:3306", 5)])
    assert await lagging_keys(store) == (["db2"], ["db2"], ["db2"])  # orchestrator's 10 s
    assert await lagging_keys(store, ReasonableReplicationLagSeconds=60) == ([], [], [])
    both = ["db2", "db3"]
    assert await lagging_keys(store, ReasonableReplicationLagSeconds=4) == (both, both, both)


async def test_candidates_expire_after_candidate_instance_expire_minutes(
    store: Store, etcd_server: Any
) -> None:
    await store.write_batch([snapshot("db1:3306"), snapshot("db2:3306", "db1:3306")])
    etcd = EtcdClient(EtcdOptions(endpoints=(etcd_server.endpoint,)))
    state = OperatorState(etcd)
    moment = {"now": CHECKED}
    try:
        for node, minutes in (("db2", 5), ("db1", None)):  # None: the default
            given = {} if minutes is None else {"CandidateInstanceExpireMinutes": minutes}
            settings = Settings.model_validate(given)
            context = ApiContext(settings=settings, store=store, operator_state=state)
            context.clock = lambda: moment["now"]
            transport = httpx.ASGITransport(app=create_app(context))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
                moment["now"] = CHECKED
                answer = await api.post(f"/api/register-candidate/{node}/3306/prefer")
                assert answer.status_code == 200, answer.text

                async def rule(at: datetime, node: str = node) -> str:
                    moment["now"] = at
                    body = (await api.get(f"/api/instance/{node}/3306")).json()
                    return str(body["PromotionRule"])

                limit = timedelta(minutes=minutes or 60)
                assert await rule(CHECKED + limit - timedelta(seconds=1)) == "prefer"
                assert await rule(CHECKED + limit + timedelta(seconds=1)) == "neutral"
        # the recovery workers' copy expires with the store's
        db2, db1 = InstanceKey.parse("db2:3306"), InstanceKey.parse("db1:3306")
        soon = await state.candidates(CHECKED + timedelta(minutes=4))
        assert soon == {db2: PromotionRule.PREFER, db1: PromotionRule.PREFER}
        later = await state.candidates(CHECKED + timedelta(minutes=6))
        assert later == {db1: PromotionRule.PREFER}
        assert await state.candidates(CHECKED + timedelta(minutes=61)) == {}
    finally:
        await etcd.close()


async def test_the_status_check_is_served_on_status_endpoint_too(store: Store) -> None:
    async with client_for(store, StatusEndpoint="/lb/health") as api:
        for path in ("/lb/health", "/api/status"):
            answer = await api.get(path)
            assert answer.status_code == 200, path
            assert answer.json()["Message"] == "Application node is healthy"
