"""MariaDB for tests, two ways (as for PostgreSQL).

``MariadbServer``: a ``mariadbd`` of its own on a free loopback port, controllable like every
harness process (stop/kill/hang/resume/restart), with TLS on (a throwaway CA in its work
directory) and ``root`` without a password over TCP. Its datadir is a copy of the sandbox's
cached template (``orchestrator_cli.sandbox.template``), so it starts in about a second.

``MariadbDatabase``: a fresh database on such a server, with a user of its own holding exactly
the grants docs/storage.md lists for the MySQL store; dropped at the end (its sessions killed).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

import pymysql

from orchestrator_api.store.mysql import MySQLBackend
from orchestrator_cli.sandbox.template import MariaDBBinaries, copy_template, ensure_template
from orchestrator_cli.sandbox.template import find_binaries as find_mariadb
from orchestrator_shared.errors import SandboxError
from tests.harness.certificates import make_certificates
from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import ManagedProcess, mysql_greets, register, unregister

ROOT = "root"
# What the store's user needs (docs/storage.md, "MySQL/MariaDB").
STORE_GRANTS = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP"


def binaries() -> MariaDBBinaries | None:
    try:
        return find_mariadb()
    except SandboxError:
        return None


class MariadbServer(ManagedProcess):
    """One ``mariadbd``; ``host``/``port``, ``root`` over TCP, ``certificates`` by file name."""

    def __init__(self, *, port: int | None = None) -> None:
        found = binaries()
        if found is None:
            raise FileNotFoundError("mariadbd / mariadb-install-db not found")
        super().__init__(name="mariadb")
        self.binaries = found
        self.port = port or free_port()
        self.certificates: dict[str, Path] = {}

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def config_file(self) -> Path:
        return self.workdir / "my.cnf"

    def prepare(self) -> None:
        try:
            copy_template(ensure_template(self.binaries), self.workdir / "data")
        except SandboxError as exc:
            raise FileNotFoundError(str(exc)) from exc
        self.certificates = make_certificates(self.workdir / "tls")
        lines = [
            "[mariadbd]",
            *(["user=root"] if os.geteuid() == 0 else []),
            f"datadir={self.workdir / 'data'}",
            f"port={self.port}",
            f"bind-address={LOOPBACK}",
            f"socket={self.workdir / 'mariadbd.sock'}",
            f"pid-file={self.workdir / 'mariadbd.pid'}",
            "skip-name-resolve",
            # a binary log as on a production server (READ COMMITTED needs row-based logging)
            "server-id=1",
            "log-bin=mariadb-bin",
            "binlog-format=MIXED",
            f"ssl-ca={self.certificates['ca.pem']}",
            f"ssl-cert={self.certificates['server.pem']}",
            f"ssl-key={self.certificates['server.key']}",
            "performance-schema=OFF",
            "innodb-buffer-pool-size=32M",
            "innodb-log-file-size=8M",
            "innodb-use-native-aio=OFF",
            "innodb-buffer-pool-load-at-startup=OFF",
            "innodb-buffer-pool-dump-at-shutdown=OFF",
            "innodb-flush-log-at-trx-commit=2",
            "max-connections=300",
            "",
        ]
        self.config_file.write_text("\n".join(lines))

    def command(self) -> list[str]:
        return [str(self.binaries.mariadbd), f"--defaults-file={self.config_file}"]

    def probe(self) -> bool:
        return mysql_greets(self.port)


def admin_session(host: str, port: int, **extra: Any) -> Any:
    """A PyMySQL autocommit session as ``root`` (close it)."""
    return pymysql.connect(
        host=host, port=port, user=ROOT, password="", autocommit=True, connect_timeout=10, **extra
    )


class MariadbDatabase:
    """A fresh database and a user of its own (``STORE_GRANTS`` on it) on a MariaDB server;
    ``backend()`` is the store's connection to it. Use as a context manager."""

    def __init__(self, *, host: str, port: int, name: str | None = None) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.host = host
        self.port = port
        self.name = name or f"orch_test_{os.getpid()}_{suffix}"
        self.user = f"orch_{suffix}"
        self.password = secrets.token_hex(12)
        self._created = False

    def backend(self, **changes: Any) -> MySQLBackend:
        """The store's settings for this database (``changes`` override them)."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "database": self.name,
            "user": self.user,
            "password": self.password,
            "connect_timeout": 5.0,
            "read_timeout": 10.0,
            "max_connections": 10,
        }
        return MySQLBackend(**{**settings, **changes})

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement as root in this database; its rows."""
        session = admin_session(self.host, self.port, database=self.name)
        try:
            with session.cursor() as cursor:
                cursor.execute(statement, args or None)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            session.close()

    def create(self, *, database: bool = True) -> None:
        """Create the user (and, unless ``database`` is false, the database)."""
        register(self)
        self._created = True
        session = admin_session(self.host, self.port)
        try:
            with session.cursor() as cursor:
                if database:
                    cursor.execute(f"CREATE DATABASE `{self.name}`")
                cursor.execute(f"CREATE USER '{self.user}'@'%%' IDENTIFIED BY %s", (self.password,))
                cursor.execute(f"GRANT {STORE_GRANTS} ON `{self.name}`.* TO '{self.user}'@'%'")
        finally:
            session.close()

    def drop(self) -> None:
        """Kill the user's sessions, drop the database and the user. Safe to call twice."""
        if not self._created:
            return
        try:
            session = admin_session(self.host, self.port)
        except pymysql.err.OperationalError:
            self._created = False  # the server is gone, and the database with it
            unregister(self)
            return
        try:
            with session.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (self.user,)
                )
                for (connection_id,) in cursor.fetchall():
                    with contextlib.suppress(pymysql.err.OperationalError):  # it ended meanwhile
                        cursor.execute(f"KILL {int(connection_id)}")
                cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
                cursor.execute(f"DROP USER IF EXISTS '{self.user}'@'%'")
        finally:
            session.close()
        self._created = False
        unregister(self)

    def close(self) -> None:
        self.drop()

    def __repr__(self) -> str:
        state = "created" if self._created else "absent"
        return f"<MariadbDatabase {self.name} on {self.host}:{self.port} {state}>"

    def __enter__(self) -> MariadbDatabase:
        self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop()
