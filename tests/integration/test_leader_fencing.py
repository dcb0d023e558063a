"""Fencing as strong as documented (issue 13 §3), against real etcd and a real MariaDB: a leader's
statement never overlaps the next leader's, neither when its lease is lost mid-statement nor
when it resigns; and a NATS message handler that raises is logged at ERROR (§2).

The slow statement is an ``INSERT ... SELECT`` that sleeps on the server for longer than a lease
(a sleeping statement, unlike one waiting for a lock, runs on after its client disconnects, so
only the server-side limit or a ``KILL QUERY`` stops it). The new leader's first statement
records, on the server, how many of the old leader's statements are still running (they must be
none), and once the sleep would have ended the old leader's insert must never have landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pymysql
import pytest

from orchestrator_adapters.election import Election, ElectionOptions
from orchestrator_adapters.etcd import EtcdOptions
from orchestrator_adapters.nats_client import connect_nats
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.etcd.leadership import local_identity
from orchestrator_shared.instance_key import InstanceKey
from tests import harness
from tests.integration.coordinator_support import STEADY

pytestmark = pytest.mark.integration

SLEEP_SECONDS = 5.0  # longer than the lease (STEADY: 2 s): a new leader comes meanwhile
OLD_WRITE = (
    f"INSERT INTO fence.t SELECT 'old', SYSDATE(6) FROM DUAL WHERE SLEEP({SLEEP_SECONDS:g}) = 0"
)
# the new leader's first statement: it writes, and notes the old leader's statements still running
NEW_WRITE = (
    "INSERT INTO fence.log SELECT 'new', SYSDATE(6), COUNT(*) FROM information_schema.PROCESSLIST "
    "WHERE ID <> CONNECTION_ID() AND INFO LIKE '%INTO fence.t %'"
)
STATEMENT_TIMEOUT = 10.0  # what operations give a statement; the lease must bound it


def options(endpoint: str) -> ElectionOptions:
    return ElectionOptions(
        etcd=EtcdOptions(endpoints=(endpoint,), request_timeout=STEADY.request_timeout),
        key_prefix=f"/fence-{uuid.uuid4().hex[:8]}",
        lease_ttl=STEADY.ttl,
        keepalive_interval=STEADY.keepalive,
        startup_timeout=5.0,
    )


@contextlib.contextmanager
def fence_tables(server: harness.MariadbLike) -> Iterator[pymysql.connections.Connection]:
    """``fence.t`` (the old leader writes) and ``fence.log`` (the new one); an admin session."""
    admin = pymysql.connect(host=server.host, port=server.port, user="root", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS fence")
            cursor.execute("CREATE TABLE fence.t (who VARCHAR(8), at DATETIME(6))")
            cursor.execute(
                "CREATE TABLE fence.log (who VARCHAR(8), at DATETIME(6), old_running INT)"
            )
        yield admin
    finally:
        admin.close()


async def old_write_never_lands(admin: pymysql.connections.Connection, since: float) -> None:
    """Once the old leader's sleep would have ended, its row must not be there."""
    await asyncio.sleep(max(0.0, since + SLEEP_SECONDS + 0.5 - time.monotonic()))
    assert rows(admin, "SELECT who FROM fence.t") == []


@contextlib.asynccontextmanager
async def elections(endpoint: str) -> AsyncIterator[tuple[Election, Election]]:
    """An old leader (leading when yielded) and a standby, both closed on exit."""
    shared = options(endpoint)
    old = Election(shared, identity=local_identity("old"))
    new = Election(shared, identity=local_identity("new"))
    try:
        await old.start()
        await asyncio.wait_for(old.wait_leader(), 10)
        await new.start()
        yield old, new
    finally:
        await old.close()
        await new.close()


def rows(admin: pymysql.connections.Connection, sql: str) -> list[tuple[object, ...]]:
    with admin.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


async def old_leader_writes(
    old: Election, key: InstanceKey, access: MySQLAccess, started: asyncio.Event
) -> tuple[BaseException | None, float]:
    """The old leader's leader work: one slow fenced write; how it ended, and when."""
    failure: BaseException | None = None
    try:
        async with old.leading(), Links(access, statement_timeout=STATEMENT_TIMEOUT) as links:
            started.set()
            await links.fenced(key, OLD_WRITE, old.guard)
    except (StatementFailed, LeaseLost) as exc:
        failure = exc
    return failure, time.monotonic()


async def new_leader_writes(new: Election, key: InstanceKey, access: MySQLAccess) -> float:
    """Wait until ``new`` leads, then its first statement; when that statement began."""
    await asyncio.wait_for(new.wait_leader(), 15)
    began = time.monotonic()
    async with Links(access, statement_timeout=STATEMENT_TIMEOUT) as links:
        await links.fenced(key, NEW_WRITE, new.guard)
    return began


async def statement_running(admin: pymysql.connections.Connection) -> None:
    """Until the old leader's write runs on the server."""
    async with asyncio.timeout(5):
        while not rows(
            admin,
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE ID <> CONNECTION_ID() AND INFO LIKE '%INTO fence.t %'",
        ):
            await asyncio.sleep(0.02)


async def test_a_statement_across_a_lease_loss_never_overlaps_the_next_leaders(
    etcd_server: harness.EtcdLike, mariadb_server: harness.MariadbLike
) -> None:
    key = InstanceKey(mariadb_server.host, mariadb_server.port)
    access = MySQLAccess(user="root", password="", connect_timeout=1.0)
    with fence_tables(mariadb_server) as admin:
        async with elections(etcd_server.endpoint) as (old, new):
            started = asyncio.Event()
            old_work = asyncio.create_task(old_leader_writes(old, key, access, started))
            await started.wait()
            await statement_running(admin)
            sent = time.monotonic()
            # the old leader's keep-alives stop reaching etcd: its lease runs out mid-statement
            for task in old._tasks:
                if task.get_name() == "election-keepalive":
                    task.cancel()
            new_began = await new_leader_writes(new, key, access)
            failure, old_ended = await old_work
        assert isinstance(failure, StatementFailed | LeaseLost), failure
        assert old_ended <= new_began
        [(who, old_running)] = rows(admin, "SELECT who, old_running FROM fence.log")
        assert (who, old_running) == ("new", 0)
        await old_write_never_lands(admin, sent)


async def test_resigning_waits_until_the_leaders_statement_stopped(
    etcd_server: harness.EtcdLike, mariadb_server: harness.MariadbLike
) -> None:
    key = InstanceKey(mariadb_server.host, mariadb_server.port)
    access = MySQLAccess(user="root", password="", connect_timeout=1.0)
    with fence_tables(mariadb_server) as admin:
        async with elections(etcd_server.endpoint) as (old, new):
            started = asyncio.Event()
            old_work = asyncio.create_task(old_leader_writes(old, key, access, started))
            await started.wait()
            await statement_running(admin)
            sent = time.monotonic()
            new_work = asyncio.create_task(new_leader_writes(new, key, access))
            resigning = time.monotonic()
            await old.resign()  # SIGTERM does this
            resigned = time.monotonic()
            new_began = await new_work
            assert old_work.done()  # its work had stopped before the key went
            failure, old_ended = old_work.result()
        assert isinstance(failure, LeaseLost), failure
        assert old_ended <= resigned <= new_began
        assert resigned - resigning < 1.0  # killing the statement is quick: hand-over stays fast
        [(who, old_running)] = rows(admin, "SELECT who, old_running FROM fence.log")
        assert (who, old_running) == ("new", 0)
        await old_write_never_lands(admin, sent)


async def test_a_message_handler_that_raises_is_logged_at_error(
    nats_server: harness.NatsLike, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await connect_nats([nats_server.url], name="fencing-test")
    handled = asyncio.Event()

    async def buggy(msg: object) -> None:
        handled.set()
        raise ValueError("a bug in a handler")

    try:
        with caplog.at_level(logging.DEBUG, logger="orchestrator_adapters.nats_client"):
            await nc.subscribe("fencing.test", cb=buggy)
            await nc.publish("fencing.test", b"{}")
            await nc.flush()
            await asyncio.wait_for(handled.wait(), 5)
            async with asyncio.timeout(5):
                while not any(r.levelno == logging.ERROR for r in caplog.records):
                    await asyncio.sleep(0.02)
    finally:
        await nc.close()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "fencing-test: a NATS message handler failed: a bug in a handler" in record.getMessage()
    assert record.exc_info is not None
