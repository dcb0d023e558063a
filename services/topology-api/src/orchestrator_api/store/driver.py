"""The port each backend implements: run SQL, inside or outside a transaction.

SQL is written once, with ``?`` placeholders, in the dialect SQLite and PostgreSQL share
(``ON CONFLICT ... DO UPDATE SET c = excluded.c``, ``RETURNING``); the PostgreSQL driver renumbers
the placeholders to ``$n``, the MySQL driver rewrites what MySQL lacks (:mod:`.mysql_dialect`).
Drivers translate their library's errors into :class:`StoreError`; nothing above them sees an
aiosqlite, asyncpg or aiomysql exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from orchestrator_api.store.schema import Dialect

Row = Sequence[Any]


class Transaction(Protocol):
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed (an UPDATE: the rows it matched,
        as PostgreSQL counts)."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...


class Driver(Protocol):
    dialect: Dialect

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """One read, outside any transaction (it sees committed data only)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        ...

    async def lock_schema(self, tx: Transaction) -> None:
        """Keep other processes from migrating at the same time, until ``tx`` ends."""
        ...

    async def close(self) -> None: ...
