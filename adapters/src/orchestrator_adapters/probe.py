"""Probing one instance: pooled connections, one deadline, a snapshot out.

Each probe has a deadline (``MySQLDiscoveryReadTimeoutSeconds``) covering connect and every
query; an instance that hangs past it is reported failed and its connection is thrown away, so a
hung server costs one task slot and never blocks another probe. Library errors (PyMySQL's
``OperationalError`` and friends) are translated into :class:`ProbeError` here, at the boundary.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from orchestrator_adapters import mysql_fast, probe_sql
from orchestrator_adapters.mysql_client import connect_guarded, describe_mysql_error
from orchestrator_adapters.probe_sql import Dialect
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ProbeError, ProbeTimeout
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.mysql_tls import topology_tls_context
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.patterns import compile_pattern
from orchestrator_shared.snapshot import (
    InstanceSnapshot,
    ProbeFacts,
    unknown_instance,
    utcnow,
)

PROMOTION_RULES = frozenset(rule.value for rule in PromotionRule)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """The settings a probe needs, taken once from :class:`Settings`."""

    user: str
    password: str = field(repr=False)
    connect_timeout: float
    deadline: float
    pool_size: int
    trust_show_slave_hosts: bool
    cluster_alias_query: str = ""
    data_center_query: str = ""
    data_center_pattern: str = ""
    region_query: str = ""
    region_pattern: str = ""
    promotion_rule_query: str = ""
    replication_lag_query: str = ""
    # MySQLTopologyUseMutualTLS: the TLS context of every connection (None: plain TCP)
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    # DiscoveryAllowedHostnameFilters: a host it refuses is never connected to
    hosts: HostPolicy = field(default_factory=HostPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeOptions:
        return cls(
            user=settings.MySQLTopologyUser,
            password=settings.MySQLTopologyPassword,
            connect_timeout=settings.MySQLConnectTimeoutSeconds,
            deadline=settings.MySQLDiscoveryReadTimeoutSeconds,
            pool_size=settings.MySQLTopologyMaxPoolConnections,
            trust_show_slave_hosts=settings.DiscoverByShowSlaveHosts,
            cluster_alias_query=settings.DetectClusterAliasQuery,
            data_center_query=settings.DetectDataCenterQuery,
            data_center_pattern=settings.DataCenterPattern,
            region_query=settings.DetectRegionQuery,
            region_pattern=settings.RegionPattern,
            promotion_rule_query=settings.DetectPromotionRuleQuery,
            replication_lag_query=settings.ReplicationLagQuery,
            tls=topology_tls_context(settings),
            hosts=HostPolicy.from_settings(settings),
        )

    def check_allowed(self, key: InstanceKey) -> None:
        """:class:`ProbeError` (before any connect) for a host the allow-list refuses; the last
        line of defence: discovery does not even schedule such a host."""
        refusal = self.hosts.refusal(key)
        if refusal:
            raise ProbeError(str(key), refusal)


class ConnectionPool:
    """Idle connections per instance, at most ``size`` kept; broken ones are discarded."""

    def __init__(self, options: ProbeOptions) -> None:
        self._options = options
        self._idle: defaultdict[InstanceKey, deque[aiomysql.Connection]] = defaultdict(deque)
        self._closed = False

    async def _connect(self, key: InstanceKey) -> aiomysql.Connection:
        self._options.check_allowed(key)
        return await mysql_fast.connect(
            host=key.host,
            port=key.port,
            user=self._options.user,
            password=self._options.password,
            connect_timeout=self._options.connect_timeout,
            autocommit=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
            ssl=self._options.tls,
        )

    @asynccontextmanager
    async def connection(self, key: InstanceKey) -> AsyncIterator[aiomysql.Connection]:
        idle = self._idle[key]
        conn = idle.pop() if idle else await self._connect(key)
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            if healthy and not self._closed and len(idle) < self._options.pool_size:
                idle.append(conn)
            else:
                conn.close()

    async def warm(self, key: InstanceKey) -> None:
        """Keep one idle connection to ``key`` (opened now unless one is kept), so that its
        next probe skips TCP and authentication. Raises what a connect raises."""
        if self._closed or self._idle.get(key):
            return
        conn = await self._connect(key)
        idle = self._idle[key]
        if self._closed or len(idle) >= self._options.pool_size:
            conn.close()
        else:
            idle.append(conn)

    def has_idle(self, key: InstanceKey) -> bool:
        """Whether the next connection to ``key`` would be a kept one (not a fresh connect)."""
        return bool(self._idle.get(key))

    def discard(self, key: InstanceKey) -> None:
        """Close every idle connection to ``key`` (after a failure, or when it is forgotten)."""
        for conn in self._idle.pop(key, deque()):
            conn.close()

    def close(self) -> None:
        self._closed = True
        for key in list(self._idle):
            self.discard(key)


async def _run_batch(
    conn: aiomysql.Connection, statements: Sequence[str]
) -> tuple[list[list[dict[str, Any]]], BaseException | None]:
    """Run statements as one multi-statement batch; rows of each, up to the first error."""
    results: list[list[dict[str, Any]]] = []
    async with conn.cursor() as cur:
        try:
            await cur.execute(";\n".join(statements))
            while True:
                columns = [col[0] for col in cur.description or ()]
                rows = await cur.fetchall()
                results.append([dict(zip(columns, row, strict=True)) for row in rows])
                if not await cur.nextset():
                    break
        except pymysql.err.MySQLError as exc:
            # The connection may hold unread results of the failed batch: do not reuse it.
            return results, exc
    return results, None


async def _single_value(conn: aiomysql.Connection, sql: str) -> str | None:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        rows = await cur.fetchall()
    return probe_sql.first_value(rows)


def _pattern_value(pattern: str, host: str) -> str:
    if not pattern:
        return ""
    return compile_pattern(pattern).first_group(host)  # validated at start-up


class Prober:
    """Probes instances and turns what they answer into snapshots."""

    def __init__(self, options: ProbeOptions, pool: ConnectionPool) -> None:
        self._options = options
        self._pool = pool

    def discard(self, key: InstanceKey) -> None:
        """Drop pooled connections to ``key``."""
        self._pool.discard(key)

    def close(self) -> None:
        """Close every pooled connection; later probes would open new ones."""
        self._pool.close()

    async def warm(self, key: InstanceKey) -> bool:
        """Keep a connection to ``key`` open for its next probe (within the connect timeout);
        whether one is kept. A kept connection that broke meanwhile costs that probe nothing
        but a new connection (:meth:`probe` asks again on one)."""
        try:
            async with asyncio.timeout(self._options.connect_timeout):
                await self._pool.warm(key)
        except (TimeoutError, ProbeError, pymysql.err.MySQLError, OSError):
            return False
        return True

    async def probe(
        self, key: InstanceKey, previous: InstanceSnapshot | None = None
    ) -> InstanceSnapshot:
        """Probe ``key``; never raises for the instance's failures (they are in the snapshot)."""
        attempted_at = utcnow()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._options.deadline):
                reused = self._pool.has_idle(key)
                try:
                    return await self._probe(key, previous, attempted_at, started)
                except ProbeError as exc:
                    if not (reused and exc.errno in LOST_CONNECTION):
                        raise
                # A kept connection the server closed meanwhile (KILL, wait_timeout): that says
                # nothing about the instance; ask again on a new connection, same deadline.
                self._pool.discard(key)
                return await self._probe(key, previous, attempted_at, started)
        except _PartialProbe as partial:
            self._pool.discard(key)
            return self._partial(key, previous, partial, attempted_at, started)
        except TimeoutError:
            self._pool.discard(key)
            error: ProbeError = ProbeTimeout(
                str(key), f"no answer within {self._options.deadline:g}s"
            )
        except ProbeError as exc:
            self._pool.discard(key)
            error = exc
        except (pymysql.err.MySQLError, OSError) as exc:
            self._pool.discard(key)
            error = _probe_error(key, exc)
        return self._failed(key, previous, attempted_at, started, error)

    def _failed(
        self,
        key: InstanceKey,
        previous: InstanceSnapshot | None,
        attempted_at: datetime,
        started: float,
        error: ProbeError,
        *,
        partial: bool = False,
    ) -> InstanceSnapshot:
        probe = ProbeFacts(
            ok=False,
            partial=partial,
            checked_at=utcnow(),
            attempted_at=attempted_at,
            latency_seconds=time.monotonic() - started,
            error=error.message,
            errno=error.errno,
            timed_out=isinstance(error, ProbeTimeout),
        )
        if previous is None:
            return unknown_instance(key, probe)
        return previous.with_failed_probe(probe)

    async def _probe(
        self,
        key: InstanceKey,
        previous: InstanceSnapshot | None,
        attempted_at: datetime,
        started: float,
    ) -> InstanceSnapshot:
        async with self._pool.connection(key) as conn:
            dialect = self._known_dialect(previous)
            if dialect is None:
                first, error = await _run_batch(conn, [probe_sql.VARIABLES_SQL])
                if error is not None:
                    raise _probe_error(key, error)
                dialect = Dialect.of(_variables(first[0]))
            results, error = await _run_batch(conn, dialect.statements())
            if error is not None and not results:
                raise _probe_error(key, error)
            if error is not None:
                # The mandatory variables arrived; something later failed: a partial success.
                raise _PartialProbe(results, _probe_error(key, error))
            extras = await self._classify(conn, key, results)
        return self._snapshot(key, results, extras, attempted_at, started)

    @staticmethod
    def _known_dialect(previous: InstanceSnapshot | None) -> Dialect | None:
        if previous is None or not previous.version:
            return None
        return Dialect(flavor=previous.flavor, version=probe_sql.parse_version(previous.version))

    async def _classify(
        self, conn: aiomysql.Connection, key: InstanceKey, results: list[list[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Optional per-site queries (Detect*Query, ReplicationLagQuery) and patterns."""
        options = self._options
        extras: dict[str, Any] = {
            "data_center": _pattern_value(options.data_center_pattern, key.host),
            "region": _pattern_value(options.region_pattern, key.host),
        }
        queries = {
            "data_center": options.data_center_query,
            "region": options.region_query,
            "suggested_cluster_alias": options.cluster_alias_query,
            "promotion_rule": options.promotion_rule_query,
            "replication_lag_seconds": options.replication_lag_query,
        }
        for name, sql in queries.items():
            if not sql:
                continue
            try:
                value = await _single_value(conn, sql)
            except pymysql.err.MySQLError:
                continue  # orchestrator tolerates these; the lag falls back to the replica's
            if value is None:
                continue
            if name == "replication_lag_seconds":
                lag = probe_sql.as_optional_int(value)
                if lag is not None:
                    extras[name] = max(lag, 0)
            elif name == "promotion_rule":
                if value in PROMOTION_RULES:
                    extras[name] = value
            else:
                extras[name] = value
        return extras

    def _snapshot(
        self,
        key: InstanceKey,
        results: list[list[dict[str, Any]]],
        extras: dict[str, Any],
        attempted_at: datetime,
        started: float,
    ) -> InstanceSnapshot:
        variables = _variables(results[0])
        status = _variables(results[1])
        channels = tuple(probe_sql.parse_replica_status(row) for row in results[3])
        dump_hosts = [probe_sql.as_text(row.get("host")) for row in results[5]]
        replica_keys = probe_sql.parse_replica_hosts(
            results[4],
            dump_thread_hosts=dump_hosts,
            own_port=key.port,
            trust_show_slave_hosts=self._options.trust_show_slave_hosts,
        )
        checked_at = utcnow()
        fields = probe_sql.identity_fields(variables)
        primary = next((c for c in channels if c.name == ""), channels[0] if channels else None)
        lag = extras.pop("replication_lag_seconds", None)
        if lag is None and primary is not None:
            lag = primary.seconds_behind_master
        return InstanceSnapshot(
            key=str(key),
            probe=ProbeFacts(
                ok=True,
                checked_at=checked_at,
                attempted_at=attempted_at,
                last_seen_at=checked_at,
                latency_seconds=time.monotonic() - started,
            ),
            uptime_seconds=probe_sql.as_int(status.get("uptime")),
            self_coordinates=probe_sql.parse_master_status(results[2]),
            semi_sync=probe_sql.parse_semi_sync(variables, status),
            galera=probe_sql.parse_galera(variables, status),
            channels=channels,
            replica_keys=replica_keys,
            replication_lag_seconds=lag,
            **fields,
            **extras,
        )

    def _partial(
        self,
        key: InstanceKey,
        previous: InstanceSnapshot | None,
        partial: _PartialProbe,
        attempted_at: datetime,
        started: float,
    ) -> InstanceSnapshot:
        """A probe that read the variables but failed later: keep what it read, mark it."""
        base = self._failed(key, previous, attempted_at, started, partial.error, partial=True)
        fields = probe_sql.identity_fields(_variables(partial.results[0]))
        return base.model_copy(update=fields)


def _variables(rows: list[dict[str, Any]]) -> dict[str, str]:
    return probe_sql.name_value_rows((row.get("Variable_name"), row.get("Value")) for row in rows)


# The connection, not the server, failed: server gone away / lost during query (client
# errors 2006, 2013) and MariaDB's "connection was killed" (1927).
LOST_CONNECTION = frozenset({2006, 2013, 1927})


def _probe_error(key: InstanceKey, exc: BaseException) -> ProbeError:
    message, errno = describe_mysql_error(exc)
    return ProbeError(str(key), message, errno=errno)


class _PartialProbe(Exception):
    """The mandatory variables were read, a later statement failed."""

    def __init__(self, results: list[list[dict[str, Any]]], error: ProbeError) -> None:
        super().__init__(error.message)
        self.results = results
        self.error = error


WAITING_SQL = "SELECT /* orchestrator liveness: returns when the server goes away */ SLEEP(3600)"
"""What the waiting connection of :meth:`LivenessLink.lost` keeps running on a master."""
INTERRUPTED_PAUSE = 1.0
"""Seconds before waiting again after the waiting statement was interrupted."""


class LivenessLink:
    """A persistent connection to one master, pinged at a short interval, and another one that
    always waits on it.

    ``check()`` raises :class:`ProbeError` when the master does not answer a ping within the
    timeout (connecting again first if the previous check broke the connection): that finds a
    master that hangs. ``lost()`` returns as soon as the waiting connection breaks, which a
    master that dies does at once; ``confirm()`` then tells a death from a harmless break.
    """

    def __init__(self, key: InstanceKey, options: ProbeOptions, *, timeout: float) -> None:
        self.key = key
        self._options = options
        self._timeout = timeout
        self._conn: aiomysql.Connection | None = None
        self._waiting: aiomysql.Connection | None = None

    async def _connect(self) -> aiomysql.Connection:
        self._options.check_allowed(self.key)
        return await connect_guarded(
            host=self.key.host,
            port=self.key.port,
            user=self._options.user,
            password=self._options.password,
            connect_timeout=min(self._timeout, self._options.connect_timeout),
            autocommit=True,
            ssl=self._options.tls,
        )

    async def check(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if self._conn is None:
                    self._conn = await self._connect()
                await self._conn.ping(reconnect=False)
        except TimeoutError:
            self.close()
            raise ProbeTimeout(str(self.key), f"no answer within {self._timeout:g}s") from None
        except (pymysql.err.MySQLError, OSError) as exc:
            self.close()
            raise _probe_error(self.key, exc) from None

    async def lost(self, *, retry: float) -> str:
        """Wait until the waiting connection breaks; why it broke.

        The connection keeps :data:`WAITING_SQL` running on the master, so the master's death
        (its process killed: the kernel closes its sockets; its port closed) reaches us as an
        end of file or a reset within milliseconds, not at the next ping. A break is no proof
        of death (a DBA's ``KILL``, a proxy, a server restart): the caller asks
        :meth:`confirm` before telling anyone. While the connection cannot be opened it is
        tried again every ``retry`` seconds (the ping finds a master that is down)."""
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    self._waiting = await self._connect()
            except (TimeoutError, pymysql.err.MySQLError, OSError, ProbeError):
                self._close_waiting()
                await asyncio.sleep(retry)
                continue
            try:
                async with self._waiting.cursor() as cursor:
                    while True:  # SLEEP returns at its end, or early for a KILL QUERY
                        await self._wait_once(cursor)
            except (pymysql.err.MySQLError, OSError) as exc:
                return describe_mysql_error(exc)[0]
            finally:
                self._close_waiting()

    @staticmethod
    async def _wait_once(cursor: aiomysql.Cursor) -> None:
        """One :data:`WAITING_SQL`; an error that leaves the connection up (the statement
        interrupted: ``KILL QUERY``, ``max_statement_time``) pauses a moment (no busy loop
        on a server that interrupts every statement) and returns."""
        try:
            await cursor.execute(WAITING_SQL)
            await cursor.fetchall()
        except pymysql.err.MySQLError as exc:
            if describe_mysql_error(exc)[1] in LOST_CONNECTION or cursor.connection is None:
                raise
            await asyncio.sleep(INTERRUPTED_PAUSE)

    async def confirm(self) -> ProbeError | None:
        """Whether the master answers a new connection and a ping within the timeout: None
        when it does, else why not."""
        fresh = LivenessLink(self.key, self._options, timeout=self._timeout)
        try:
            await fresh.check()
        except ProbeError as exc:
            return exc
        finally:
            fresh.close()
        return None

    def _close_waiting(self) -> None:
        conn, self._waiting = self._waiting, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()
        self._close_waiting()
