"""The harness against the real servers: each fixture starts, serves, breaks and comes back.

Every test records the pids of the servers it used; after the test (and the fixtures' teardown)
those processes must be gone.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aetcd
import aetcd.exceptions
import asyncpg
import nats
import pytest
from nats.js.api import StorageType

from tests import harness
from tests.harness.nats import NatsServer
from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import PortInUseError, start_with_fresh_ports, wait_gone

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def pid_ledger() -> Iterator[set[int]]:
    """Pids a test saw; set up first, so checked last: after the server fixtures closed."""
    pids: set[int] = set()
    yield pids
    survivors = wait_gone(pids, timeout=5)
    assert not survivors, f"server processes still alive after the test: {survivors}"


async def eventually(action: Callable[[], Awaitable[T]], *, within: float = 10.0) -> T:
    """Retry ``action`` until it succeeds (a leader election, a reconnect) or time runs out."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await action()
        except (aetcd.exceptions.ClientError, OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.1)


# --- NATS -----------------------------------------------------------------------------------


async def test_nats_jetstream_survives_kill_and_restart(
    nats_server: harness.NatsLike, pid_ledger: set[int]
) -> None:
    disconnected = asyncio.Event()
    reconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    async def on_error(error: Exception) -> None:
        """Connection errors while the server is down are expected here."""

    client = await nats.connect(
        nats_server.url,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        connect_timeout=2,
    )
    try:
        stream = client.jetstream()
        await stream.add_stream(name="HARNESS", subjects=["harness.>"], storage=StorageType.FILE)
        await stream.publish("harness.first", b"hello")
        reader = await stream.pull_subscribe("harness.>", durable="reader")
        (message,) = await reader.fetch(1, timeout=5)
        assert message.data == b"hello"
        await message.ack()

        pid_ledger.update(nats_server.pids())
        nats_server.kill()
        await asyncio.wait_for(disconnected.wait(), 5)
        assert not nats_server.is_running
        assert not wait_gone(pid_ledger, timeout=2)

        nats_server.restart()
        pid_ledger.update(nats_server.pids())
        await asyncio.wait_for(reconnected.wait(), 10)
        info = await stream.stream_info("HARNESS")
        assert info.state.messages == 1  # file storage in the work dir survived the kill
        await stream.publish("harness.second", b"again")
        (message,) = await reader.fetch(1, timeout=5)  # the durable consumer survived too
        assert message.data == b"again"
        await message.ack()
    finally:
        await client.close()


# --- etcd -----------------------------------------------------------------------------------


async def test_etcd_single_hang_and_resume(
    etcd_server: harness.EtcdLike, pid_ledger: set[int]
) -> None:
    pid_ledger.update(etcd_server.pids())
    async with aetcd.Client(host=etcd_server.host, port=etcd_server.port, timeout=1) as client:
        await client.put(b"harness/key", b"one")
        got = await client.get(b"harness/key")
        assert got is not None
        assert got.value == b"one"

        etcd_server.hang()
        with pytest.raises(aetcd.exceptions.ClientError):
            await asyncio.wait_for(client.get(b"harness/key"), 5)

        etcd_server.resume()
        await eventually(lambda: client.put(b"harness/key", b"two"))
        got = await client.get(b"harness/key")
        assert got is not None
        assert got.value == b"two"


async def test_etcd_cluster_keeps_quorum_then_loses_it(
    etcd_cluster: harness.EtcdClusterLike, pid_ledger: set[int]
) -> None:
    pid_ledger.update(etcd_cluster.pids())
    first, second, survivor = etcd_cluster.members
    async with aetcd.Client(host=survivor.host, port=survivor.port, timeout=1) as client:
        await client.put(b"harness/quorum", b"3 of 3")

        first.stop()
        await eventually(lambda: client.put(b"harness/quorum", b"2 of 3"))

        second.stop()
        with pytest.raises(aetcd.exceptions.ClientError):
            await asyncio.wait_for(client.put(b"harness/quorum", b"1 of 3"), 5)

        first.restart()  # ready = /health true: first + survivor have a leader again
        second.restart()
        pid_ledger.update(etcd_cluster.pids())
        await eventually(lambda: client.put(b"harness/quorum", b"back"))

    # A restarted member rejoined from its data dir and serves the latest value.
    async with aetcd.Client(host=first.host, port=first.port, timeout=2) as client:
        got = await eventually(lambda: client.get(b"harness/quorum"))
        assert got is not None
        assert got.value == b"back"


# --- PostgreSQL -----------------------------------------------------------------------------


async def test_postgres_db_is_a_fresh_database(postgres_db: harness.PostgresDatabase) -> None:
    connection = await asyncpg.connect(postgres_db.dsn)
    try:
        assert await connection.fetchval("SELECT current_database()") == postgres_db.name
        await connection.execute("CREATE TABLE instance (key text PRIMARY KEY, port int)")
        await connection.execute("INSERT INTO instance VALUES ('db1', 3306)")
        assert await connection.fetchval("SELECT port FROM instance WHERE key = 'db1'") == 3306
    finally:
        await connection.close()


async def test_postgres_database_is_dropped_with_its_sessions(postgres_admin_dsn: str) -> None:
    database = harness.PostgresDatabase(admin_dsn=postgres_admin_dsn)
    async with database:
        left_open = await asyncpg.connect(database.dsn)  # drop() must terminate this session
    try:
        admin = await asyncpg.connect(postgres_admin_dsn)
        try:
            count = await admin.fetchval(
                "SELECT count(*) FROM pg_database WHERE datname = $1", database.name
            )
        finally:
            await admin.close()
        assert count == 0
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await left_open.fetchval("SELECT 1")
    finally:
        left_open.terminate()


async def test_postgres_cluster_kill_hang_restart(
    postgres_cluster: harness.PostgresLike, pid_ledger: set[int]
) -> None:
    connection = await asyncpg.connect(postgres_cluster.dsn)
    try:
        await connection.execute("CREATE TABLE survivor (id int)")
        await connection.execute("INSERT INTO survivor VALUES (1), (2)")
        pid_ledger.update(postgres_cluster.pids())

        postgres_cluster.kill()
        assert not wait_gone(pid_ledger, timeout=2)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await connection.fetchval("SELECT 1")
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(postgres_cluster.dsn, timeout=2)
    finally:
        connection.terminate()

    postgres_cluster.restart()
    pid_ledger.update(postgres_cluster.pids())
    connection = await asyncpg.connect(postgres_cluster.dsn)
    try:
        assert await connection.fetchval("SELECT sum(id) FROM survivor") == 3
    finally:
        await connection.close()

    postgres_cluster.hang()
    with pytest.raises(TimeoutError):
        await asyncpg.connect(postgres_cluster.dsn, timeout=1)
    postgres_cluster.resume()
    connection = await eventually(lambda: asyncpg.connect(postgres_cluster.dsn, timeout=2))
    await connection.close()


# --- the harness itself ---------------------------------------------------------------------


def test_server_dies_with_a_killed_test_session(pid_ledger: set[int]) -> None:
    """PR_SET_PDEATHSIG: SIGKILL the process that started a server; the server goes too."""
    script = (
        "from tests.harness.nats import NatsServer\n"
        "server = NatsServer()\n"
        "server.start()\n"
        "print(server.pid, server.workdir, flush=True)\n"
        "import time; time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as session:
        assert session.stdout is not None
        pid_text, workdir = session.stdout.readline().split()
        server_pid = int(pid_text)
        pid_ledger.add(server_pid)
        assert not harness.is_gone(server_pid)
        session.send_signal(signal.SIGKILL)
        session.wait()
    try:
        assert not wait_gone([server_pid], timeout=5), "nats-server outlived its parent"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # a killed parent cannot clean up


def test_port_taken_by_someone_else(pid_ledger: set[int]) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        blocked = NatsServer(port=taken)
        try:
            with pytest.raises(PortInUseError, match="address already in use"):
                blocked.start()
        finally:
            blocked.close()
        assert not blocked.workdir.exists()

        ports = iter([taken, free_port()])
        server = start_with_fresh_ports(lambda: NatsServer(port=next(ports)))
        try:
            pid_ledger.update(server.pids())
            assert server.port != taken
            assert server in harness.open_servers()
        finally:
            server.close()
        assert server not in harness.open_servers()
        server.close()  # idempotent
