"""The embedded backend: one SQLite file through aiosqlite, in WAL mode.

Two connections: one for writes, serialized by a lock (SQLite has one writer anyway, and
``BEGIN IMMEDIATE`` keeps other processes out too), and one for reads, which in WAL mode never
wait for a writer and see committed data only. sqlite3 errors become :class:`StoreError` here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator_api.store.driver import Row, Transaction
from orchestrator_api.store.schema import Dialect
from orchestrator_api.store.sql import SqlStore, store_on
from orchestrator_shared.errors import StoreError

BUSY_TIMEOUT_MS = 5000


class _SqliteTransaction:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, *args: Any) -> int:
        async with _translated(), self._connection.execute(sql, args) as cursor:
            return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with _translated():
            await self._connection.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with _translated(), self._connection.execute(sql, args) as cursor:
            return list(await cursor.fetchall())


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (sqlite3.Error, ValueError) as exc:
        # aiosqlite raises ValueError once its connection is closed.
        raise StoreError(f"SQLite: {exc}") from exc


async def _use_wal(connection: aiosqlite.Connection) -> None:
    """Switch the file to WAL (it stays so). Changing the journal mode ignores busy_timeout
    and fails while another connection opens the same file, so retry for a while."""
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            async with connection.execute("PRAGMA journal_mode") as cursor:
                row = await cursor.fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            await connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)


class SqliteDriver:
    dialect = Dialect.SQLITE

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteDriver:
        path.parent.mkdir(parents=True, exist_ok=True)
        connections: list[aiosqlite.Connection] = []
        try:
            async with _translated():
                for _ in range(2):
                    connection = await aiosqlite.connect(path, isolation_level=None)
                    connections.append(connection)
                    await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                    await _use_wal(connection)
                    await connection.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            for connection in connections:
                await connection.close()
            raise
        return cls(connections[0], connections[1])

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await _SqliteTransaction(self._reader).fetch(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._write_lock:
            tx = _SqliteTransaction(self._writer)
            await tx.execute("BEGIN IMMEDIATE")
            try:
                yield tx
                await tx.execute("COMMIT")
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        # No transaction left to roll back, or the connection is gone: nothing to undo.
        with suppress(sqlite3.Error, ValueError):
            await self._writer.execute("ROLLBACK")

    async def lock_schema(self, tx: Transaction) -> None:
        """``BEGIN IMMEDIATE`` already holds the database's write lock."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for connection in (self._reader, self._writer):
            with suppress(sqlite3.Error, ValueError):
                await connection.close()


async def open_sqlite_store(path: Path | str) -> SqlStore:
    """Open (creating and migrating as needed) the SQLite store in ``path``."""
    return await store_on(await SqliteDriver.open(Path(path)))
