"""The coordinator's HTTP surface: ``/status`` (JSON), ``/health``, ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_coordinator.observer import ElectionStatus


def create_app(status: Callable[[], ElectionStatus], metrics: CoordinatorMetrics) -> Starlette:
    async def get_status(_request: Request) -> JSONResponse:
        return JSONResponse(status().to_json())

    async def get_health(_request: Request) -> JSONResponse:
        """200 while etcd answers (a leader may or may not be present), else 503."""
        current = status()
        body = {"etcd_reachable": current.etcd_reachable, "leader_present": current.has_leader}
        return JSONResponse(body, status_code=200 if current.etcd_reachable else 503)

    async def get_metrics(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/status", get_status),
            Route("/api/status", get_status),
            Route("/health", get_health),
            Route("/metrics", get_metrics),
        ]
    )
