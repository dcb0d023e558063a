"""Registering a route that changes something: orchestrator serves those on GET, we also on
POST, each method with its own OpenAPI operation id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends

from orchestrator_api.http.deps import refuse_get_mutation

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def add_mutation(router: APIRouter, path: str, handler: Handler, name: str = "") -> None:
    """``path`` on GET and POST; operation ids ``<name>_get`` and ``<name>`` (``name``: the
    handler's own, unless given)."""
    operation = name or handler.__name__
    router.add_api_route(
        path,
        handler,
        methods=["GET"],
        operation_id=f"{operation}_get",
        dependencies=[Depends(refuse_get_mutation)],  # HTTPRefuseGETMutations
    )
    router.add_api_route(path, handler, methods=["POST"], operation_id=operation)


def mutation(router: APIRouter, path: str) -> Callable[[H], H]:
    """:func:`add_mutation` as a decorator."""

    def register(handler: H) -> H:
        add_mutation(router, path, handler)
        return handler

    return register
