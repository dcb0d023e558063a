"""The services' probe and metrics listener (``orchestrator_adapters.observability``) over real
HTTP on loopback: /health follows the event loop's heartbeat, /ready the service's own answer
(503 with the reason, also when the check itself fails), /metrics the registry; anything else
is 404; a taken port is an OSError at start; leaving the context frees the port."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from prometheus_client import CollectorRegistry, Counter

from orchestrator_adapters.observability import Heartbeat, ObservabilityServer
from tests.harness.ports import free_ports
from tests.harness.process import http_get

pytestmark = pytest.mark.integration


def answer(port: int, path: str) -> tuple[int, dict[str, str]]:
    got = http_get(f"http://127.0.0.1:{port}{path}")
    assert got is not None, path
    return got[0], json.loads(got[1])


async def test_health_ready_and_metrics() -> None:
    registry = CollectorRegistry()
    Counter("orchestrator_test_things", "things", registry=registry).inc(3)
    why = ["the fleet is not read yet"]
    heartbeat = Heartbeat()
    beating = asyncio.create_task(heartbeat.run())
    (port,) = free_ports(1)
    try:
        with ObservabilityServer(
            "127.0.0.1", port, registry=registry, ready=lambda: why[0], heartbeat=heartbeat
        ):
            assert await asyncio.to_thread(answer, port, "/health") == (200, {"status": "alive"})
            assert await asyncio.to_thread(answer, port, "/ready") == (
                503,
                {"status": "not ready", "reason": "the fleet is not read yet"},
            )
            why[0] = ""
            assert await asyncio.to_thread(answer, port, "/ready") == (200, {"status": "ready"})
            metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
            assert metrics is not None and metrics[0] == 200
            assert "orchestrator_test_things_total 3.0" in metrics[1].decode()
            status, _ = await asyncio.to_thread(answer, port, "/debug")
            assert status == 404
    finally:
        beating.cancel()
    assert http_get(f"http://127.0.0.1:{port}/health") is None  # stopped with the context
    with socket.socket() as again:  # and the port is free for a restarted service to take
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_a_silent_event_loop_is_not_alive_and_a_failing_check_is_not_ready() -> None:
    heartbeat = Heartbeat()  # nothing runs it: the loop "stopped" when it was made

    def broken() -> str:
        raise RuntimeError("boom")

    (port,) = free_ports(1)
    with ObservabilityServer(
        "127.0.0.1",
        port,
        registry=CollectorRegistry(),
        ready=broken,
        heartbeat=heartbeat,
        stale_after=0.0,
    ):
        status, body = answer(port, "/health")
        assert status == 503 and body["status"] == "stuck", body
        assert answer(port, "/ready") == (
            503,
            {"status": "not ready", "reason": "readiness check failed: RuntimeError"},
        )


def test_a_taken_port_is_an_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            ObservabilityServer(
                "127.0.0.1", port, registry=CollectorRegistry(), ready=str, heartbeat=Heartbeat()
            )
