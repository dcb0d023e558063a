"""The laptop fallback: the same servers in Docker containers, and the choice of backend.

``choose_backend`` is the rule, pure so it is unit-tested: the server binary present -> a local
process; else a reachable Docker engine -> a container; else a clear "install this" message.
``ORCHESTRATOR_TEST_BACKEND=process|container`` forces one side.

Containers get fixed loopback host ports chosen up front, so ``restart()`` (``docker start`` of the
stopped container, same writable layer) keeps both the ports and the data, like a process restart.
The controls map onto the engine: stop -> ``docker stop``, kill -> ``docker kill``, hang ->
``docker pause`` (cgroup freezer), resume -> ``docker unpause``. ``pids()`` is empty: the
engine owns the processes; testcontainers' reaper (Ryuk) removes containers of a dead session.
"""

from __future__ import annotations

import enum
import functools
import gc
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from tests.harness.certificates import make_certificates
from tests.harness.etcd import ELECTION_MS, HEARTBEAT_MS, is_healthy
from tests.harness.ports import LOOPBACK, free_port
from tests.harness.postgres import postgres_accepts
from tests.harness.process import (
    HarnessError,
    ServerStartError,
    http_get,
    mysql_greets,
    register,
    tcp_accepts,
    unregister,
)

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

BACKEND_ENV = "ORCHESTRATOR_TEST_BACKEND"


class Backend(enum.Enum):
    PROCESS = "process"
    CONTAINER = "container"


@dataclass(frozen=True)
class Unavailable:
    """No way to run the server here; ``reason`` says what to install."""

    reason: str


@dataclass(frozen=True)
class ServerKind:
    name: str
    binaries: tuple[str, ...]
    image: str
    package: str


NATS = ServerKind("NATS", ("nats-server",), "nats:2", "nats-server")
ETCD = ServerKind("etcd", ("etcd",), "quay.io/coreos/etcd:v3.5.17", "etcd-server")
POSTGRES = ServerKind("PostgreSQL", ("initdb", "postgres"), "postgres:16", "postgresql")
MARIADB = ServerKind("MariaDB", ("mariadbd",), "mariadb:10.11", "mariadb-server")


def parse_backend(value: str | None) -> Backend | None:
    """The forced backend from ``ORCHESTRATOR_TEST_BACKEND`` (empty: choose automatically)."""
    if not value:
        return None
    try:
        return Backend(value.strip().lower())
    except ValueError:
        raise ValueError(f"{BACKEND_ENV}={value!r}: expected 'process' or 'container'") from None


def choose_backend(
    kind: ServerKind,
    *,
    found: Collection[str],
    docker_available: bool,
    forced: Backend | None = None,
) -> Backend | Unavailable:
    """Where tests get a ``kind`` server: local binary first, then Docker, else what to install."""
    missing = [binary for binary in kind.binaries if binary not in found]
    install = f"install {', '.join(kind.binaries)} (Debian: apt-get install {kind.package})"
    docker = f"start a Docker engine (image {kind.image})"
    if forced is Backend.PROCESS:
        if missing:
            return Unavailable(
                f"{kind.name}: {BACKEND_ENV}=process, {missing} not found; {install}"
            )
        return Backend.PROCESS
    if forced is Backend.CONTAINER:
        if not docker_available:
            return Unavailable(f"{kind.name}: {BACKEND_ENV}=container, no Docker engine; {docker}")
        return Backend.CONTAINER
    if not missing:
        return Backend.PROCESS
    if docker_available:
        return Backend.CONTAINER
    return Unavailable(f"{kind.name}: {missing} not found, no Docker engine; {install} or {docker}")


def choose_postgres_admin(
    *, env_dsn: str | None, default_dsn: str, default_reachable: bool, docker_available: bool
) -> str | Backend | Unavailable:
    """Which server ``PostgresDatabase`` creates databases on: a DSN, or a container to start."""
    if env_dsn:
        return env_dsn
    if default_reachable:
        return default_dsn
    if docker_available:
        return Backend.CONTAINER
    return Unavailable(
        f"PostgreSQL: nothing answers at {default_dsn} and no Docker engine; set "
        "ORCHESTRATOR_TEST_PG_DSN, or install PostgreSQL (apt-get install postgresql), "
        f"or start a Docker engine (image {POSTGRES.image})"
    )


@functools.cache
def docker_available() -> bool:
    """Whether docker-py (what testcontainers uses) reaches an engine. Probed once."""
    import docker  # noqa: PLC0415 (only needed on the fallback path)

    with warnings.catch_warnings():
        # docker-py leaves its socket unclosed when the engine is absent.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (docker.errors.DockerException, OSError):
            return False
        finally:
            gc.collect()


class ContainerServer:
    """One container with fixed loopback host ports and the harness controls."""

    ready_timeout: float = 120.0  # the first start may pull the image

    def __init__(
        self,
        *,
        name: str,
        image: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        ports: dict[int, int],
        network: Network | None = None,
        alias: str | None = None,
    ) -> None:
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415

        self.name = name
        self.host_ports = dict(ports)
        self._container: DockerContainer = DockerContainer(
            image,
            env=env or {},
            network=network,
            network_aliases=[alias] if alias else None,
        )
        if command is not None:
            self._container.with_command(command)
        bindings: dict[str, Any] = self._container.ports
        for container_port, host_port in ports.items():
            bindings[f"{container_port}/tcp"] = (LOOPBACK, host_port)  # loopback only
        self._started = False
        self._closed = False

    def probe(self) -> bool:
        return all(tcp_accepts(LOOPBACK, port) for port in self.host_ports.values())

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def is_running(self) -> bool:
        if not self._started or self._closed:
            return False
        return self._status() in ("running", "paused")

    def pids(self) -> list[int]:
        return []

    def log_tail(self, lines: int = 40) -> str:
        if not self._started:
            return "(not started)"
        return bytes(self._wrapped().logs(tail=lines)).decode("utf-8", errors="replace")

    def start(self, *, wait: bool = True) -> None:
        if self._closed:
            raise HarnessError(f"{self!r} is closed")
        if self._started:
            self._wrapped().start()
        else:
            register(self)
            self._started = True
            self._container.start()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self.probe():
            status = self._status()
            if status not in ("running", "created", "restarting"):
                raise ServerStartError(f"{self.name} container is {status}\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} not ready within {limit:.0f} s\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, *, timeout: float | None = None) -> None:
        if self.is_running:
            if self._status() == "paused":
                self._wrapped().unpause()
            self._wrapped().stop(timeout=int(timeout or 10))

    def kill(self) -> None:
        if self.is_running:
            self._wrapped().kill()

    def hang(self) -> None:
        self._wrapped().pause()

    def resume(self) -> None:
        self._wrapped().unpause()

    def restart(self, *, wait: bool = True) -> None:
        self.stop()
        self.start(wait=wait)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                self._container.stop()  # removes it, with its anonymous volumes
        finally:
            unregister(self)

    def _wrapped(self) -> Any:
        return self._container.get_wrapped_container()

    def _status(self) -> str:
        wrapped = self._wrapped()
        if wrapped is None:  # the engine never created it
            return "absent"
        wrapped.reload()
        return str(wrapped.status)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ports={self.host_ports}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NatsContainer(ContainerServer):
    def __init__(self) -> None:
        self.port = free_port()
        self.monitor_port = free_port()
        super().__init__(
            name="nats",
            image=NATS.image,
            command=["--jetstream", "--store_dir", "/data", "--http_port", "8222"],
            ports={4222: self.port, 8222: self.monitor_port},
        )

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def probe(self) -> bool:
        answer = http_get(f"http://{LOOPBACK}:{self.monitor_port}/healthz?js-enabled-only=true")
        return answer is not None and answer[0] == 200 and tcp_accepts(LOOPBACK, self.port)


class EtcdContainer(ContainerServer):
    """One etcd member; alone it is a single-member cluster."""

    def __init__(
        self,
        *,
        member_name: str = "solo",
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        network: Network | None = None,
    ) -> None:
        self.member_name = member_name
        self.port = free_port()
        peer = f"http://{member_name}:2380" if network else "http://127.0.0.1:2380"
        token = cluster_token or f"harness-{uuid.uuid4().hex[:12]}"
        command = [
            "/usr/local/bin/etcd",
            "--name", member_name,
            "--data-dir", "/etcd-data",
            "--listen-client-urls", "http://0.0.0.0:2379",
            "--advertise-client-urls", f"http://{LOOPBACK}:{self.port}",
            "--listen-peer-urls", "http://0.0.0.0:2380",
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial_cluster or f"{member_name}={peer}",
            "--initial-cluster-token", token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
        ]  # fmt: skip
        super().__init__(
            name=f"etcd-{member_name}",
            image=ETCD.image,
            command=command,
            ports={2379: self.port},
            network=network,
            alias=member_name if network else None,
        )

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint]

    def probe(self) -> bool:
        return is_healthy(self.endpoint)


class EtcdContainerCluster:
    """``size`` etcd containers on their own Docker network (peers reach each other by name)."""

    def __init__(self, *, size: int = 3) -> None:
        from testcontainers.core.network import Network  # noqa: PLC0415

        self._network = Network()
        self._network_created = False
        names = [f"m{index}" for index in range(size)]
        initial = ",".join(f"{name}=http://{name}:2380" for name in names)
        token = f"harness-{uuid.uuid4().hex[:12]}"
        self.members = [
            EtcdContainer(
                member_name=name,
                initial_cluster=initial,
                cluster_token=token,
                network=self._network,
            )
            for name in names
        ]

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def is_running(self) -> bool:
        return any(member.is_running for member in self.members)

    def pids(self) -> list[int]:
        return []

    def start(self) -> None:
        self._network.create()
        self._network_created = True
        for member in self.members:
            member.start(wait=False)
        for member in self.members:
            member.wait_ready()

    def wait_healthy(self, timeout: float = 15.0, *, members: Any = None) -> None:
        deadline = time.monotonic() + timeout
        for member in self.members if members is None else members:
            if member.is_running:
                member.wait_ready(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        try:
            for member in self.members:
                member.close()
        finally:
            if self._network_created:
                self._network_created = False
                self._network.remove()

    def __repr__(self) -> str:
        return f"<EtcdContainerCluster {self.members!r}>"


class PostgresContainer(ContainerServer):
    """postgres:16, superuser ``postgres`` with trust authentication."""

    def __init__(self) -> None:
        self.port = free_port()
        super().__init__(
            name="postgres",
            image=POSTGRES.image,
            env={"POSTGRES_HOST_AUTH_METHOD": "trust"},
            command=["postgres", "-c", "fsync=off"],
            ports={5432: self.port},
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def probe(self) -> bool:
        return postgres_accepts(LOOPBACK, self.port)


class MariaDBContainer(ContainerServer):
    """mariadb:10.11 with a passwordless ``root`` reachable over TCP, and TLS on: certificates
    made on the host (``certificates``), mounted read-only."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tls_dir = Path(tempfile.mkdtemp(prefix="orch-mariadb-tls-"))
        self.certificates = make_certificates(self.tls_dir)
        self.tls_dir.chmod(0o755)  # the server runs as the image's mysql user
        for path in self.certificates.values():
            path.chmod(0o644)
        super().__init__(
            name="mariadb",
            image=MARIADB.image,
            env={"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1", "MARIADB_ROOT_HOST": "%"},
            command=[
                "--log-bin=mysql-bin",
                "--server-id=1",
                "--gtid-strict-mode=ON",
                "--ssl-ca=/tls/ca.pem",
                "--ssl-cert=/tls/server.pem",
                "--ssl-key=/tls/server.key",
            ],
            ports={3306: self.port},
        )
        self._container.with_volume_mapping(str(self.tls_dir), "/tls", "ro")

    def probe(self) -> bool:
        # The image's init phase runs with --skip-networking, so a TCP greeting means ready.
        return mysql_greets(self.port)

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
