"""Fixtures giving tests real servers (see tests/harness and docs/testing.md).

Every server fixture is function scoped: a fresh server per test, which the test may stop, kill,
hang or restart at will. Finalizers close the servers even when the test fails, and print the
server's log tail into the failed test's report. After the session, any harness server still open
or any server process still running under this session fails the run.
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import psutil
import pytest

from orchestrator_cli.sandbox import Sandbox, SandboxTLS
from orchestrator_cli.sandbox.config import GALERA_PORTS_PER_NODE
from orchestrator_shared.redact import forget_secrets
from tests import harness
from tests.harness.ports import is_port_free

ServerT = TypeVar("ServerT")

SERVER_PROCESS_NAMES = frozenset({"nats-server", "etcd", "postgres", "mariadbd", "mysqld"})

_phase_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


# --- reporting helpers ----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_phase_reports, {})
    return any(report.failed for report in reports.values())


def _log_tails_on_failure(request: pytest.FixtureRequest, servers: list[harness.Server]) -> None:
    """Shown under "Captured stderr teardown" of a failed test."""
    if not _test_failed(request):
        return
    for server in servers:
        sys.stderr.write(f"\n--- {server!r}: log tail ---\n{server.log_tail()}\n")


def _started(start: Callable[[], ServerT]) -> ServerT:
    try:
        return start()
    except harness.BackendUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    """Secrets registered for redaction by one test (``load_settings`` registers them) do not
    mask another test's text."""
    forget_secrets()
    yield
    forget_secrets()


# --- server fixtures ------------------------------------------------------------------------


class _Closable(Protocol):
    def close(self) -> None: ...


OwnedT = TypeVar("OwnedT", bound=_Closable)


def _owned(
    request: pytest.FixtureRequest,
    start: Callable[[], OwnedT],
    processes: Callable[[OwnedT], list[harness.Server]],
) -> Iterator[OwnedT]:
    """Start a server for one test; close it afterwards, with its log tail if the test failed."""
    server = _started(start)
    try:
        yield server
    finally:
        _log_tails_on_failure(request, processes(server))
        server.close()


@pytest.fixture
def nats_server(request: pytest.FixtureRequest) -> Iterator[harness.NatsLike]:
    """A fresh nats-server with JetStream; ``url``; stop/kill/hang/resume/restart."""
    yield from _owned(request, harness.start_nats, lambda server: [server])


@pytest.fixture
def etcd_server(request: pytest.FixtureRequest) -> Iterator[harness.EtcdLike]:
    """A fresh single-member etcd; ``host``/``port``/``endpoint``; the same controls."""
    yield from _owned(request, harness.start_etcd, lambda server: [server])


@pytest.fixture
def etcd_cluster(request: pytest.FixtureRequest) -> Iterator[harness.EtcdClusterLike]:
    """A fresh 3-member etcd cluster; ``members[i]`` are controllable one by one."""
    yield from _owned(request, harness.start_etcd_cluster, lambda cluster: list(cluster.members))


@pytest.fixture
def postgres_cluster(request: pytest.FixtureRequest) -> Iterator[harness.PostgresLike]:
    """A PostgreSQL server of the test's own (``dsn``), for tests that break the database."""
    yield from _owned(request, harness.start_postgres_cluster, lambda server: [server])


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """The server ``postgres_db`` creates databases on: $ORCHESTRATOR_TEST_PG_DSN, the local
    server at 127.0.0.1:5432, or (laptop fallback) one postgres:16 container for the session."""
    choice = _started(harness.postgres_admin)
    if isinstance(choice, str):
        yield choice
        return
    server = _started(harness.start_postgres_container)
    try:
        yield server.dsn
    finally:
        server.close()


@pytest.fixture
async def postgres_db(postgres_admin_dsn: str) -> AsyncIterator[harness.PostgresDatabase]:
    """A fresh, uniquely named database (``dsn``); dropped afterwards, sessions terminated."""
    database = harness.PostgresDatabase(admin_dsn=postgres_admin_dsn)
    await database.create()
    try:
        yield database
    finally:
        await database.drop()


# --- MariaDB for the MySQL store ---------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb_admin() -> Iterator[harness.MariadbLike]:
    """One MariaDB server for the session, on which ``mariadb_db`` creates databases."""
    server = _started(harness.start_mariadb)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mariadb_db(
    request: pytest.FixtureRequest, mariadb_admin: harness.MariadbLike
) -> Iterator[harness.MariadbDatabase]:
    """A fresh database and a user of its own with the store's grants (``backend()``)."""
    try:
        with harness.MariadbDatabase(host=mariadb_admin.host, port=mariadb_admin.port) as database:
            yield database
    finally:
        _log_tails_on_failure(request, [mariadb_admin])


@pytest.fixture
def mariadb_server(request: pytest.FixtureRequest) -> Iterator[harness.MariadbLike]:
    """A MariaDB server of the test's own, for tests that break it (stop/kill/restart)."""
    yield from _owned(request, harness.start_mariadb, lambda server: [server])


# --- MariaDB ----------------------------------------------------------------------------------
# Sandboxes of real ``mariadbd`` processes (orchestrator_cli.sandbox), on free consecutive
# loopback ports, with PR_SET_PDEATHSIG so a killed pytest takes them along. A factory fixture,
# because tests differ in shape (star, chain, semi-sync) and in whether they break the sandbox:
# ``sandbox_factory`` sandboxes live for one test, ``module_sandbox_factory`` ones for a module.


class SandboxFactory:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sandboxes: list[Sandbox] = []

    def __call__(
        self,
        *,
        nodes: int = 4,
        chain: bool = False,
        semi_sync: bool = False,
        tls: SandboxTLS | None = None,
        galera: int = 0,
        server_defaults: bool = False,
    ) -> Sandbox:
        """``galera``: nodes ``0..galera-1`` form a Galera cluster, the others are async
        replicas of node 0 (each Galera node also takes 3 ports after the nodes')."""
        ports = nodes + GALERA_PORTS_PER_NODE * galera
        for _ in range(5):
            base = random.randrange(61000, 65000 - ports)  # above the ephemeral range
            if all(is_port_free(base + offset) for offset in range(ports)):
                break
        else:
            raise RuntimeError(f"no {ports} consecutive free ports found")
        sandbox = Sandbox.up(
            self._directory / f"sandbox-{len(self._sandboxes)}",
            nodes=nodes,
            base_port=base,
            chain=chain,
            semi_sync=semi_sync,
            tls=tls,
            galera=galera,
            server_defaults=server_defaults,
            parent_death_signal=True,
        )
        self._sandboxes.append(sandbox)
        return sandbox

    def close(self) -> None:
        while self._sandboxes:
            self._sandboxes.pop().down()


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[SandboxFactory]:
    factory = SandboxFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFactory]:
    factory = SandboxFactory(tmp_path_factory.mktemp("sandboxes"))
    try:
        yield factory
    finally:
        factory.close()


GALERA_NODES = 3


@pytest.fixture(scope="module")
def galera_sandbox(module_sandbox_factory: SandboxFactory) -> Sandbox:
    """A 3-node MariaDB Galera cluster (nodes 0, 1, 2: all writable, Synced) and one async
    GTID replica of node 0 (node 3), shared by the module and downed after it (~10 s to build).
    A test that stops or kills a node restarts it (``start`` + ``wait_galera_synced``) or uses
    ``sandbox_factory(nodes=4, galera=3)`` for a cluster of its own."""
    return module_sandbox_factory(nodes=GALERA_NODES + 1, galera=GALERA_NODES)


# --- every test is either unit or integration -----------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The test command runs ``-m unit`` then ``-m integration``: an unmarked test would run in
    neither, silently. Refuse to collect one."""
    unmarked = [
        item.nodeid
        for item in items
        if item.get_closest_marker("unit") is None
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests without a unit or integration marker: " + ", ".join(unmarked[:10])
        )


# --- no leftovers -----------------------------------------------------------------------------


def _stray_server_processes() -> list[psutil.Process]:
    """Server processes still running below this test session (zombies do not count)."""
    strays = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name() in SERVER_PROCESS_NAMES and process.status() != "zombie":
                strays.append(process)
        except psutil.NoSuchProcess:
            continue
    return strays


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    problems = [f"harness server left open: {name}" for name in harness.close_all()]
    for process in _stray_server_processes():
        problems.append(f"server process left running: pid {process.pid} {process.name()}")
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    if not problems:
        return
    message = "LEFTOVER SERVERS (killed now; a fixture or test did not close them):\n  " + (
        "\n  ".join(problems)
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(message, red=True, bold=True)
    else:
        sys.stderr.write(message + "\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
