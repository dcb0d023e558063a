"""What runs inside one MySQL transaction: statements translated by :mod:`.mysql_dialect`,
their ``RETURNING`` plans, PostgreSQL's row counts, and the resumption of a migration an earlier
process left half done (see :mod:`.mysql`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql

from orchestrator_api.store.driver import Row
from orchestrator_api.store.mysql_dialect import (
    ChangeReturning,
    Count,
    InsertReturning,
    Translated,
    created_columns,
    refused,
    translate,
)
from orchestrator_shared.errors import StoreError

if TYPE_CHECKING:
    from orchestrator_api.store.mysql import MySQLDriver

log = logging.getLogger(__name__)

_TABLE_EXISTS = 1050
# What a resumed migration finds done already: duplicate column, key name, entry; nothing to drop.
_ALREADY_DONE = frozenset({1060, 1061, 1062, 1091})
_MATCHED = re.compile(r"Rows matched:\s*(\d+)")
_CREATE_IF_NOT_EXISTS = re.compile(r"\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


def errno(exc: BaseException | None) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[Row]
    affected: int
    last_id: int
    info: str


@dataclass(frozen=True, slots=True)
class TableKeys:
    primary_key: tuple[str, ...]
    auto_increment: str | None


class MySQLTransaction:
    """One connection inside ``START TRANSACTION``; ``migrating`` once it holds the schema
    lock (a resumed migration's "exists already" errors are then expected)."""

    def __init__(self, driver: MySQLDriver, connection: Any) -> None:
        self._driver = driver
        self.connection = connection
        self.schema_lock: str | None = None

    async def execute(self, sql: str, *args: Any) -> int:
        statement = translate(sql)
        if statement.returning is not None:
            return len(await self._returning(statement, args))
        if self.schema_lock is not None:
            exists = _CREATE_IF_NOT_EXISTS.match(sql)
            if exists and await self._columns(exists.group(1)):
                # what IF NOT EXISTS would do, without MySQL's check of the CREATE privilege,
                # so that a user with the data privileges alone can open a migrated store
                return 0
        try:
            result = await self._driver.run(self.connection, statement.sql, statement.args(args))
        except StoreError as exc:
            if self.schema_lock is None or not await self._done_already(sql, exc):
                raise
            return 0
        return count(statement, result)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        statement = translate(sql)
        params = [statement.args(row) for row in rows]
        if params:
            await self._driver.run_many(self.connection, statement, params)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        statement = translate(sql)
        if statement.returning is not None:
            return await self._returning(statement, args)
        return (await self._driver.run(self.connection, statement.sql, statement.args(args))).rows

    # --- RETURNING ------------------------------------------------------------------------
    async def _returning(self, statement: Translated, args: Sequence[Any]) -> list[Row]:
        plan = statement.returning
        if isinstance(plan, InsertReturning):
            return await self._insert_returning(statement, plan, args)
        assert isinstance(plan, ChangeReturning)
        return await self._change_returning(plan, args)

    async def _insert_returning(
        self, statement: Translated, plan: InsertReturning, args: Sequence[Any]
    ) -> list[Row]:
        run = self._driver.run
        result = await run(self.connection, statement.sql, statement.args(args))
        if count(statement, result) == 0:
            return []  # a duplicate DO NOTHING, or an upsert whose WHERE kept the stored row
        keys = await self._driver.table_keys(self.connection, plan.table)
        by: list[str] = list(plan.target)
        if not by and keys.auto_increment and keys.auto_increment not in plan.values:
            found = await run(
                self.connection,
                f"SELECT {plan.columns} FROM {plan.table} WHERE {keys.auto_increment} = %s",
                (result.last_id,),
            )
            return found.rows
        by = by or list(keys.primary_key)
        missing = [column for column in by if column not in plan.values]
        if missing:
            raise refused(statement.main.text, f"RETURNING needs {', '.join(missing)} inserted")
        where = " AND ".join(f"{column} = ({plan.values[column].pyformat})" for column in by)
        values = tuple(arg for column in by for arg in plan.values[column].args(args))
        found = await run(
            self.connection, f"SELECT {plan.columns} FROM {plan.table} WHERE {where}", values
        )
        return found.rows

    async def _change_returning(self, plan: ChangeReturning, args: Sequence[Any]) -> list[Row]:
        """Lock the rows the statement selects, change exactly those, answer them."""
        run = self._driver.run
        keys = (await self._driver.table_keys(self.connection, plan.table)).primary_key
        columns = f"{plan.table}.*" if plan.columns.strip() == "*" else plan.columns
        where = f" WHERE {plan.where.pyformat}" if plan.where else ""
        where_args = plan.where.args(args) if plan.where else ()
        wanted = f", {columns}" if plan.assignments is None else ""
        locked = await run(
            self.connection,
            f"SELECT {', '.join(keys)}{wanted} FROM {plan.table}{where} FOR UPDATE",
            where_args,
        )
        if not locked.rows:
            return []
        chosen = [tuple(row[: len(keys)]) for row in locked.rows]
        holder = f"({', '.join(['%s'] * len(keys))})"
        matching = f"({', '.join(keys)}) IN ({', '.join([holder] * len(chosen))})"
        matching_args = tuple(value for key in chosen for value in key)
        if plan.assignments is None:
            await run(self.connection, f"DELETE FROM {plan.table} WHERE {matching}", matching_args)
            return [tuple(row[len(keys) :]) for row in locked.rows]
        await run(
            self.connection,
            f"UPDATE {plan.table} SET {plan.assignments.pyformat} WHERE {matching}",
            plan.assignments.args(args) + matching_args,
        )
        found = await run(
            self.connection, f"SELECT {columns} FROM {plan.table} WHERE {matching}", matching_args
        )
        return found.rows

    # --- resuming an interrupted migration ---------------------------------------------------
    async def _done_already(self, sql: str, exc: StoreError) -> bool:
        """Whether ``exc`` says a migration statement was applied by an earlier, interrupted
        run (then it is skipped); a table of the same name that is not ours stops start-up."""
        code = errno(exc.__cause__) if exc.__cause__ is not None else None
        if code in _ALREADY_DONE:
            log.warning("store migration: kept what an interrupted migration did: %s", exc)
            return True
        if code != _TABLE_EXISTS:
            return False
        created = created_columns(sql)
        if created is None:
            return False
        table, columns = created
        existing = await self._columns(table)
        if existing != columns:
            raise StoreError(
                f"MySQL {self._driver.backend.where}: table {table} exists but is not this "
                f"store's (columns {', '.join(sorted(existing))}); MySQLOrchestratorDatabase "
                "must name a database of its own"
            ) from None
        log.warning("store migration: kept table %s, created by an interrupted migration", table)
        return True

    async def _columns(self, table: str) -> frozenset[str]:
        """The column names of ``table`` in lower case (none: no such table)."""
        found = await self._driver.run(
            self.connection,
            "SELECT LOWER(COLUMN_NAME) FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (table,),
        )
        return frozenset(str(row[0]) for row in found.rows)


def count(statement: Translated, result: Result) -> int:
    """PostgreSQL's row count (see :class:`Count`)."""
    if statement.count is Count.MATCHED:
        matched = _MATCHED.search(result.info)
        return int(matched.group(1)) if matched else result.affected
    if statement.count is Count.ROWS:
        return statement.rows
    if statement.count is Count.AT_MOST_ROWS:
        return min(result.affected, statement.rows)
    return max(result.affected, 0)
