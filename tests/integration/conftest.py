"""Fixtures the integration tests of topology-api share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator_api.store import Store, open_store
from tests.harness import PostgresDatabase


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_admin_dsn: str
) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
        try:
            yield opened
        finally:
            await opened.close()
        return
    database = PostgresDatabase(admin_dsn=postgres_admin_dsn)
    await database.create()
    try:
        opened = await open_store("postgres", postgres_dsn=database.dsn)
        try:
            yield opened
        finally:
            await opened.close()
    finally:
        await database.drop()
