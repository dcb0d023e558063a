"""Fixtures the integration tests of topology-api share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_api.store import Store, open_store
from orchestrator_cli.sandbox import Sandbox
from tests.harness import MariadbDatabase, PostgresDatabase
from tests.integration.fault_support import FaultProxies
from tests.integration.stack_support import StackFactory, stack_factory


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_dsn: str
) -> AsyncIterator[Store]:
    if request.param in ("sqlite", "mysql"):
        if request.param == "sqlite":
            opened = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
        else:
            database: MariadbDatabase = request.getfixturevalue("mariadb_db")
            opened = await open_store("mysql", mysql=database.backend())
        try:
            yield opened
        finally:
            await opened.close()
        return
    postgres = PostgresDatabase(admin_dsn=postgres_admin_dsn)
    await postgres.create()
    try:
        opened = await open_store("postgres", postgres_dsn=postgres.dsn)
        try:
            yield opened
        finally:
            await opened.close()
    finally:
        await postgres.drop()


@pytest.fixture(scope="module")
def sandbox(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    """A 4-node MariaDB sandbox (node 0 the master) the tests of one module share; a module
    wanting another shape defines its own ``sandbox``."""
    return module_sandbox_factory(nodes=4)


@pytest.fixture
def make_stack(
    sandbox_factory: Callable[..., Sandbox], nats_server: Any, etcd_server: Any, tmp_path: Path
) -> Iterator[StackFactory]:
    """Starts a sandbox (``chain``) and the whole stack with ``settings`` added (every
    process stopped at the end; none may have failed)."""
    yield from stack_factory(sandbox_factory, nats_server, etcd_server, tmp_path)


@pytest.fixture
def fault_proxies() -> Iterator[FaultProxies]:
    """Opens fault proxies (``fault_proxies(host, port, name=...)``), all closed at the end.
    Request it before ``make_stack``: the proxies then outlive the services using them."""
    proxies = FaultProxies()
    try:
        yield proxies
    finally:
        proxies.close()
