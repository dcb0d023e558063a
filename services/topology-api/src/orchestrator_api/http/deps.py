"""FastAPI dependencies: who is calling (``ReadAccess`` / ``AdminAccess``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from orchestrator_api.auth import Denied, Principal, Role, authorize
from orchestrator_api.http.errors import ApiError
from orchestrator_shared.config import Settings


def _require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        settings: Settings = request.app.state.settings
        found = authorize(settings, request.headers, role)
        if isinstance(found, Denied):
            raise ApiError(found.status, found.message, headers=found.headers)
        return found

    return dependency


ReadAccess = Annotated[Principal, Depends(_require(Role.READ))]
AdminAccess = Annotated[Principal, Depends(_require(Role.ADMIN))]
