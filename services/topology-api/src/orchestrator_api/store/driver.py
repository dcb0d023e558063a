"""The port each backend implements: run SQL, inside or outside a transaction.

SQL is written once, with ``?`` placeholders; the PostgreSQL driver renumbers them to ``$n``.
Drivers translate their library's errors into :class:`StoreError`; nothing above them sees an
aiosqlite or asyncpg exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from orchestrator_api.store.schema import Dialect

Row = Sequence[Any]


class Transaction(Protocol):
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
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
