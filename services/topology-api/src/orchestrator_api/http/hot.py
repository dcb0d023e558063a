"""A short path for the reads dashboards and proxies poll most.

``GET /api/cluster/{hint}``, ``/api/cluster/alias/{alias}``, ``/api/instance/{host}/{port}``
and ``/api/clusters-info`` are asked hundreds of times a second, and their answers are already
encoded (:class:`~orchestrator_api.http.payloads.InstanceAnswers`). Going through FastAPI's
routing and dependency solving cost more than the answer itself; this ASGI layer, in front of
the application, answers them directly when the answer is a plain success:

* authorization is the same function the routes' ``ReadAccess`` dependency calls;
* the bytes come from the same caches the routes use, so both paths answer the same;
* anything else (a denied request, an unknown cluster or instance, a malformed key, a store
  error, any other method or route) goes to the application, which answers it as usual,
  errors included. The short path never produces an error of its own.

The request metrics see these requests under the same route templates.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator_api.auth import Denied, Role, authorize
from orchestrator_api.http.context import ApiContext
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.paths import route_path
from orchestrator_api.http.routes import clusters_info_body
from orchestrator_shared.errors import OrchestratorError

_Answer = Callable[[ApiContext, re.Match[str]], Awaitable[bytes | None]]


async def _cluster_by_alias(context: ApiContext, match: re.Match[str]) -> bytes | None:
    view = await context.view()
    name = view.cluster_by_alias(match["alias"])
    return None if name is None else _cluster(context, view, name)


async def _cluster_by_hint(context: ApiContext, match: re.Match[str]) -> bytes | None:
    view = await context.view()
    name = view.resolve_cluster(match["hint"])
    return None if name is None else _cluster(context, view, name)


def _cluster(context: ApiContext, view: Any, name: str) -> bytes:
    return context.answers.cluster(
        view, name, now=context.clock(), poll=context.settings.InstancePollSeconds
    )


async def _instance(context: ApiContext, match: re.Match[str]) -> bytes | None:
    key = context.key(match["host"], match["port"])
    view = await context.view()
    node = view.instance(key)
    if node is None:
        return None
    return context.answers.instance(
        view, node, now=context.clock(), poll=context.settings.InstancePollSeconds
    )


async def _clusters_info(context: ApiContext, match: re.Match[str]) -> bytes | None:
    return clusters_info_body(context, await context.view())


# (pattern, the route template it stands for, how to answer); tried in order
_ROUTES: tuple[tuple[re.Pattern[str], str, _Answer], ...] = (
    (
        re.compile(r"/api/cluster/alias/(?P<alias>[^/]+)"),
        "/api/cluster/alias/{alias}",
        _cluster_by_alias,
    ),
    (re.compile(r"/api/cluster/(?P<hint>[^/]+)"), "/api/cluster/{hint}", _cluster_by_hint),
    (
        re.compile(r"/api/instance/(?P<host>[^/]+)/(?P<port>[^/]+)"),
        "/api/instance/{host}/{port}",
        _instance,
    ),
    (re.compile(r"/api/clusters-info"), "/api/clusters-info", _clusters_info),
)

_HEADERS = [(b"content-type", b"application/json")]


class HotReads:
    """The short path (see the module docstring); ``routes`` are the application's, for the
    route objects the request metrics label requests with."""

    def __init__(self, app: ASGIApp, *, context: ApiContext, routes: list[BaseRoute]) -> None:
        self.app = app
        self.context = context
        by_path = {getattr(route, "path", None): route for route in routes}
        self.routes = [
            (pattern, by_path.get(template), answer) for pattern, template, answer in _ROUTES
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = route_path(scope)  # under URLPrefix: the path below it
            for pattern, route, answer in self.routes:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                body = await self._answer(scope, match, answer)
                if body is None:
                    break  # not a plain success: the application answers
                scope["route"] = route
                headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, match: re.Match[str], answer: _Answer) -> bytes | None:
        context = self.context
        client = scope.get("client")
        peer = client[0] if client else None
        if isinstance(
            authorize(context.settings, Headers(scope=scope), Role.READ, peer=peer), Denied
        ):
            return None
        try:
            return await answer(context, match)
        except (ApiError, OrchestratorError):
            return None  # the application answers it, with the error it deserves
