"""FastAPI dependencies: who is calling (``ReadAccess`` / ``AdminAccess``). ``AdminAccess``,
which every mutation needs, also refuses a browser's cross-site request (:mod:`.request_guard`);
``RefuseGETMutation`` refuses a mutation on GET under ``HTTPRefuseGETMutations``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from orchestrator_api.auth import Denied, Principal, Role, authorize
from orchestrator_api.http.errors import ApiError
from orchestrator_api.http.request_guard import check_mutation_method, check_same_origin
from orchestrator_shared.config import Settings


def _require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        settings: Settings = request.app.state.settings
        if role is Role.ADMIN:
            refused = check_same_origin(
                request.headers, scheme=request.url.scheme, host_header=request.headers.get("host")
            )
            if refused is not None:
                raise ApiError(refused.status, refused.message)
        peer = request.client.host if request.client is not None else None
        found = authorize(settings, request.headers, role, peer=peer)
        if isinstance(found, Denied):
            raise ApiError(found.status, found.message, headers=found.headers)
        return found

    return dependency


ReadAccess = Annotated[Principal, Depends(_require(Role.READ))]
AdminAccess = Annotated[Principal, Depends(_require(Role.ADMIN))]


async def refuse_get_mutation(request: Request) -> None:
    """On a mutation's GET route: 405 under ``HTTPRefuseGETMutations``."""
    refused = check_mutation_method(request.app.state.settings, request.method)
    if refused is not None:
        raise ApiError(refused.status, refused.message, headers={"Allow": "POST"})
