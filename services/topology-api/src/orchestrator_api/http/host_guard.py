"""The Host allow-list as an ASGI layer (:func:`.request_guard.check_host`): inside
:class:`.paths.PathNormalizer`, before anything else reads the request."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator_api.http.errors import error_response
from orchestrator_api.http.paths import route_path
from orchestrator_api.http.request_guard import check_host


class HostGuard:
    """Answers 403 to a request whose Host is not in ``allowed`` (None: any). ``exempt``:
    paths served under any Host, the probes that load balancers and kubelets send to an
    address (health, status, metrics); they change nothing."""

    def __init__(
        self, app: ASGIApp, *, allowed: frozenset[str] | None, exempt: frozenset[str]
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed is None or route_path(scope) in self.exempt:
            await self.app(scope, receive, send)
            return
        host: str | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        denied = check_host(host, self.allowed)
        if denied is None:
            await self.app(scope, receive, send)
            return
        await error_response(denied.status, denied.message)(scope, receive, send)
