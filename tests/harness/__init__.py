"""Real servers for integration tests: nats-server, etcd (1 or N members), PostgreSQL, MariaDB.

Each ``start_*`` function picks a backend (``containers.choose_backend``: the local binary, else a
Docker container, else ``BackendUnavailable`` naming what to install), starts the server on free
loopback ports and returns it ready. Both backends offer the same properties and controls, typed
by the protocols below, so a test never knows which one it got. See docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from tests.harness.containers import (
    BACKEND_ENV,
    ETCD,
    MARIADB,
    NATS,
    POSTGRES,
    Backend,
    EtcdContainer,
    EtcdContainerCluster,
    MariaDBContainer,
    NatsContainer,
    PostgresContainer,
    ServerKind,
    Unavailable,
    choose_backend,
    choose_postgres_admin,
    docker_available,
    parse_backend,
)
from tests.harness.etcd import EtcdCluster, EtcdServer
from tests.harness.mariadb import MariadbDatabase, MariadbServer
from tests.harness.mariadb import binaries as mariadb_binaries
from tests.harness.nats import NatsServer
from tests.harness.postgres import (
    ADMIN_DSN_ENV,
    DEFAULT_ADMIN_DSN,
    PostgresCluster,
    PostgresDatabase,
    postgres_accepts,
    postgres_bin_dir,
)
from tests.harness.process import (
    BackendUnavailable,
    HarnessError,
    ServerStartError,
    close_all,
    find_binary,
    is_gone,
    open_servers,
    start_with_fresh_ports,
    wait_gone,
)


class Server(Protocol):
    """The controls every harness server has, process or container."""

    @property
    def is_running(self) -> bool: ...
    def start(self, *, wait: bool = True) -> None: ...
    def wait_ready(self, timeout: float | None = None) -> None: ...
    def stop(self, *, timeout: float | None = None) -> None: ...
    def kill(self) -> None: ...
    def hang(self) -> None: ...
    def resume(self) -> None: ...
    def restart(self, *, wait: bool = True) -> None: ...
    def close(self) -> None: ...
    def pids(self) -> list[int]: ...
    def log_tail(self, lines: int = 40) -> str: ...


class NatsLike(Server, Protocol):
    @property
    def url(self) -> str: ...


class EtcdLike(Server, Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def endpoint(self) -> str: ...


class EtcdClusterLike(Protocol):
    @property
    def members(self) -> Sequence[EtcdLike]: ...
    @property
    def endpoints(self) -> list[str]: ...
    @property
    def is_running(self) -> bool: ...
    def wait_healthy(self, timeout: float = 15.0) -> None: ...
    def pids(self) -> list[int]: ...
    def close(self) -> None: ...


class PostgresLike(Server, Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def dsn(self) -> str: ...


class MariadbLike(Server, Protocol):
    """A MariaDB server: ``root`` without password over TCP, TLS on with ``certificates``."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def certificates(self) -> dict[str, Path]: ...


def backend_for(kind: ServerKind, *, found: Sequence[str] | None = None) -> Backend:
    """The backend for ``kind`` on this machine, or BackendUnavailable saying what to install."""
    present = (
        [binary for binary in kind.binaries if find_binary(binary) is not None]
        if found is None
        else list(found)
    )
    forced = parse_backend(os.environ.get(BACKEND_ENV))
    needs_docker = forced is Backend.CONTAINER or len(present) < len(kind.binaries)
    choice = choose_backend(
        kind,
        found=present,
        docker_available=needs_docker and docker_available(),
        forced=forced,
    )
    if isinstance(choice, Unavailable):
        raise BackendUnavailable(choice.reason)
    return choice


def start_nats() -> NatsLike:
    if backend_for(NATS) is Backend.PROCESS:
        return start_with_fresh_ports(NatsServer)
    return start_with_fresh_ports(NatsContainer)


def start_etcd() -> EtcdLike:
    if backend_for(ETCD) is Backend.PROCESS:
        return start_with_fresh_ports(EtcdServer)
    return start_with_fresh_ports(EtcdContainer)


def start_etcd_cluster(size: int = 3) -> EtcdClusterLike:
    if backend_for(ETCD) is Backend.PROCESS:
        return start_with_fresh_ports(lambda: EtcdCluster(size=size))
    return start_with_fresh_ports(lambda: EtcdContainerCluster(size=size))


def start_postgres_cluster() -> PostgresLike:
    found = list(POSTGRES.binaries) if postgres_bin_dir() is not None else []
    if backend_for(POSTGRES, found=found) is Backend.PROCESS:
        return start_with_fresh_ports(PostgresCluster)
    return start_with_fresh_ports(PostgresContainer)


def postgres_admin() -> str | Backend:
    """The admin DSN for ``PostgresDatabase``, or ``Backend.CONTAINER``: start one to get it."""
    env_dsn = os.environ.get(ADMIN_DSN_ENV)
    parts = urlsplit(DEFAULT_ADMIN_DSN)
    reachable = env_dsn is None and postgres_accepts(parts.hostname or "", parts.port or 5432)
    choice = choose_postgres_admin(
        env_dsn=env_dsn,
        default_dsn=DEFAULT_ADMIN_DSN,
        default_reachable=reachable,
        docker_available=not env_dsn and not reachable and docker_available(),
    )
    if isinstance(choice, Unavailable):
        raise BackendUnavailable(choice.reason)
    return choice


def start_postgres_container() -> PostgresLike:
    return start_with_fresh_ports(PostgresContainer)


def start_mariadb() -> MariadbLike:
    """A MariaDB server of its own (``mariadbd`` from the sandbox's template, else a container)."""
    found = list(MARIADB.binaries) if mariadb_binaries() is not None else []
    if backend_for(MARIADB, found=found) is Backend.PROCESS:
        return start_with_fresh_ports(MariadbServer)
    return start_with_fresh_ports(MariaDBContainer)


__all__ = [
    "Backend",
    "BackendUnavailable",
    "EtcdClusterLike",
    "EtcdLike",
    "HarnessError",
    "MariadbDatabase",
    "MariadbLike",
    "NatsLike",
    "PostgresDatabase",
    "PostgresLike",
    "Server",
    "ServerStartError",
    "backend_for",
    "close_all",
    "is_gone",
    "open_servers",
    "postgres_admin",
    "start_etcd",
    "start_etcd_cluster",
    "start_mariadb",
    "start_nats",
    "start_postgres_cluster",
    "start_postgres_container",
    "wait_gone",
]
