"""The executor's MySQL/MariaDB adapter: bounded connections and statements, errors translated.

:class:`MySQLAccess` is what a recovery needs to reach servers (the topology credentials, the
connect timeout, optionally replication credentials). :class:`Links` holds one connection per
instance for the length of one recovery, so each server is connected to once; every
connect and every statement runs under a deadline, and a connection whose statement failed or
timed out is closed (it may hold half a reply) and opened again on next use. A host
``DiscoveryAllowedHostnameFilters`` refuses is never connected to: its connect fails at once.

A *fenced* statement (:meth:`Links.fenced`: every statement that changes a server) runs right
after the lease ``guard()`` and only for as long as the lease is certainly ours: its timeout is
the smaller of the statement timeout and the approval's ``valid_until``; on MariaDB the server
enforces the same bound (``SET STATEMENT max_statement_time=<s> FOR ...``), and a fenced
statement the client stops waiting for (timeout, cancellation on loss of leadership) is killed
with ``KILL QUERY``. So an old leader's statement never runs on past its lease, even when the
client is gone.

aiomysql/PyMySQL errors and timeouts become :class:`StatementFailed` here, and nowhere else.
Server warnings are not turned into Python warnings (aiomysql's default cursor does that, and
costs a ``SHOW WARNINGS`` round trip): a redundant ``STOP SLAVE`` only raises a note.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiomysql
import pymysql

from orchestrator_adapters.mysql_client import connect_guarded, describe_mysql_error
from orchestrator_adapters.ports import Guard
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import LeaseLost, OrchestratorError
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.mysql_tls import topology_tls_context

log = logging.getLogger(__name__)

Row = dict[str, Any]

_FIRST_CLIENT_ERRNO = 2000  # CR_* client errors (lost connection, cannot connect, ...)
_UNKNOWN_THREAD = 1094  # ER_NO_SUCH_THREAD
_MAX_STATEMENT_TIME_EXCEEDED = 1969  # ER_STATEMENT_TIMEOUT (MariaDB)
# Below this much lease left a fenced statement is not sent (it could not finish in time).
MIN_STATEMENT_SECONDS = 0.01
# How long killing an abandoned fenced statement may take (its own connection).
KILL_TIMEOUT_SECONDS = 1.0


# The lease guard: raises LeaseLost, or returns an approval (with ``valid_until`` on
# ``time.monotonic()`` when the election gives one; a guard may return None: no bound).


def lease_left(approval: object) -> float | None:
    """Seconds the lease is certainly ours after ``approval`` (None: the guard gave no bound)."""
    until = getattr(approval, "valid_until", None)
    return None if until is None else float(until) - time.monotonic()


def bounded_statement(sql: str, seconds: float) -> str:
    """``sql`` with MariaDB's server-side limit of ``seconds`` (rounded down to the
    millisecond, at least one: 0 would mean no limit). A statement that already carries a
    ``SET STATEMENT`` is left alone (they do not nest)."""
    if sql.lstrip()[:13].upper() == "SET STATEMENT":
        return sql
    limit = max(0.001, math.floor(seconds * 1000) / 1000)
    return f"SET STATEMENT max_statement_time={limit:.3f} FOR {sql}"


class StatementFailed(OrchestratorError):
    """A connect or a statement against one instance failed or timed out.

    ``errno`` is the MySQL error number when the server answered with one; ``timed_out``
    says the deadline passed (the server may still be working on the statement).
    """

    def __init__(
        self,
        instance: InstanceKey,
        statement: str,
        message: str,
        *,
        errno: int | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(f"{instance}: {statement}: {message}")
        self.instance = instance
        self.statement = statement
        self.message = message
        self.errno = errno
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True, kw_only=True)
class MySQLAccess:
    """How a recovery reaches servers.

    ``replication_user``/``replication_password``: set on every replica that is repointed.
    Left as None, a repointed replica keeps the replication user and password it already
    has (the password of a running replica cannot be read back on MariaDB, so this is the
    only way to change them; orchestrator reads them with ``ReplicationCredentialsQuery``).
    """

    user: str
    password: str = field(repr=False)
    connect_timeout: float = 1.0
    replication_user: str | None = None
    replication_password: str | None = field(default=None, repr=False)
    # MySQLTopologyUseMutualTLS: the TLS context of every connection (None: plain TCP)
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    # DiscoveryAllowedHostnameFilters: a host it refuses is never connected to
    hosts: HostPolicy = field(default_factory=HostPolicy)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        replication_user: str | None = None,
        replication_password: str | None = None,
    ) -> MySQLAccess:
        return cls(
            user=settings.MySQLTopologyUser,
            password=settings.MySQLTopologyPassword,
            connect_timeout=settings.MySQLConnectTimeoutSeconds,
            replication_user=replication_user,
            replication_password=replication_password,
            tls=topology_tls_context(settings),
            hosts=HostPolicy.from_settings(settings),
        )


class _QuietDictCursor(aiomysql.DictCursor):  # type: ignore[misc]
    """A dict cursor that leaves server warnings alone (no SHOW WARNINGS, no Python warning)."""

    async def _show_warnings(self, conn: Any) -> None:
        return None


class Links:
    """One connection per instance for one recovery. Use as ``async with Links(...) as links``.

    Statements on one instance run one at a time (a lock per instance: one connection cannot
    carry two at once); different instances run concurrently.
    """

    def __init__(self, access: MySQLAccess, *, statement_timeout: float) -> None:
        self._access = access
        self._statement_timeout = statement_timeout
        self._connections: dict[InstanceKey, aiomysql.Connection] = {}
        self._locks: defaultdict[InstanceKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._closed = False

    async def __aenter__(self) -> Links:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (without a COM_QUIT round trip). Idempotent."""
        self._closed = True
        for key in list(self._connections):
            self.discard(key)

    def discard(self, key: InstanceKey) -> None:
        conn = self._connections.pop(key, None)
        if conn is not None:
            with suppress(Exception):
                conn.close()

    async def _connection(self, key: InstanceKey, deadline_s: float) -> aiomysql.Connection:
        conn = self._connections.get(key)
        if conn is not None:
            return conn
        if self._closed:
            raise StatementFailed(key, "connect", "links closed")
        refusal = self._access.hosts.refusal(key)
        if refusal:
            raise StatementFailed(key, "connect", refusal)
        timeout = min(self._access.connect_timeout, deadline_s)
        try:
            async with asyncio.timeout(timeout):
                conn = await self._open(key, timeout)
        except TimeoutError:
            raise StatementFailed(
                key, "connect", f"no answer within {timeout:g}s", timed_out=True
            ) from None
        except (pymysql.err.MySQLError, OSError) as exc:
            message, errno = describe_mysql_error(exc)
            raise StatementFailed(key, "connect", message, errno=errno) from None
        self._connections[key] = conn
        return conn

    async def connect(self, key: InstanceKey, *, within: float | None = None) -> None:
        """Open (or keep) the connection to ``key`` within ``within`` seconds."""
        async with self._locks[key]:
            await self._connection(key, self._statement_timeout if within is None else within)

    async def rows(self, key: InstanceKey, sql: str, *, within: float | None = None) -> list[Row]:
        """Run one statement on ``key`` in ``within`` seconds (default: the statement timeout),
        connecting first if needed; its rows as dicts (empty when it returns none)."""
        limit = self._statement_timeout if within is None else within
        return await self._run(key, sql, limit, fenced=False)

    async def fenced(
        self, key: InstanceKey, sql: str, guard: Guard, *, within: float | None = None
    ) -> list[Row]:
        """``guard()``, then ``sql`` on ``key``, all of it inside the lease: its timeout is the
        smaller of ``within`` (default: the statement timeout) and what the approval leaves,
        enforced by the server too on MariaDB, and the statement is killed if abandoned.
        LeaseLost when the lease is lost or too nearly over to send anything."""
        approval = await guard()
        limit = self._statement_timeout if within is None else within
        left = lease_left(approval)
        if left is not None:
            if left < MIN_STATEMENT_SECONDS:
                raise LeaseLost(f"the lease ends before {shown_sql(sql)} could run on {key}")
            limit = min(limit, left)
        return await self._run(key, sql, limit, fenced=True)

    async def _run(self, key: InstanceKey, sql: str, limit: float, *, fenced: bool) -> list[Row]:
        deadline = time.monotonic() + limit
        conn: aiomysql.Connection | None = None
        try:
            async with asyncio.timeout(limit), self._locks[key]:
                conn = await self._connection(key, limit)
                sent = sql
                if fenced and _is_mariadb(conn):
                    sent = bounded_statement(sql, deadline - time.monotonic())
                async with conn.cursor() as cursor:
                    await cursor.execute(sent)
                    result = await cursor.fetchall()
        except TimeoutError:
            await self._abandon(key, conn, fenced)
            raise StatementFailed(
                key, sql, f"no answer within {limit:g}s", timed_out=True
            ) from None
        except asyncio.CancelledError:
            await self._abandon(key, conn, fenced)
            raise
        except StatementFailed:
            raise
        except (pymysql.err.MySQLError, OSError) as exc:
            message, errno = describe_mysql_error(exc)
            if errno is None or errno >= _FIRST_CLIENT_ERRNO:
                self.discard(key)  # the connection itself broke; a server error leaves it usable
            raise StatementFailed(
                key, sql, message, errno=errno, timed_out=errno == _MAX_STATEMENT_TIME_EXCEEDED
            ) from None
        return list(result or ())

    async def _abandon(
        self, key: InstanceKey, conn: aiomysql.Connection | None, fenced: bool
    ) -> None:
        """The client stops waiting for ``conn``'s statement: close it, and for a fenced one
        kill the statement on the server (closing the socket alone lets it run on). Survives
        the cancellation that brought us here (shielded, bounded)."""
        thread_id = _thread_id(conn) if fenced else None
        self.discard(key)
        if thread_id is not None:
            kill = asyncio.ensure_future(self._kill_query(key, thread_id))
            try:
                await asyncio.shield(kill)
            except asyncio.CancelledError:  # cancelled while killing: finish it, then go on out
                await asyncio.wait([kill])
                raise

    async def _open(self, key: InstanceKey, connect_seconds: float) -> aiomysql.Connection:
        """A new autocommit connection to ``key`` as the topology user (TLS as configured)."""
        return await connect_guarded(
            host=key.host,
            port=key.port,
            user=self._access.user,
            password=self._access.password,
            connect_timeout=connect_seconds,
            autocommit=True,
            cursorclass=_QuietDictCursor,
            ssl=self._access.tls,
        )

    async def _kill_query(self, key: InstanceKey, thread_id: int) -> None:
        timeout = min(self._access.connect_timeout, KILL_TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(KILL_TIMEOUT_SECONDS * 2):
                conn = await self._open(key, timeout)
                try:
                    async with conn.cursor() as cursor:
                        await cursor.execute(f"KILL QUERY {int(thread_id)}")
                finally:
                    conn.close()
        except (TimeoutError, pymysql.err.MySQLError, OSError) as exc:
            if describe_mysql_error(exc)[1] == _UNKNOWN_THREAD:
                return  # it ended by itself meanwhile
            log.warning("%s: could not kill abandoned statement %d: %s", key, thread_id, exc)

    async def execute(self, key: InstanceKey, sql: str, *, within: float | None = None) -> None:
        """Run one statement that returns no rows."""
        await self.rows(key, sql, within=within)


def _is_mariadb(conn: aiomysql.Connection) -> bool:
    return "mariadb" in str(conn.get_server_info() or "").lower()


def _thread_id(conn: aiomysql.Connection | None) -> int | None:
    if conn is None:
        return None
    with suppress(Exception):
        return int(conn.thread_id())
    return None


def shown_sql(sql: str) -> str:
    """The first words of a statement, for a one-line message."""
    words = sql.split()
    return " ".join(words[:4]) + (" ..." if len(words) > 4 else "")
