"""The shared backend: PostgreSQL through an asyncpg pool; several API replicas may share it.

Migrations take a transaction-scoped advisory lock, so replicas starting together migrate one
after the other. SQL arrives with ``?`` placeholders and is renumbered to ``$n``. asyncpg and
socket errors become :class:`StoreError` here; the pool reconnects by itself once the server is
back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from orchestrator_api.store.driver import Row, Transaction
from orchestrator_api.store.schema import Dialect
from orchestrator_api.store.sql import SqlStore, store_on
from orchestrator_api.store.sqltext import placeholders
from orchestrator_shared.errors import StoreError

# pg_advisory_xact_lock key for migrations: "orch" in ASCII.
MIGRATION_LOCK_KEY = 0x6F726368
DEFAULT_TIMEOUT_SECONDS = 5.0


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``?`` placeholders renumbered as PostgreSQL's ``$1, $2, ...`` (a ``?`` in quoted text
    stays)."""
    pieces, last = [], 0
    for number, offset in enumerate(placeholders(sql), start=1):
        pieces += [sql[last:offset], f"${number}"]
        last = offset + 1
    return "".join(pieces) + sql[last:]


# InternalClientError: a connection whose server died in the middle of an operation refuses
# the next one ("cannot switch to state ..."); it is the same outage, not a bug of ours.
_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except _ERRORS as exc:
        raise StoreError(f"PostgreSQL: {exc or type(exc).__name__}") from exc


def _count(status: str) -> int:
    """Rows changed, from a command status such as ``DELETE 3`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresTransaction:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def execute(self, sql: str, *args: Any) -> int:
        async with _translated():
            return _count(await self._connection.execute(numbered(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with _translated():
            await self._connection.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with _translated():
            return list(await self._connection.fetch(numbered(sql), *args))


async def _rollback(transaction: Any) -> None:
    with suppress(*_ERRORS):  # if the connection is gone, the server rolls back by itself
        await transaction.rollback()


class PostgresDriver:
    dialect = Dialect.POSTGRES

    def __init__(self, pool: Any, *, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_connections: int = 10,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> PostgresDriver:
        async with _translated():
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_connections,
                command_timeout=timeout_seconds,
                timeout=timeout_seconds,
            )
        return cls(pool, timeout=timeout_seconds)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with _translated():
            return list(await self._pool.fetch(numbered(sql), *args, timeout=self._timeout))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with _translated():
            connection = await self._pool.acquire(timeout=self._timeout)
        try:
            async with _translated():
                transaction = connection.transaction()
                await transaction.start()
            try:
                yield _PostgresTransaction(connection)
                async with _translated():
                    await transaction.commit()
            except BaseException:
                await asyncio.shield(_rollback(transaction))
                raise
        finally:
            await asyncio.shield(self._release(connection))

    async def _release(self, connection: Any) -> None:
        try:
            await self._pool.release(connection, timeout=self._timeout)
        except _ERRORS:
            connection.terminate()

    async def lock_schema(self, tx: Transaction) -> None:
        await tx.fetch("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK_KEY)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(self._timeout):
                await self._pool.close()
        except (*_ERRORS,):
            self._pool.terminate()


async def open_postgres_store(
    dsn: str, *, max_connections: int = 10, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> SqlStore:
    """Connect to PostgreSQL at ``dsn`` and migrate its schema as needed."""
    return await store_on(
        await PostgresDriver.open(
            dsn, max_connections=max_connections, timeout_seconds=timeout_seconds
        )
    )
