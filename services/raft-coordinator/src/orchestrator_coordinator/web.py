"""The coordinator's HTTP surface: ``/status`` (JSON), the probes ``/health`` and ``/ready``,
``/metrics`` (docs/observability.md).

The server runs on the coordinator's event loop, beside the observer: any answer to ``/health``
means the loop turns, so it needs no heartbeat of its own (the workers' listener runs on a
thread and does: :mod:`orchestrator_adapters.observability`). ``/health`` also says whether etcd
answered and a worker leads, for a glance; only ``/ready`` depends on them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator_adapters.observability import ALIVE, Ready, readiness
from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_coordinator.observer import ElectionStatus


def why_not_ready(status: ElectionStatus, *, nats_connected: bool) -> str:
    """Why the coordinator cannot report the election now ('' when it can): it must read etcd
    and publish to NATS."""
    if not status.etcd_reachable:
        return "etcd unreachable"
    return "" if nats_connected else "not connected to NATS"


def create_app(
    status: Callable[[], ElectionStatus], metrics: CoordinatorMetrics, *, ready: Ready
) -> Starlette:
    async def get_status(_request: Request) -> JSONResponse:
        return JSONResponse(status().to_json())

    async def get_health(_request: Request) -> JSONResponse:
        current = status()
        return JSONResponse(
            ALIVE | {"etcd_reachable": current.etcd_reachable, "leader_present": current.has_leader}
        )

    async def get_ready(_request: Request) -> JSONResponse:
        code, body = readiness(ready())
        return JSONResponse(body, status_code=code)

    async def get_metrics(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/status", get_status),
            Route("/api/status", get_status),
            Route("/health", get_health),
            Route("/ready", get_ready),
            Route("/metrics", get_metrics),
        ]
    )
