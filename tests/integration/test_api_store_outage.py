"""PostgreSQL down under a running ``orchestrator-topology-api`` (issue 13, fault injection):
the topology reads keep answering from memory (what discovery last reported), what needs the
database answers 503 with a clear message, health says the store is down, and when PostgreSQL
is back the API catches up by itself (no restart): snapshots published during the outage
appear."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests import harness
from tests.integration.api_process import instances_shown, launch_api, publish_snapshots
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import stop

pytestmark = pytest.mark.integration


async def test_reads_survive_a_postgres_outage_and_writes_catch_up(
    nats_server: harness.NatsLike, postgres_cluster: harness.PostgresLike, tmp_path: Path
) -> None:
    config = {
        "NATSServers": [nats_server.url],
        "BackendDB": "postgres",
        "PostgreSQLDSN": postgres_cluster.dsn,
    }
    process, url = launch_api(config, tmp_path)
    try:
        await publish_snapshots(nats_server.url, "db1:3306", "db2:3306")
        await asyncio.to_thread(
            wait_until,
            lambda: instances_shown(url) == {"db1:3306", "db2:3306"},
            timeout=20,
            what="fleet",
        )

        await asyncio.to_thread(postgres_cluster.stop)
        # the topology from memory; what needs the database: a clear 503
        assert await asyncio.to_thread(instances_shown, url) == {"db1:3306", "db2:3306"}
        audit = await asyncio.to_thread(httpx.get, f"{url}/api/audit", timeout=10)
        assert audit.status_code == 503, audit.text
        assert audit.json()["Message"].startswith("storage unavailable"), audit.text
        health = (await asyncio.to_thread(httpx.get, f"{url}/api/health", timeout=10)).json()
        assert health["Code"] == "ERROR", health
        ready = await asyncio.to_thread(httpx.get, f"{url}/ready", timeout=10)
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "not ready", "reason": "the store does not answer"},
        )
        assert (await asyncio.to_thread(httpx.get, f"{url}/health", timeout=10)).is_success
        await publish_snapshots(nats_server.url, "db3:3306")  # arrives while the database is down

        await asyncio.to_thread(postgres_cluster.start)
        await asyncio.to_thread(
            wait_until,
            lambda: instances_shown(url) == {"db1:3306", "db2:3306", "db3:3306"},
            timeout=30,
            what="the snapshot published during the outage written and shown",
        )
        health = (await asyncio.to_thread(httpx.get, f"{url}/api/health", timeout=10)).json()
        assert health["Code"] == "OK", health
        ready = await asyncio.to_thread(httpx.get, f"{url}/ready", timeout=10)
        assert ready.json() == {"status": "ready"}
        assert process.poll() is None
    finally:
        code, output = stop(process)
    assert code == 0, output[-3000:]
    assert "serving the fleet from memory" in output
