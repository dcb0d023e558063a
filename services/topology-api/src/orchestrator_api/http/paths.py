"""Request paths as orchestrator's router takes them: every route with or without a trailing
slash, and everything under ``URLPrefix``.

orchestrator's router answers ``/api/downtimed/`` as ``/api/downtimed``, and orchestrator-client
relies on it: it calls ``move-up-replicas/h/p/``, ``repoint-replicas/h/p/``, ``downtimed/`` and
``tagged/?tag=...`` when no ``-i``/``-d``/``-alias`` fills the last segment. Starlette would
answer those with a 307 redirect and an empty body, which curl without ``-L`` prints as nothing:
the command silently does nothing. This ASGI layer, the outermost of the application, rewrites
the path before anything routes it, so the short path of :mod:`.hot`, authorization, the routes
and the request metrics all see the same path, and no route ever answers a redirect:

* trailing slashes are removed (``/api/downtimed/`` is ``/api/downtimed``; ``/`` stays);
  the mount point itself is its root: ``/orchestrator`` is ``/orchestrator/``, the web UI;
* with ``URLPrefix`` (e.g. ``/orchestrator``), a request must start with it: it becomes the
  request's ``root_path`` (ASGI's mount point, which Starlette's routing strips and the
  OpenAPI page uses for its links), and a path outside it is answered 404 with orchestrator's
  error envelope.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator_api.http.errors import error_response


def route_path(scope: Scope) -> str:
    """The request's path below its ``root_path`` (below ``URLPrefix``): what routes match."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def without_trailing_slash(path: str) -> str:
    """``/api/x/`` → ``/api/x``; ``/`` stays ``/``."""
    return path.rstrip("/") or "/"


class PathNormalizer:
    """See the module docstring; ``prefix`` is the normalized ``URLPrefix`` (``""``: none)."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (the API serves no websockets)
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        changes: dict[str, object] = {}
        if self.prefix:
            mount = root + self.prefix
            if path != mount and not path.startswith(mount + "/"):
                answer = error_response(
                    404, f"no such route: {path} (the API is under URLPrefix {self.prefix})"
                )
                await answer(scope, receive, send)
                return
            changes["root_path"] = mount
        trimmed = without_trailing_slash(path)
        if self.prefix and trimmed == root + self.prefix:
            trimmed += "/"  # the page at the mount point: route "/" below root_path
        if trimmed != path:
            changes["path"] = trimmed
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):
                changes["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app({**scope, **changes} if changes else scope, receive, send)
