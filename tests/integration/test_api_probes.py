"""The topology API's Kubernetes probes on a real ``orchestrator-topology-api`` process:
``/health`` answers while the process runs; ``/ready`` only while its store answers and its bus
consumer is connected to NATS (here: NATS stopped and started again under it). The store's
side is in test_api_store_outage.py (PostgreSQL stopped)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import harness
from tests.integration.api_process import launch_api
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import stop

pytestmark = pytest.mark.integration

NATS_DOWN = {
    "status": "not ready",
    "reason": "the store's bus consumer is not connected to NATS",
}


def probe(url: str, path: str) -> tuple[int, object]:
    answer = httpx.get(f"{url}{path}", timeout=5)
    return answer.status_code, answer.json()


def test_ready_follows_the_bus_and_health_the_process(
    nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    config = {
        "NATSServers": [nats_server.url],
        "SQLite3DataFile": str(tmp_path / "orchestrator.sqlite3"),
    }
    process, url = launch_api(config, tmp_path)
    try:
        assert probe(url, "/health") == (200, {"status": "alive"})
        assert probe(url, "/ready") == (200, {"status": "ready"})

        nats_server.stop()
        wait_until(lambda: probe(url, "/ready") == (503, NATS_DOWN), timeout=10, what="not ready")
        assert probe(url, "/health") == (200, {"status": "alive"})  # nothing to restart for

        nats_server.start()
        wait_until(
            lambda: probe(url, "/ready") == (200, {"status": "ready"}),
            timeout=15,
            what="ready again once the consumer reconnected",
        )
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'orchestrator_api_requests_total{method="GET",route="/ready",status="503"}' in (
            metrics
        )
    finally:
        code, output = stop(process)
    assert code == 0, output[-3000:]
