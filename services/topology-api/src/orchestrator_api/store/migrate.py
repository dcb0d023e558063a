"""Bringing a database's schema up to this release: the pending migrations of
:mod:`orchestrator_api.store.schema`, applied in one transaction under the schema lock, so
processes starting together on one database migrate it once."""

from __future__ import annotations

import logging
import time
import uuid

from orchestrator_api.store.driver import Driver
from orchestrator_api.store.schema import (
    LATEST_VERSION,
    SCHEMA_VERSION_TABLE,
    STORE_IDENTITY,
    pending,
    render,
)
from orchestrator_shared.errors import StoreError

log = logging.getLogger(__name__)


async def migrate(driver: Driver) -> int:
    """Apply the pending migrations in one transaction; the schema version now in force."""
    async with driver.transaction() as tx:
        await driver.lock_schema(tx)
        await tx.execute(render(SCHEMA_VERSION_TABLE, driver.dialect))
        applied = {int(row[0]) for row in await tx.fetch("SELECT version FROM schema_version")}
        newest = max(applied, default=0)
        if newest > LATEST_VERSION:
            raise StoreError(
                f"the database has schema version {newest}, newer than this release knows "
                f"({LATEST_VERSION}); upgrade orchestrator"
            )
        fresh = not applied
        for migration in pending(applied):
            for statement in migration.statements:
                await tx.execute(render(statement, driver.dialect))
            if migration.version == STORE_IDENTITY:
                identity = uuid.uuid4().hex[:16] if fresh else ""
                await tx.execute("INSERT INTO store_identity VALUES (1, ?)", identity)
            await tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                migration.version,
                migration.description,
                time.time(),
            )
            log.info("store schema migrated to version %d", migration.version)
    return max(newest, LATEST_VERSION)
