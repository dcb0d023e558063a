"""PostgreSQL for tests, two ways.

``PostgresDatabase``: a fresh, uniquely named database on an existing server (the machine's, DSN
from ``ORCHESTRATOR_TEST_PG_DSN``), dropped at the end with its connections terminated. Cheap;
for tests that only need a clean schema.

``PostgresCluster``: a throwaway server of its own (``initdb`` + ``postgres``) on a free loopback
port, controllable like every harness process (stop/kill/hang/resume/restart), for tests that
break the database. When the session runs as root, the server runs as the ``postgres`` OS user
(``initdb`` refuses root) and its work directory is owned by that user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import uuid
from glob import glob
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import (
    ManagedProcess,
    ServerStartError,
    chown_to,
    register,
    run_once,
    unregister,
)

ADMIN_DSN_ENV = "ORCHESTRATOR_TEST_PG_DSN"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SUPERUSER = "postgres"
OS_USER = "postgres"

_PROTOCOL_3 = 196608
_BIN_DIR_PATTERNS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)


def admin_dsn() -> str:
    """DSN of the server ``PostgresDatabase`` creates databases on."""
    return os.environ.get(ADMIN_DSN_ENV) or DEFAULT_ADMIN_DSN


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database`` instead of its own."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _version_key(directory: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", directory))


def postgres_bin_dir() -> Path | None:
    """A directory holding both ``initdb`` and ``postgres`` (the newest version), or None."""
    on_path = shutil.which("initdb")
    candidates = [str(Path(on_path).parent)] if on_path else []
    for pattern in _BIN_DIR_PATTERNS:
        candidates.extend(sorted(glob(pattern), key=_version_key, reverse=True))
    for directory in candidates:
        path = Path(directory)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    return None


def postgres_accepts(host: str, port: int, *, user: str = SUPERUSER, timeout: float = 1.0) -> bool:
    """Whether the server accepts sessions: it answers a startup packet with an auth request.

    A server still starting up (or shutting down, or in recovery) answers with an error instead.
    """
    params = f"user\0{user}\0database\0postgres\0\0".encode()
    startup = struct.pack("!ii", 8 + len(params), _PROTOCOL_3) + params
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(startup)
            accepted = sock.recv(1) == b"R"
            if accepted:
                sock.sendall(b"X" + struct.pack("!i", 4))  # Terminate
            return accepted
    except OSError:
        return False


class PostgresCluster(ManagedProcess):
    """A PostgreSQL server of its own; ``dsn`` connects as superuser ``postgres`` (trust)."""

    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave

    def __init__(self, *, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or postgres_bin_dir()
        if found is None:
            raise FileNotFoundError("initdb/postgres not found (PATH, /usr/lib/postgresql/*/bin)")
        super().__init__(name="postgres", run_as=OS_USER)
        self.bin_dir = found
        self.port = port or free_port()

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "sock"

    def prepare(self) -> None:
        chown_to(self.workdir, self.run_as)
        self.socket_dir.mkdir()
        chown_to(self.socket_dir, self.run_as)
        initdb = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", SUPERUSER,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            code = run_once(initdb, log=log, cwd=self.workdir, run_as=self.run_as)
        if code != 0:
            raise ServerStartError(
                f"initdb exited with code {code}\n--- {self.log_path} ---\n{self.log_tail()}"
            )

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.socket_dir),
            # Throwaway data: commits still reach the kernel, so a killed server keeps them;
            # only a host crash would lose them. (synchronous_commit stays on for that reason.)
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "50",
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def probe(self) -> bool:
        return postgres_accepts(LOOPBACK, self.port)

    def after_exit(self) -> None:
        """Remove the small System V segment a killed postmaster could not remove itself."""
        segment = _orphaned_segment(self.data_dir / "postmaster.pid")
        ipcrm = shutil.which("ipcrm")
        if segment is not None and ipcrm is not None:
            subprocess.run(
                [ipcrm, "-m", str(segment)],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def _orphaned_segment(pid_file: Path) -> int | None:
    """The shm id recorded in ``postmaster.pid`` when that segment exists with nobody attached."""
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 7 or len(lines[6].split()) != 2:
        return None
    key, shmid = (int(field) for field in lines[6].split())
    try:
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except FileNotFoundError:
        return None
    for row in table:
        fields = row.split()  # key shmid perms size cpid lpid nattch ...
        if int(fields[0]) == key and int(fields[1]) == shmid and int(fields[6]) == 0:
            return shmid
    return None


class PostgresDatabase:
    """A fresh database on an existing server; ``dsn`` points at it. Use ``async with``."""

    def __init__(self, *, admin_dsn: str, name: str | None = None) -> None:
        self.name = name or f"orch_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.name):
            raise ValueError(f"not a plain database name: {self.name!r}")
        self.admin_dsn = admin_dsn
        self._created = False

    @property
    def dsn(self) -> str:
        return with_database(self.admin_dsn, self.name)

    async def create(self) -> None:
        connection = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await connection.close()
        self._created = True
        register(self)

    async def drop(self) -> None:
        """Terminate the database's sessions and drop it. Safe to call twice."""
        if not self._created:
            return
        connection = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await connection.close()
        self._created = False
        unregister(self)

    def close(self) -> None:
        """``drop()`` from synchronous code (the session safety net), on a private event loop."""
        if not self._created:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop here: run one without touching the thread's current loop
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                runner.run(self.drop())
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self.drop()).result()

    def __repr__(self) -> str:
        state = "created" if self._created else "absent"
        return f"<PostgresDatabase {self.name} {state}>"

    async def __aenter__(self) -> Self:
        await self.create()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.drop()
