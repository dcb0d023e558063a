"""The web UI's routes: ``/`` (the page), ``/ui/<asset>`` and orchestrator's ``/web/...`` pages.

Everything here needs the read role, as ``GET /api/...`` does; under basic authentication the
browser prompts once and sends the credentials with the page's own API calls. The page learns
``URLPrefix`` from the request's ``root_path`` (set by :class:`~..http.paths.PathNormalizer`):
``index.html`` carries it in a ``<meta>`` element and in its asset URLs, so it works wherever
it is served, with or without a trailing slash.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from orchestrator_api.http.deps import ReadAccess
from orchestrator_api.http.errors import NotFound

STATIC = Path(__file__).parent / "static"
PREFIX_MARK = "__URL_PREFIX__"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@cache
def _index_template() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


def _prefix(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


@router.api_route("/", methods=["GET", "HEAD"])
async def index(request: Request, _: ReadAccess) -> Response:
    page = _index_template().replace(PREFIX_MARK, _escaped(_prefix(request)))
    return Response(page, media_type="text/html; charset=utf-8", headers=NO_CACHE)


def asset_path(name: str) -> Path | None:
    """The file under ``static/`` that ``name`` names, or None (unknown type, outside, absent)."""
    if not name or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    found = (STATIC / name).resolve()
    if STATIC.resolve() not in found.parents or found.suffix not in CONTENT_TYPES:
        return None
    return found if found.is_file() else None


@router.api_route("/ui/{name:path}", methods=["GET", "HEAD"])
async def asset(name: str, _: ReadAccess) -> Response:
    found = asset_path(name)
    if found is None:
        raise NotFound(f"no such UI asset: {name}")
    return Response(found.read_bytes(), media_type=CONTENT_TYPES[found.suffix], headers=NO_CACHE)


# orchestrator's pages → the page's hash routes
_WEB = {
    "": "clusters",
    "/home": "clusters",
    "/clusters": "clusters",
    "/search": "clusters",
    "/clusters-analysis": "problems",
    "/audit": "audit",
    "/audit-failure-detection": "recoveries",
    "/audit-recovery": "recoveries",
    "/discover": "discover",
    "/status": "status",
    "/agents": "status",
    "/seed-shell": "status",
}


def _redirect(request: Request, route: str) -> RedirectResponse:
    return RedirectResponse(f"{_prefix(request)}/#/{route}", status_code=302)


@router.get("/web")
async def web_home(request: Request, _: ReadAccess) -> RedirectResponse:
    return _redirect(request, "clusters")


@router.get("/web/cluster/alias/{alias}")
async def web_cluster_alias(alias: str, request: Request, _: ReadAccess) -> RedirectResponse:
    return _redirect(request, f"cluster/{quote(alias, safe=':')}")


@router.get("/web/cluster/{name}")
async def web_cluster(name: str, request: Request, _: ReadAccess) -> RedirectResponse:
    return _redirect(request, f"cluster/{quote(name, safe=':')}")


@router.get("/web/{page:path}")
async def web_page(page: str, request: Request, _: ReadAccess) -> RedirectResponse:
    """Any other ``/web/...`` page: its new home, or the clusters page (``/web/search?s=``:
    the clusters page filtered by the search)."""
    route = _WEB.get("/" + page.split("/", maxsplit=1)[0], "clusters")
    search = request.query_params.get("s", "").strip()
    if page == "search" and search:
        route += "?q=" + quote(search, safe="")
    return _redirect(request, route)
