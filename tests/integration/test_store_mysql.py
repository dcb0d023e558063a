"""What only the MySQL/MariaDB store does, against real MariaDB servers: reaching the server
(credentials, TLS, a database to create), migrating safely (the schema lock, resuming an
interrupted migration, refusing a database that is not ours), and riding out outages.
The store's behaviour itself is tests/integration/test_store.py, run on every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator_api.store import Store, StoreError, open_store
from orchestrator_api.store.mysql import MySQLBackend
from orchestrator_api.store.schema import (
    LATEST_VERSION,
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Dialect,
    render,
)
from orchestrator_shared.snapshot import InstanceSnapshot
from tests import harness
from tests.harness.certificates import make_certificates
from tests.harness.mariadb import admin_session
from tests.harness.ports import free_port
from tests.integration.stack_support import run_once
from tests.integration.test_store import FLEET, k
from tests.integration.test_store_consumer import eventually

pytestmark = pytest.mark.integration

SECRET = "s3cret-never-shown"


@asynccontextmanager
async def opened(backend: MySQLBackend) -> AsyncIterator[Store]:
    store = await open_store("mysql", mysql=backend)
    try:
        yield store
    finally:
        await store.close()


async def writes(store: Store, snapshots: Sequence[InstanceSnapshot]) -> bool:
    """Whether the store wrote ``snapshots`` (False: it failed with a StoreError)."""
    try:
        await store.write_batch(snapshots)
    except StoreError:
        return False
    return True


def versions(database: harness.MariadbDatabase) -> list[int]:
    return [row[0] for row in database.sql("SELECT version FROM schema_version ORDER BY 1")]


# --- reaching the server --------------------------------------------------------------------


async def test_a_wrong_password_or_no_server_is_a_store_error_without_the_password(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    with pytest.raises(StoreError) as denied:
        await open_store("mysql", mysql=mariadb_db.backend(password=SECRET))
    message = str(denied.value)
    assert message.startswith(f"MySQL 127.0.0.1:{mariadb_db.port}/{mariadb_db.name}: (1045)")
    assert "Access denied" in message
    unreachable = mariadb_db.backend(port=free_port(), password=SECRET, connect_timeout=1.0)
    with pytest.raises(StoreError) as refused:
        await open_store("mysql", mysql=unreachable)
    assert "Can't connect" in str(refused.value)
    for error in (denied.value, refused.value):
        assert SECRET not in str(error)
        assert SECRET not in repr(error.__cause__)
    assert SECRET not in repr(unreachable)


async def test_a_missing_database_is_created(mariadb_admin: harness.MariadbLike) -> None:
    database = harness.MariadbDatabase(host=mariadb_admin.host, port=mariadb_admin.port)
    database.create(database=False)  # the user and its grants only, as an operator would
    try:
        async with opened(database.backend()) as store:
            await store.write_batch(FLEET)
            assert len(await store.all_instances()) == len(FLEET)
        charset = database.sql(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
        )
        assert charset == [("utf8mb4", "utf8mb4_bin")]
        assert versions(database) == list(range(1, LATEST_VERSION + 1))
    finally:
        database.drop()


async def test_mutual_tls_with_client_certificates(
    mariadb_admin: harness.MariadbLike, mariadb_db: harness.MariadbDatabase, tmp_path: Path
) -> None:
    certificates = mariadb_admin.certificates
    mariadb_db.sql(f"ALTER USER '{mariadb_db.user}'@'%' REQUIRE X509")
    with pytest.raises(StoreError, match="Access denied"):
        await open_store("mysql", mysql=mariadb_db.backend())
    tls = mariadb_db.backend(
        use_tls=True,
        ssl_ca_file=str(certificates["ca.pem"]),
        ssl_cert_file=str(certificates["client.pem"]),
        ssl_key_file=str(certificates["client.key"]),
    )
    async with opened(tls) as store:
        await store.write_batch(FLEET[:1])
        assert await store.get_instance(k("db1:3306")) is not None
    # a server certificate from another CA is refused, unless verification is skipped
    other_ca = str(make_certificates(tmp_path / "other")["ca.pem"])
    with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
        await open_store("mysql", mysql=replace(tls, ssl_ca_file=other_ca))
    async with opened(replace(tls, ssl_ca_file=other_ca, ssl_skip_verify=True)) as store:
        await store.ping()


# --- migrating ------------------------------------------------------------------------------


async def test_stores_starting_together_migrate_one_after_the_other(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    backend = mariadb_db.backend()
    holder = admin_session(mariadb_db.host, mariadb_db.port)
    try:
        with holder.cursor() as cursor:  # an API process in the middle of a migration
            cursor.execute("SELECT GET_LOCK(%s, 0)", (backend.schema_lock,))
            assert cursor.fetchone() == (1,)
        opening = [asyncio.create_task(open_store("mysql", mysql=backend)) for _ in range(3)]
        await asyncio.sleep(1.5)
        assert not any(task.done() for task in opening)
        assert mariadb_db.sql("SHOW TABLES") == []
    finally:
        holder.close()  # the session ends: its lock is gone
    stores = await asyncio.wait_for(asyncio.gather(*opening), timeout=30)
    try:
        await stores[0].write_batch(FLEET)
        assert len(await stores[2].all_instances()) == len(FLEET)
    finally:
        for store in stores:
            await store.close()
    assert versions(mariadb_db) == list(range(1, LATEST_VERSION + 1))


async def test_a_migration_waits_for_the_lock_no_longer_than_the_read_timeout(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    backend = mariadb_db.backend(read_timeout=1.0)
    holder = admin_session(mariadb_db.host, mariadb_db.port)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (backend.schema_lock,))
        with pytest.raises(StoreError, match="another process held the schema lock"):
            await open_store("mysql", mysql=backend)
    finally:
        holder.close()
    async with opened(backend) as store:
        await store.ping()


async def test_once_migrated_the_data_privileges_are_enough(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    await (await open_store("mysql", mysql=mariadb_db.backend())).close()
    mariadb_db.sql(
        f"REVOKE CREATE, ALTER, INDEX, DROP ON `{mariadb_db.name}`.* FROM '{mariadb_db.user}'@'%'"
    )
    async with opened(mariadb_db.backend()) as store:
        await store.write_batch(FLEET)
        await store.set_cluster_alias("db1:3306", "shop-main")
        assert await store.resolve_cluster("shop-main") == "db1:3306"


async def test_an_interrupted_migration_is_resumed(mariadb_db: harness.MariadbDatabase) -> None:
    # MySQL commits each CREATE by itself: a process that died in migration 1 left some of
    # its tables (and the seed row) but no record of the migration
    first = MIGRATIONS[0].statements
    for statement in [SCHEMA_VERSION_TABLE, *first[:4]]:
        mariadb_db.sql(render(statement, Dialect.MYSQL))
    async with opened(mariadb_db.backend()) as store:
        await store.write_batch(FLEET)
        assert (await store.global_recoveries()).enabled
        assert await store.resolve_cluster("shop") == "db1:3306"
    assert versions(mariadb_db) == list(range(1, LATEST_VERSION + 1))
    assert mariadb_db.sql("SELECT id, generation > 0 FROM store_state") == [(1, 1)]


async def test_a_database_holding_other_tables_of_the_same_name_is_refused(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    mariadb_db.sql(render(SCHEMA_VERSION_TABLE, Dialect.MYSQL))
    mariadb_db.sql("CREATE TABLE store_state (id INT PRIMARY KEY, owner TEXT)")
    with pytest.raises(StoreError) as caught:
        await open_store("mysql", mysql=mariadb_db.backend())
    assert "table store_state exists but is not this store's (columns id, owner)" in str(
        caught.value
    )
    assert "MySQLOrchestratorDatabase must name a database of its own" in str(caught.value)


async def test_orchestrators_own_backend_database_is_refused(
    mariadb_db: harness.MariadbDatabase,
) -> None:
    mariadb_db.sql(
        "CREATE TABLE database_instance (hostname VARCHAR(128), port INT, "
        "PRIMARY KEY (hostname, port))"
    )
    with pytest.raises(StoreError) as caught:
        await open_store("mysql", mysql=mariadb_db.backend())
    assert str(caught.value).startswith(
        f"MySQLOrchestratorDatabase: {mariadb_db.name} holds the tables of orchestrator's own "
        "schema (database_instance)"
    )
    assert [row[0] for row in mariadb_db.sql("SHOW TABLES")] == ["database_instance"]


# --- outages --------------------------------------------------------------------------------


@pytest.fixture
def own_db(mariadb_server: harness.MariadbLike) -> Iterator[harness.MariadbDatabase]:
    """A database on a server of this test's own."""
    with harness.MariadbDatabase(host=mariadb_server.host, port=mariadb_server.port) as database:
        yield database


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_the_store_recovers_when_the_server_comes_back(
    mariadb_server: harness.MariadbLike, own_db: harness.MariadbDatabase, how: str
) -> None:
    async with opened(own_db.backend(read_timeout=3.0)) as store:
        await store.write_batch(FLEET[:2])
        await asyncio.to_thread(getattr(mariadb_server, how))
        with pytest.raises(StoreError):
            await store.write_batch(FLEET[2:])
        with pytest.raises(StoreError):
            await store.ping()
        await asyncio.to_thread(mariadb_server.restart)
        await eventually(lambda: writes(store, FLEET[2:]), timeout=30)
        assert {str(node.key) for node in await store.all_instances()} == {
            str(snap.instance_key) for snap in FLEET
        }


async def test_a_hung_server_times_out_and_the_store_recovers(
    mariadb_server: harness.MariadbLike, own_db: harness.MariadbDatabase
) -> None:
    async with opened(own_db.backend(read_timeout=1.0, connect_timeout=1.0)) as store:
        await store.write_batch(FLEET[:1])
        mariadb_server.hang()
        try:
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"no answer within 2 s$"):
                await store.write_batch(FLEET[1:])
            assert time.monotonic() - started < 15
        finally:
            mariadb_server.resume()

        await eventually(lambda: writes(store, FLEET[1:]), timeout=30)
        assert len(await store.all_instances()) == len(FLEET)


async def test_reject_read_only_drops_the_connection_a_read_only_server_refused(
    mariadb_server: harness.MariadbLike, own_db: harness.MariadbDatabase
) -> None:
    def sessions() -> set[int]:
        found = own_db.sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", own_db.user
        )
        return {row[0] for row in found}

    for reject in (False, True):
        backend = own_db.backend(max_connections=1, reject_read_only=reject)
        async with opened(backend) as store:
            await store.ping()
            before = sessions()
            own_db.sql("SET GLOBAL read_only = 1")
            try:
                with pytest.raises(StoreError, match=r"read-only|read_only"):
                    await store.set_cluster_alias("db1:3306", "shop")
            finally:
                own_db.sql("SET GLOBAL read_only = 0")
            await store.set_cluster_alias("db1:3306", "shop")
            after = sessions()
            assert (before == after) is not reject, (reject, before, after)


# --- the API process ------------------------------------------------------------------------


def test_the_api_stops_with_one_line_when_the_mysql_store_is_unusable(tmp_path: Path) -> None:
    port = free_port()
    unreachable = run_once(
        "orchestrator_api.main",
        {
            "BackendDB": "mysql",
            "MySQLOrchestratorHost": "127.0.0.1",
            "MySQLOrchestratorPort": port,
            "MySQLOrchestratorDatabase": "orchestrator",
            "MySQLOrchestratorUser": "orchestrator_srv",
            "MySQLOrchestratorPassword": SECRET,
            "MySQLConnectTimeoutSeconds": 1,
        },
        tmp_path,
    )
    assert unreachable.returncode == 1, unreachable.stderr
    lines = unreachable.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"orchestrator-topology-api: MySQL 127.0.0.1:{port}/orchestrator: (2003) Can't connect"
    ), lines
    assert "Traceback" not in unreachable.stderr
    assert SECRET not in unreachable.stderr + unreachable.stdout
    incomplete = run_once(
        "orchestrator_api.main",
        {"BackendDB": "mysql", "MySQLOrchestratorPassword": SECRET},
        tmp_path,
    )
    assert incomplete.returncode == 2
    assert incomplete.stderr.strip() == (
        "orchestrator-topology-api: bad configuration: BackendDB: 'mysql' needs "
        "MySQLOrchestratorHost"
    )
