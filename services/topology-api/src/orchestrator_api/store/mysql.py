"""The MySQL/MariaDB backend (orchestrator's ``BackendDB: "mysql"``): an aiomysql pool on the
database ``MySQLOrchestratorDatabase``; several API replicas may share it.

Each session runs ``READ COMMITTED`` (as PostgreSQL does: a read sees what was committed when it
started, and the ``store_state`` row update serializes writers), with ``ANSI_QUOTES``,
``PIPES_AS_CONCAT`` and strict mode, so the store's SQL means there what it means on SQLite and
PostgreSQL; :mod:`.mysql_dialect` rewrites the few constructs MySQL lacks. Migrations take
``GET_LOCK('orchestrator.schema.<database>')``, so replicas starting together migrate one after
the other. MySQL commits each DDL statement by itself, so a migration interrupted halfway is
resumed at the next start: a table, column or index that exists already is kept when it is the
one the migration creates (a table of the same name with other columns stops start-up).

aiomysql/PyMySQL and socket errors become :class:`StoreError` here, never with the password in
them; a connection that failed is dropped and the pool opens a new one on next use, so the
store recovers by itself once the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import pymysql

from orchestrator_adapters.mysql_client import GuardedConnection, connect_guarded
from orchestrator_api.store.driver import Row, Transaction
from orchestrator_api.store.mysql_dialect import Translated, translate
from orchestrator_api.store.mysql_transaction import MySQLTransaction, Result, TableKeys, errno
from orchestrator_api.store.schema import Dialect
from orchestrator_api.store.sql import SqlStore, store_on
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError, StoreError
from orchestrator_shared.mysql_tls import client_tls_context

log = logging.getLogger(__name__)

SQL_MODE = (
    "ANSI_QUOTES,PIPES_AS_CONCAT,STRICT_ALL_TABLES,ONLY_FULL_GROUP_BY,NO_ZERO_IN_DATE,"
    "NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
# Tables of orchestrator's own (Go) backend schema: such a database is not ours to migrate.
ORCHESTRATOR_TABLES = ("orchestrator_db_deployments", "database_instance")
_UNKNOWN_DATABASE = 1049
# The server refuses writes: read_only (1290), a read-only transaction (1792), read-only mode.
_READ_ONLY = frozenset({1290, 1792, 1836})
_FIRST_CLIENT_ERRNO = 2000  # CR_* client errors (lost connection, cannot connect, ...)
_ERRORS = (pymysql.err.MySQLError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True, kw_only=True)
class MySQLBackend:
    """Where the store lives: orchestrator's ``MySQLOrchestrator*`` settings."""

    host: str
    port: int = 3306
    database: str
    user: str
    password: str = field(default="", repr=False)
    use_tls: bool = False
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_skip_verify: bool = False
    max_connections: int = 128
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    reject_read_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MySQLBackend:
        return cls(
            host=settings.MySQLOrchestratorHost,
            port=settings.MySQLOrchestratorPort,
            database=settings.MySQLOrchestratorDatabase,
            user=settings.MySQLOrchestratorUser,
            password=settings.MySQLOrchestratorPassword,
            use_tls=settings.MySQLOrchestratorUseMutualTLS,
            ssl_ca_file=settings.MySQLOrchestratorSSLCAFile,
            ssl_cert_file=settings.MySQLOrchestratorSSLCertFile,
            ssl_key_file=settings.MySQLOrchestratorSSLPrivateKeyFile,
            ssl_skip_verify=settings.MySQLOrchestratorSSLSkipVerify,
            max_connections=settings.MySQLOrchestratorMaxPoolConnections,
            connect_timeout=settings.MySQLConnectTimeoutSeconds,
            read_timeout=settings.MySQLOrchestratorReadTimeoutSeconds,
            reject_read_only=settings.MySQLOrchestratorRejectReadOnly,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    @property
    def schema_lock(self) -> str:
        """The ``GET_LOCK`` name migrations take (at most 64 characters)."""
        return f"orchestrator.schema.{self.database}"[:64]


def tls_context(backend: MySQLBackend) -> ssl.SSLContext | None:
    """The TLS context of ``MySQLOrchestratorUseMutualTLS``; None without TLS."""
    if not backend.use_tls:
        return None
    try:
        return client_tls_context(
            "MySQLOrchestrator",
            ca_file=backend.ssl_ca_file,
            cert_file=backend.ssl_cert_file,
            key_file=backend.ssl_key_file,
            skip_verify=backend.ssl_skip_verify,
        )
    except ConfigError as exc:
        raise StoreError(str(exc)) from None


def describe(exc: BaseException, backend: MySQLBackend) -> str:
    """One line for an aiomysql/PyMySQL/socket error (they never hold the password)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {_deadline(backend):g} s"
    code = errno(exc)
    if code is not None and len(exc.args) > 1:
        text = f"({code}) {str(exc.args[1]).splitlines()[0]}"
        cause = exc.__cause__
        if code >= _FIRST_CLIENT_ERRNO and cause is not None and str(cause):
            text += f": {str(cause).splitlines()[0]}"  # why it cannot connect (TLS, DNS, ...)
        return text
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


class _StoreConnection(GuardedConnection):
    tls_setting = "MySQLOrchestratorUseMutualTLS"


class _QuietCursor(aiomysql.Cursor):  # type: ignore[misc]
    """A cursor that leaves server warnings alone (aiomysql's turns each into a Python warning,
    after a ``SHOW WARNINGS`` round trip); ``CREATE TABLE IF NOT EXISTS`` raises a note."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


class MySQLDriver:
    dialect = Dialect.MYSQL

    def __init__(self, pool: Any, backend: MySQLBackend) -> None:
        self._pool = pool
        self.backend = backend
        self._closed = False
        self._keys: dict[str, TableKeys] = {}

    @classmethod
    async def open(cls, backend: MySQLBackend) -> MySQLDriver:
        context = tls_context(backend)
        try:
            pool = await cls._connect(backend, context)
        except StoreError as exc:
            if errno(exc.__cause__) != _UNKNOWN_DATABASE:
                raise
            await cls._create_database(backend, context)
            pool = await cls._connect(backend, context)
        driver = cls(pool, backend)
        try:
            await driver._refuse_orchestrator_schema()
        except BaseException:
            await driver.close()
            raise
        return driver

    @classmethod
    async def _connect(
        cls, backend: MySQLBackend, context: ssl.SSLContext | None, *, database: bool = True
    ) -> Any:
        arguments: dict[str, Any] = {
            "host": backend.host,
            "port": backend.port,
            "user": backend.user,
            "password": backend.password,
            "db": backend.database if database else None,
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": backend.connect_timeout,
            "ssl": context,
            "sql_mode": f"'{SQL_MODE}'",
            "init_command": ISOLATION,
            "cursorclass": _QuietCursor,
        }
        async with _translated(backend), asyncio.timeout(_deadline(backend)):
            # One guarded connection first: it refuses a cleartext password plugin without TLS,
            # and a failed TLS handshake (a certificate that does not verify) closes its socket,
            # where aiomysql's pool would leak one. Then the pool, which now succeeds.
            (await connect_guarded(_StoreConnection, **arguments)).close()
            return await aiomysql.create_pool(
                minsize=1, maxsize=backend.max_connections, **arguments
            )

    @classmethod
    async def _create_database(cls, backend: MySQLBackend, context: ssl.SSLContext | None) -> None:
        """``CREATE DATABASE`` when it is missing, as orchestrator does."""
        pool = await cls._connect(backend, context, database=False)
        driver = cls(pool, backend)
        try:
            name = backend.database.replace("`", "``")
            async with driver.transaction() as tx:
                await tx.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
            log.info("store: created database %s on %s:%d", name, backend.host, backend.port)
        finally:
            await driver.close()

    async def _refuse_orchestrator_schema(self) -> None:
        placeholders = ", ".join("?" for _ in ORCHESTRATOR_TABLES)
        found = await self.fetch(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({placeholders})",
            *ORCHESTRATOR_TABLES,
        )
        if found:
            raise StoreError(
                f"MySQLOrchestratorDatabase: {self.backend.database} holds the tables of "
                f"orchestrator's own schema ({found[0][0]}); give this store a database of its "
                "own (it fills from discovery within one poll)"
            )

    # --- running statements ------------------------------------------------------------------
    async def run(
        self, connection: Any, sql: str, args: Sequence[Any] = (), *, wait: float = 0.0
    ) -> Result:
        """One statement (``%s`` placeholders) on ``connection``; ``wait``: how long the server
        may hold it on top of the usual deadline (``GET_LOCK``)."""
        async with (
            self._guarded(connection),
            asyncio.timeout(wait + _deadline(self.backend)),
            connection.cursor() as cursor,
        ):
            await cursor.execute(sql, tuple(args))
            rows: list[Row] = [tuple(row) for row in await cursor.fetchall()]
            # the OK packet's info ("Rows matched: 1  Changed: 0  Warnings: 0") is not public
            info = getattr(cursor._result, "message", None) or b""
            text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
            return Result(rows, max(cursor.rowcount, 0), cursor.lastrowid or 0, text)

    async def run_many(
        self, connection: Any, statement: Translated, params: list[tuple[Any, ...]]
    ) -> None:
        async with (
            self._guarded(connection),
            asyncio.timeout(_deadline(self.backend)),
            connection.cursor() as cursor,
        ):
            if statement.bulk:
                await cursor.executemany(statement.sql, params)
                return
            for row in params:  # aiomysql cannot batch parameters after VALUES (...)
                await cursor.execute(statement.sql, row)

    @asynccontextmanager
    async def _guarded(self, connection: Any) -> AsyncIterator[None]:
        try:
            yield
        except _ERRORS as exc:
            code = errno(exc)
            if code in _READ_ONLY and self.backend.reject_read_only:
                connection.close()  # MySQLOrchestratorRejectReadOnly: reconnect, maybe elsewhere
            elif code is None or code >= _FIRST_CLIENT_ERRNO:
                connection.close()  # it may hold half a reply
            raise StoreError(f"MySQL {self.backend.where}: {describe(exc, self.backend)}") from exc

    async def table_keys(self, connection: Any, table: str) -> TableKeys:
        known = self._keys.get(table)
        if known is not None:
            return known
        found = await self.run(
            connection,
            "SELECT COLUMN_NAME, COLUMN_KEY, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table,),
        )
        primary = tuple(str(name) for name, key, _ in found.rows if key == "PRI")
        auto = next((str(n) for n, _, extra in found.rows if "auto_increment" in str(extra)), None)
        if not primary:
            raise StoreError(f"MySQL: table {table} has no primary key to find rows by")
        keys = TableKeys(primary, auto)
        self._keys[table] = keys
        return keys

    # --- the Driver port ---------------------------------------------------------------------
    async def _acquire(self) -> Any:
        if self._closed:
            raise StoreError(f"MySQL {self.backend.where}: the store is closed")
        async with _translated(self.backend), asyncio.timeout(_deadline(self.backend)):
            return await self._pool.acquire()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        statement = translate(sql)
        if statement.returning is not None:
            async with self.transaction() as tx:
                return await tx.fetch(sql, *args)
        connection = await self._acquire()
        try:
            return (await self.run(connection, statement.sql, statement.args(args))).rows
        finally:
            self._pool.release(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        connection = await self._acquire()
        tx = MySQLTransaction(self, connection)
        try:
            await self.run(connection, "START TRANSACTION")
            yield tx
            await self.run(connection, "COMMIT")
        except BaseException:
            await asyncio.shield(self._end(tx, rollback=True))
            raise
        await asyncio.shield(self._end(tx, rollback=False))

    async def _end(self, tx: MySQLTransaction, *, rollback: bool) -> None:
        """Roll back if asked, give up the schema lock, and only then return the connection
        to the pool: shielded as one, so a cancelled caller never leaves a connection in the
        pool that is still busy."""
        connection = tx.connection
        try:
            if rollback:
                with suppress(StoreError):  # the connection is gone: the server rolled back
                    await self.run(connection, "ROLLBACK")
            if tx.schema_lock is not None:
                self._keys.clear()  # a migration may have changed them
                try:
                    await self.run(connection, "SELECT RELEASE_LOCK(%s)", (tx.schema_lock,))
                except StoreError:
                    connection.close()  # the server frees the lock with the session
        finally:
            self._pool.release(connection)

    async def lock_schema(self, tx: Transaction) -> None:
        assert isinstance(tx, MySQLTransaction)
        name, wait = self.backend.schema_lock, self.backend.read_timeout
        got = await self.run(tx.connection, "SELECT GET_LOCK(%s, %s)", (name, wait), wait=wait)
        if got.rows[0][0] != 1:
            raise StoreError(
                f"MySQL {self.backend.where}: another process held the schema lock {name!r} "
                f"for {wait:g} s (a migration still running?)"
            )
        tx.schema_lock = name

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _abort_tls(self._pool)
        self._pool.close()
        try:
            async with asyncio.timeout(_deadline(self.backend)):
                await self._pool.wait_closed()
        except TimeoutError:
            self._pool.terminate()
            await self._pool.wait_closed()


def _abort_tls(pool: Any) -> None:
    """Drop the TLS connections of the pool at once. A TLS transport's ``close()`` first waits
    for the server's close_notify, and its socket outlives the driver when the event loop stops
    meanwhile (MySQL needs no TLS shutdown; :class:`GuardedConnection` closes the same way)."""
    for connection in pool._free:  # aiomysql keeps no public list of its idle connections
        writer = connection._writer
        if writer is not None and writer.get_extra_info("sslcontext") is not None:
            writer.transport.abort()


def _deadline(backend: MySQLBackend) -> float:
    """How long one statement (or getting a connection for it) may take."""
    return backend.connect_timeout + backend.read_timeout


@asynccontextmanager
async def _translated(backend: MySQLBackend) -> AsyncIterator[None]:
    try:
        yield
    except _ERRORS as exc:
        raise StoreError(f"MySQL {backend.where}: {describe(exc, backend)}") from exc


async def open_mysql_store(backend: MySQLBackend) -> SqlStore:
    """Connect to the MySQL/MariaDB database of ``backend`` (creating it when missing) and
    migrate its schema as needed."""
    return await store_on(await MySQLDriver.open(backend))
