"""The FastAPI application: routes, errors, health, metrics, OpenAPI at /docs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator_adapters.observability import ALIVE, readiness
from orchestrator_api import wire
from orchestrator_api.http import (
    routes,
    routes_checks,
    routes_compat,
    routes_history,
    routes_live,
    routes_maintenance,
    routes_moves,
    routes_operations,
    routes_raft,
    routes_recovery,
    routes_recovery_acks,
    routes_recovery_state,
    routes_tags,
    routes_takeover,
)
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.errors import install_error_handlers
from orchestrator_api.http.host_guard import HostGuard
from orchestrator_api.http.hot import HotReads
from orchestrator_api.http.paths import PathNormalizer
from orchestrator_api.http.request_guard import allowed_hosts
from orchestrator_api.ui import routes as ui_routes
from orchestrator_api.wire.timefmt import go_datetime
from orchestrator_shared.bus import LeaderEvent
from orchestrator_shared.redact import redact

API_VERSION = "0.1.0"
# what load balancers, kubelets and Prometheus ask for by address: served under any Host
PROBE_PATHS = frozenset(
    {
        "/api/health",
        "/api/status",
        "/api/leader-check",
        "/api/_ping",
        "/api/lb-check",
        "/metrics",
        "/health",
        "/ready",
    }
)
# /ready's bound on the store's answer: a probe gets "not ready" rather than its own timeout
READY_STORE_TIMEOUT_SECONDS = 2.0


log = logging.getLogger(__name__)
UNHEALTHY = "Application node is unhealthy: its store does not answer (see the API's log)"


class StoreErrors:
    """The health answer when the store fails says only that: ``/api/health`` answers anyone
    (load balancers, probes), and a database error names hosts, users, paths. The text goes to
    the log (redacted), once per distinct error rather than once per probe."""

    def __init__(self) -> None:
        self._last = ""

    def failed(self, exc: Exception) -> str:
        text = redact(f"{type(exc).__name__}: {exc}")
        if text != self._last:
            self._last = text
            log.warning("health: the store does not answer: %s", text)
        return UNHEALTHY

    def answered(self) -> None:
        self._last = ""  # the next failure is logged again


def create_app(
    context: ApiContext,
    *,
    registry: CollectorRegistry | None = None,
    short_path: bool = True,
) -> FastAPI:
    """The API over ``context``. ``short_path``: answer hot reads without FastAPI's routing
    (:mod:`.hot`); off only to check that both paths answer the same."""
    app = FastAPI(
        title="Orchestrator API",
        version=API_VERSION,
        description="orchestrator-compatible REST API for MySQL/MariaDB topologies "
        "(see docs/api.md).",
        redirect_slashes=False,  # PathNormalizer serves both forms; never an empty 307
    )
    app.state.context = context
    app.state.settings = context.settings
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes_history.router)
    app.include_router(routes_recovery.router)
    app.include_router(routes_recovery_acks.router)
    app.include_router(routes_recovery_state.router)
    app.include_router(routes_operations.router)
    app.include_router(routes_moves.router)
    # maintenance and tags routers go here
    app.include_router(routes_maintenance.router)
    app.include_router(routes_tags.router)
    app.include_router(routes_takeover.router)
    app.include_router(routes_compat.router)  # orchestrator-client compatibility (issue 10)
    app.include_router(routes_raft.router)
    app.include_router(routes_live.router)  # web UI: whoami, the live stream (issue 11)
    app.include_router(routes_checks.router)  # web UI: drop checks (issue 11)
    app.include_router(ui_routes.router)  # the web UI (issue 11)
    metrics_registry = registry or CollectorRegistry()
    requests = Counter(
        "orchestrator_api_requests",
        "API requests answered, by route template, method and status",
        ["route", "method", "status"],
        registry=metrics_registry,
    )
    latency = Histogram(
        "orchestrator_api_request_duration_seconds",
        "Time to answer an API request, by route template",
        ["route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        registry=metrics_registry,
    )

    # the short path for hot reads, inside the request metrics (added last = outermost)
    if short_path:
        app.add_middleware(HotReads, context=context, routes=app.routes)
    app.add_middleware(RequestMetrics, requests=requests, latency=latency)
    # DNS rebinding: only the API's own host names (docs/security.md)
    app.add_middleware(
        HostGuard,
        allowed=allowed_hosts(context.settings),
        exempt=frozenset(PROBE_PATHS | {context.settings.StatusEndpoint}),
    )
    # outermost: trailing slashes and URLPrefix, before anything routes the request
    app.add_middleware(PathNormalizer, prefix=context.settings.URLPrefix)

    store_errors = StoreErrors()

    @app.get("/api/health")
    async def health(context: Context) -> dict[str, Any]:
        try:
            await context.store.ping()
        except Exception as exc:
            return wire.error_envelope(store_errors.failed(exc))
        store_errors.answered()
        hostname = socket.gethostname()
        # reads are served from the store whatever the bus does: a bus outage is reported,
        # it does not make the node unhealthy (a load balancer keeps sending it reads)
        bus = await context.discovery.bus_problem() if context.discovery is not None else None
        leader = context.leader.latest if context.leader is not None else None
        identity = leader.leader if leader is not None else None
        return wire.ok_envelope(
            "Application node is healthy",
            {
                "Healthy": True,
                # the node that acts (orchestrator's leader: what orchestrator-client's
                # raft-leader-hostname prints), this API's own host while none leads
                "Hostname": identity.host if identity is not None else hostname,
                "Token": "",
                "IsActiveNode": True,
                # the active recovery worker (orchestrator's active node), as the coordinator
                # last reported it; null while none leads or before the first report
                "ActiveNode": _active_node(leader) if leader is not None and identity else None,
                "Error": None,
                "AvailableNodes": [],
                "RaftLeader": routes_raft.leader_name(leader) if leader is not None else "",
                "IsRaftLeader": False,
                "RaftLeaderURI": "",
                "RaftAdvertise": "",
                "RaftHealthyMembers": None,
                "BusHealthy": bus is None,
                "BusError": bus,
            },
        )

    @app.get("/api/status")
    async def status(context: Context) -> Response:
        answer = await health(context)
        code = 200 if answer["Code"] == "OK" else 500
        return JSONResponse(answer, status_code=code)

    if context.settings.StatusEndpoint != "/api/status":  # orchestrator's StatusEndpoint
        app.add_api_route(context.settings.StatusEndpoint, status, include_in_schema=False)

    @app.get("/api/leader-check", response_model=None)
    async def leader_check(context: Context) -> str | JSONResponse:
        return routes_raft.leader_check_answer(context)  # see routes_raft

    @app.get("/api/_ping")
    async def ping() -> Response:
        return Response("OK", media_type="text/plain")

    @app.get("/api/lb-check")
    async def lb_check() -> str:
        return "OK"

    @app.get("/health", include_in_schema=False)
    async def alive() -> dict[str, str]:
        """Liveness: the event loop answers this itself, so any answer means it turns."""
        return ALIVE

    @app.get("/ready", include_in_schema=False)
    async def ready(context: Context) -> JSONResponse:
        """Readiness: the store answers and the bus consumer keeping it current is connected
        (docs/observability.md says why etcd and the leader are not asked)."""
        status, body = readiness(await why_not_ready(context, store_errors))
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def why_not_ready(context: ApiContext, store_errors: StoreErrors) -> str:
    """Why this API cannot serve current answers now ('' when it can). The reasons name no
    host or error text: ``/ready`` answers anyone; the store's error goes to the log."""
    try:
        async with asyncio.timeout(READY_STORE_TIMEOUT_SECONDS):
            await context.store.ping()
    except Exception as exc:
        store_errors.failed(exc)
        return "the store does not answer"
    store_errors.answered()
    if context.feed is None:
        return "no bus consumer feeds the store"
    if not context.feed.is_connected:
        return "the store's bus consumer is not connected to NATS"
    return ""


def _active_node(event: LeaderEvent) -> dict[str, Any]:
    identity = event.leader
    assert identity is not None
    return {
        "Hostname": identity.host,
        "Token": str(event.fencing_token),
        "AppVersion": "",
        "FirstSeenActive": go_datetime(event.since or event.observed_at),
        "LastSeenActive": go_datetime(event.observed_at),
        "ExtraInfo": f"recovery worker {identity.id} (pid {identity.pid})",
        "Command": "",
        "DBBackend": "",
        "LastReported": go_datetime(event.observed_at),
    }


class RequestMetrics:
    """Counts and times requests by route template. A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request."""

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(route, scope["method"], str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
