"""docker-compose.yml, run on this machine's real servers (CI has no container engine): the
secrets compose's ``secrets`` service makes (deploy/compose/make-secrets.sh), nats-server with
deploy/compose/nats.conf and the per-service users, etcd with the compose file's TLS flags
(client certificates required), two MariaDB servers set up by the compose init scripts (TLS,
users that must use it, a replica replicating over verified TLS); then the orchestrator
services with exactly what the compose file gives them. Compose also runs PostgreSQL as its
image would first start it (its user, the generated password, TLS, deploy/compose/pg_hba.conf),
both topology-api replicas on it, and every service's compose ``healthcheck`` command (the
MariaDB image's own script aside) must pass. test_deploy_kubernetes.py runs the Kubernetes
manifests the same way and checks them with :func:`check_the_stack`.

What a container would see at a mounted path (``/run/orchestrator``, ``/etc/nats``...) is found
at the directory the mount names; the compose host names (``nats``, ``etcd``, ``db1``) and ports
are this machine's loopback servers on free ports. Then the stack must work with auth and TLS
on: every service up, discovery crawling both servers over TLS, the API answering over HTTPS to
its admin only, and a graceful takeover (a command signed by the API, run by the leader worker)
changing the master.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import _log_tails_on_failure
from tests.harness.etcd import find_etcd
from tests.harness.mariadb import MariadbServer, admin_session
from tests.harness.nats import NatsServer
from tests.harness.ports import LOOPBACK, free_port, free_ports
from tests.harness.postgres import PostgresCluster
from tests.harness.process import (
    ManagedProcess,
    chown_to,
    find_binary,
    http_get,
    run_once,
    tcp_accepts,
)
from tests.integration.test_recovery_metrics import scrape
from tests.integration.test_recovery_stack import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = (
    "discovery",
    "topology-api-1",
    "topology-api-2",
    "coordinator",
    "recovery-1",
    "recovery-2",
)
POSTGRES_DATA = "/var/lib/postgresql/data"  # the image's data volume: here, the server's own
LISTEN_KEYS = (
    "ListenAddress",
    "CoordinatorListenAddress",
    "DiscoveryMetricsListenAddress",
    "RecoveryMetricsListenAddress",
)
# what each service listens on, when ready (a recovery worker listens on nothing)
LISTENS_ON = {
    "orchestrator-topology-api": "ListenAddress",
    "orchestrator-coordinator": "CoordinatorListenAddress",
    "orchestrator-discovery": "DiscoveryMetricsListenAddress",
    "orchestrator-recovery": "RecoveryMetricsListenAddress",
}


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@dataclass
class Machine:
    """Where the compose names land on this machine: mounts and host:port rewrites."""

    secrets: Path
    scratch: Path
    addresses: dict[str, str] = field(default_factory=dict)  # "nats:4222" -> "127.0.0.1:n"

    def mounts(self, service: dict[str, Any]) -> dict[str, Path]:
        """Container path -> the directory or file on this machine, for one service."""
        found: dict[str, Path] = {}
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source, target = volume["source"], volume["target"]
                subpath = volume.get("volume", {}).get("subpath", "")
                assert source == "secrets", f"unexpected volume {volume}"
                found[target] = self.secrets / subpath
            else:
                source, target = volume.split(":")[:2]
                if source.startswith("./"):
                    found[target] = ROOT / source
                else:  # a named data volume: a fresh directory
                    found[target] = self.scratch / f"{source}-{len(found)}"
                    found[target].mkdir(parents=True, exist_ok=True)
        return found

    def translate(self, text: str, mounts: dict[str, Path]) -> str:
        if mounts:  # in one pass, the longest first: a path put in is never translated again
            targets = "|".join(re.escape(t) for t in sorted(mounts, key=len, reverse=True))
            text = re.sub(rf"({targets})(?=/|$|\b)", lambda m: str(mounts[m[1]]), text)
        for address, local in self.addresses.items():
            text = text.replace(address, local)
        return text


def service_environment(machine: Machine, name: str) -> dict[str, str]:
    """The service's compose environment, mounts and addresses translated, listening on free
    loopback ports; nothing else of ours (no ORCHESTRATOR_* from this shell)."""
    service = compose()["services"][name]
    mounts = machine.mounts(service)
    environment = {
        key: machine.translate(str(value), mounts) for key, value in service["environment"].items()
    }
    for key in LISTEN_KEYS:
        if f"ORCHESTRATOR_{key}" in environment:
            environment[f"ORCHESTRATOR_{key}"] = f"{LOOPBACK}:{free_port()}"
    if "ORCHESTRATOR_MySQLTopologyUser" in environment:
        environment.update(
            local_servers_only(environment["ORCHESTRATOR_DiscoveryAllowedHostnameFilters"])
        )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return {**inherited, **environment}


def local_servers_only(shipped: object) -> dict[str, str]:
    """The deployments allow their own servers' names only (checked here); this machine's
    servers are 127.0.0.1, so the allow-list becomes that."""
    assert shipped, "a deployment must restrict the servers the services connect to"
    return {"ORCHESTRATOR_DiscoveryAllowedHostnameFilters": LOOPBACK}


class ServiceProcess(ManagedProcess):
    """One orchestrator service, as compose's ``command`` runs it; ready when it listens on
    the address its environment gives it (its /metrics or API; none when it has none)."""

    ready_timeout = 40.0

    def __init__(self, name: str, argv: list[str], environment: dict[str, str]) -> None:
        super().__init__(name=name)
        self.argv = argv
        self.env = environment
        key = LISTENS_ON.get(Path(argv[0]).name)
        self.listen = environment[f"ORCHESTRATOR_{key}"] if key else None

    def command(self) -> list[str]:
        return self.argv

    def environment(self) -> dict[str, str]:
        return self.env

    def probe(self) -> bool:
        if self.listen is None:
            return self.is_running
        host, _, port = self.listen.rpartition(":")
        return tcp_accepts(host, int(port))


class ComposeEtcd(ManagedProcess):
    """etcd with the compose file's flags, on loopback ports (a member of its own)."""

    def __init__(self, flags: list[str]) -> None:
        super().__init__(name="etcd-compose")
        self.port, self.peer_port = free_ports(2)
        self.flags = flags

    def command(self) -> list[str]:
        peer = f"http://{LOOPBACK}:{self.peer_port}"
        return [
            str(find_etcd()), *self.flags,
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--log-outputs=stderr",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}

    def probe(self) -> bool:
        return tcp_accepts(LOOPBACK, self.port)


class ComposeMariadb(MariadbServer):
    """A harness mariadbd with the TLS files and identity of a compose ``dbN`` service."""

    def __init__(self, ssl_flags: list[str], server_id: int) -> None:
        super().__init__()
        self.ssl_flags = ssl_flags
        self.server_id = server_id

    def prepare(self) -> None:
        super().prepare()
        lines = [
            line
            for line in self.config_file.read_text().splitlines()
            if not line.startswith(("ssl-", "server-id="))
        ]
        lines += [flag.removeprefix("--") for flag in self.ssl_flags]
        lines += [
            f"server-id={self.server_id}",
            "gtid-strict-mode=ON",
            "log-slave-updates=ON",
            f"report-host={LOOPBACK}",
            f"report-port={self.port}",
            "",
        ]
        self.config_file.write_text("\n".join(lines))


def run_init_script(script: str, db: ComposeMariadb, secrets: Path, **extra: str) -> None:
    """A compose init script, as the MariaDB image's entrypoint sources it (its
    ``docker_process_sql`` feeds SQL to the server as root)."""
    mariadb = find_binary("mariadb")
    assert mariadb is not None, "the mariadb client is not installed"
    program = (
        f'docker_process_sql() {{ "{mariadb}" --protocol=tcp -h{LOOPBACK} -P{db.port} -uroot; }}\n'
        f". {ROOT / 'deploy' / 'compose' / script}\n"
    )
    environment = {**os.environ, "ORCHESTRATOR_SECRETS": str(secrets), **extra}
    subprocess.run(["sh", "-ec", program], check=True, env=environment, capture_output=True)


def ssl_flags(name: str, machine: Machine) -> list[str]:
    service = compose()["services"][name]
    mounts = machine.mounts(service)
    return [machine.translate(flag, mounts) for flag in service["command"] if "--ssl" in flag]


def healthcheck_command(
    name: str, machine: Machine, mounts: dict[str, Path], ports: dict[str, str]
) -> list[str]:
    """Compose's health check of ``name`` as this machine runs it: the program found here, the
    files at the directories the mounts name, ``ports`` (``"127.0.0.1:9125"`` -> where the
    service listens here) rewritten."""
    test = compose()["services"][name]["healthcheck"]["test"]
    assert test[0] == "CMD", (name, test)
    program = shutil.which(test[1])
    assert program is not None, f"{name}'s health check needs {test[1]}"
    argv = [program]
    for argument in test[2:]:
        local_argument = argument
        for container, local in ports.items():
            local_argument = local_argument.replace(container, local)
        argv.append(machine.translate(local_argument, mounts))
    return argv


def check_environment() -> dict[str, str]:
    """A container's: no proxy (loopback is asked directly), no etcdctl settings of ours."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith("ETCD")
    }


def passes(check: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        check, capture_output=True, text=True, env=check_environment(), timeout=15, check=False
    )


def wait_healthy(name: str, check: list[str], *, timeout: float = 60.0) -> None:
    """Until the health check passes, as compose waits for ``service_healthy``."""
    deadline = time.monotonic() + timeout
    while (done := passes(check)).returncode != 0:
        assert time.monotonic() < deadline, (
            f"{name} not healthy within {timeout} s: {check}\n{done.stdout}{done.stderr}"
        )
        time.sleep(0.5)


class ComposePostgres(PostgresCluster):
    """Compose's ``postgres`` service on a harness server, as the image first starts it:
    ``initdb`` with ``POSTGRES_USER`` as superuser and the password of
    ``POSTGRES_PASSWORD_FILE`` (SCRAM over the network), ``POSTGRES_DB`` created; then the
    service's command (TLS, deploy/compose/pg_hba.conf). Its mounted files are copied into the
    server's directory, owned by the user the server runs as (in the image, make-secrets.sh
    gives them to its postgres user). Ready when its compose health check passes."""

    def __init__(self, machine: Machine) -> None:
        super().__init__()
        self.machine = machine
        self.service = compose()["services"]["postgres"]
        self.mounts: dict[str, Path] = {}

    def _copy_mounts(self) -> None:
        for target, source in self.machine.mounts(self.service).items():
            if target == POSTGRES_DATA:
                continue
            copy = self.workdir / "mounts" / target.strip("/").replace("/", "-")
            copy.parent.mkdir(exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copy)
            else:
                shutil.copy(source, copy)
            self.mounts[target] = copy
        for path in [self.workdir / "mounts", *(self.workdir / "mounts").rglob("*")]:
            chown_to(path, self.run_as)

    def setting(self, variable: str) -> str:
        return self.machine.translate(str(self.service["environment"][variable]), self.mounts)

    def prepare(self) -> None:
        chown_to(self.workdir, self.run_as)
        self.socket_dir.mkdir()
        chown_to(self.socket_dir, self.run_as)
        self._copy_mounts()
        initdb = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--username", self.setting("POSTGRES_USER"),
            "--pwfile", self.setting("POSTGRES_PASSWORD_FILE"),
            "--auth-local", "trust",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            assert run_once(initdb, log=log, cwd=self.workdir, run_as=self.run_as) == 0, (
                self.log_tail()
            )

    def command(self) -> list[str]:
        argv = self.service["command"]
        assert argv[0] == "postgres", argv
        return [*super().command(), *(self.machine.translate(a, self.mounts) for a in argv[1:])]

    def health_check(self) -> list[str]:
        return healthcheck_command(
            "postgres", self.machine, self.mounts, {"127.0.0.1:5432": f"{LOOPBACK}:{self.port}"}
        )

    def probe(self) -> bool:
        return passes(self.health_check()).returncode == 0

    def create_database(self) -> None:
        """What the image's entrypoint does next: ``POSTGRES_DB``, owned by its user."""
        client = find_binary("psql", [str(self.bin_dir)])
        assert client is not None, "the psql client is not installed"
        psql = [
            str(client), "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port),
            "-U", self.setting("POSTGRES_USER"), "-d", "postgres",
            "-c", f'CREATE DATABASE "{self.setting("POSTGRES_DB")}"',
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            assert run_once(psql, log=log, cwd=self.workdir, run_as=self.run_as) == 0, (
                self.log_tail()
            )


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    """What compose's ``secrets`` service makes, by its script."""
    command = compose()["services"]["secrets"]["command"]
    assert "sh /deploy/make-secrets.sh /secrets" in command[-1]
    return make_secrets(tmp_path / "secrets")


def make_secrets(out: Path) -> Path:
    """deploy/compose/make-secrets.sh's directory of secrets (docs/deploy.md makes the
    Kubernetes Secrets from it too)."""
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "compose" / "make-secrets.sh"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@dataclass
class DeployedStack:
    machine: Machine
    api_url: str
    coordinator_url: str
    db1: ComposeMariadb
    db2: ComposeMariadb
    processes: list[ManagedProcess]
    other_api_urls: tuple[str, ...] = ()  # more API replicas on the same store

    def client(self, *, authenticated: bool = True, url: str = "") -> httpx.Client:
        """The operator's client of the API (of the replica at ``url``, if given)."""
        password = (self.machine.secrets / "operator" / "http-password").read_text()
        context = ssl.create_default_context(cafile=self.machine.secrets / "operator" / "ca.pem")
        return httpx.Client(
            base_url=url or self.api_url,
            verify=context,
            auth=("admin", password) if authenticated else None,
            timeout=10,
        )


def _start(process: ManagedProcess, started: list[ManagedProcess]) -> None:
    started.append(process)
    process.start()


def start_servers(
    machine: Machine, started: list[ManagedProcess]
) -> tuple[ComposeMariadb, ComposeMariadb]:
    """NATS, etcd and two MariaDB servers as the compose file sets them up."""
    start_bus(machine, started)
    return start_databases(machine, started)


def start_bus(machine: Machine, started: list[ManagedProcess]) -> None:
    """nats-server and etcd as the compose file runs them."""
    services = compose()["services"]
    # nats: nats.conf beside users.conf and the secrets, as mounted in /etc/nats
    nats_mounts = machine.mounts(services["nats"])
    etc_nats = machine.scratch / "etc-nats"
    etc_nats.mkdir(parents=True)
    (etc_nats / "users.conf").write_text(nats_mounts["/etc/nats/users.conf"].read_text())
    (etc_nats / "secrets").symlink_to(nats_mounts["/etc/nats/secrets"])
    (etc_nats / "nats.conf").write_text(
        nats_mounts["/etc/nats/nats.conf"].read_text().replace("/etc/nats/", f"{etc_nats}/")
    )
    entrypoint = " ".join(services["nats"]["entrypoint"])
    assert ". /etc/nats/secrets/passwords.env" in entrypoint
    assert "nats-server -js -sd /data -c /etc/nats/nats.conf" in entrypoint  # as here
    passwords = dict(
        line.split("=", 1)
        for line in (machine.secrets / "nats" / "passwords.env").read_text().splitlines()
    )
    nats = NatsServer(config_file=etc_nats / "nats.conf", env=passwords)
    _start(nats, started)
    machine.addresses["nats:4222"] = f"{LOOPBACK}:{nats.port}"

    etcd_service = services["etcd"]
    etcd_mounts = machine.mounts(etcd_service)
    etcd = ComposeEtcd([])
    local = f"{LOOPBACK}:{etcd.port}"
    machine.addresses["0.0.0.0:2379"] = machine.addresses["etcd:2379"] = local
    etcd.flags = [machine.translate(flag, etcd_mounts) for flag in etcd_service["command"][1:]]
    _start(etcd, started)


def start_databases(
    machine: Machine, started: list[ManagedProcess]
) -> tuple[ComposeMariadb, ComposeMariadb]:
    """db1 and its replica db2, set up by the compose file's init scripts (TLS, users)."""
    db1 = ComposeMariadb(ssl_flags("db1", machine), server_id=1)
    _start(db1, started)
    db2 = ComposeMariadb(ssl_flags("db2", machine), server_id=2)
    _start(db2, started)
    run_init_script("init-users.sh", db1, machine.secrets / "db")
    run_init_script("init-users.sh", db2, machine.secrets / "db")
    run_init_script(
        "init-replica.sh",
        db2,
        machine.secrets / "db",
        ORCHESTRATOR_MASTER_HOST=LOOPBACK,
        ORCHESTRATOR_MASTER_PORT=str(db1.port),
    )
    machine.addresses["db1:3306"] = f"{LOOPBACK}:{db1.port}"
    return db1, db2


def _service(name: str, argv: list[str], environment: dict[str, str]) -> ServiceProcess:
    binary = shutil.which(argv[0])
    assert binary is not None, f"{argv[0]} is not installed"
    return ServiceProcess(name, [binary, *argv[1:]], environment)


def local_ports(name: str, environment: dict[str, str]) -> dict[str, str]:
    """``"127.0.0.1:<port in the container>"`` -> where ``name`` listens here, for each of its
    listeners (its health check asks one of them)."""
    shipped = compose()["services"][name]["environment"]
    return {
        f"{LOOPBACK}:{shipped[variable].rpartition(':')[2]}": environment[variable]
        for variable in (f"ORCHESTRATOR_{key}" for key in LISTEN_KEYS)
        if variable in shipped
    }


def local_secret_file(machine: Machine, name: str, environment: dict[str, str], key: str) -> None:
    """A secret file naming compose's hosts and paths (the API's DSN): a copy naming this
    machine's, which the service reads instead."""
    mounts = machine.mounts(compose()["services"][name])
    copy = machine.scratch / name / Path(environment[key]).name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(machine.translate(Path(environment[key]).read_text(), mounts))
    copy.chmod(0o600)
    environment[key] = str(copy)


def start_postgres(machine: Machine, started: list[ManagedProcess]) -> ComposePostgres:
    postgres = ComposePostgres(machine)
    _start(postgres, started)
    postgres.create_database()
    machine.addresses["postgres:5432"] = f"{LOOPBACK}:{postgres.port}"
    return postgres


def wait_servers_healthy(machine: Machine, started: list[ManagedProcess]) -> None:
    """NATS's and etcd's compose health checks pass (start_servers started them)."""
    (nats,) = (p for p in started if isinstance(p, NatsServer))
    (etcd,) = (p for p in started if isinstance(p, ComposeEtcd))
    services = compose()["services"]
    checks = {
        "nats": healthcheck_command(
            "nats", machine, {}, {f"{LOOPBACK}:8222": f"{LOOPBACK}:{nats.monitor_port}"}
        ),
        "etcd": healthcheck_command(
            "etcd",
            machine,
            machine.mounts(services["etcd"]),
            {f"{LOOPBACK}:2379": f"{LOOPBACK}:{etcd.port}"},
        ),
    }
    for name, check in checks.items():
        wait_healthy(name, check)


def start_compose_services(
    machine: Machine, started: list[ManagedProcess]
) -> tuple[list[str], str]:
    """PostgreSQL and the orchestrator services of docker-compose.yml, each healthy by its
    compose health check; the API replicas' URLs and the coordinator's."""
    wait_servers_healthy(machine, started)
    postgres = start_postgres(machine, started)
    wait_healthy("postgres", postgres.health_check())
    services = compose()["services"]
    environments: dict[str, dict[str, str]] = {}
    for name in SERVICES:  # each one's free ports taken just before it binds them
        environments[name] = environment = service_environment(machine, name)
        if "ORCHESTRATOR_PostgreSQLDSN_FILE" in environment:
            local_secret_file(machine, name, environment, "ORCHESTRATOR_PostgreSQLDSN_FILE")
        _start(_service(name, services[name]["command"], environment), started)
    for name in SERVICES:
        mounts = machine.mounts(services[name])
        ports = local_ports(name, environments[name])
        wait_healthy(name, healthcheck_command(name, machine, mounts, ports))
    apis = [name for name in SERVICES if services[name]["command"] == ["orchestrator-topology-api"]]
    return (
        [f"https://{environments[name]['ORCHESTRATOR_ListenAddress']}" for name in apis],
        f"http://{environments['coordinator']['ORCHESTRATOR_CoordinatorListenAddress']}",
    )


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path, secrets: Path) -> Iterator[DeployedStack]:
    machine = Machine(secrets=secrets, scratch=tmp_path / "volumes")
    started: list[ManagedProcess] = []
    try:
        db1, db2 = start_servers(machine, started)
        (api_url, *others), coordinator_url = start_compose_services(machine, started)
        yield DeployedStack(machine, api_url, coordinator_url, db1, db2, started, tuple(others))
    finally:
        _log_tails_on_failure(request, started)
        for process in reversed(started):
            process.close()


def _replica_io_state(db: ComposeMariadb) -> dict[str, Any]:
    session = admin_session(db.host, db.port)
    try:
        with session.cursor() as cursor:
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description or ()]
    finally:
        session.close()
    return dict(zip(names, row or (), strict=False))


def _execute(db: ComposeMariadb, statement: str) -> Any:
    session = admin_session(db.host, db.port)
    try:
        with session.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone()
    finally:
        session.close()


def _read_only(db: ComposeMariadb) -> int:
    return int(_execute(db, "SELECT @@global.read_only")[0])


def listeners(stack: DeployedStack, command: str) -> list[str | None]:
    """Where each process of the stack that runs ``command`` listens (its /metrics, /health
    and /ready, or the API)."""
    return [
        getattr(process, "listen", None)
        for process in stack.processes
        if (argv := getattr(process, "argv", None)) and Path(argv[0]).name == command
    ]


def api_unhealthy_without(store: ComposePostgres, stack: DeployedStack) -> None:
    """Compose's health check of an API replica fails, saying why, while its store is down."""
    store.stop()
    (api,) = (p for p in stack.processes if p.name == "topology-api-1")
    assert isinstance(api, ServiceProcess)
    mounts = stack.machine.mounts(compose()["services"]["topology-api-1"])
    check = healthcheck_command(
        "topology-api-1", stack.machine, mounts, local_ports("topology-api-1", api.env)
    )
    failed = wait_until(
        lambda: (done := passes(check)).returncode == 1 and done,
        timeout=20,
        what="topology-api-1 unhealthy without its store",
    )
    assert "answered 503" in failed.stderr and "store" in failed.stderr, failed.stderr


def test_the_stack_runs_with_auth_and_tls_on(stack: DeployedStack) -> None:
    check_the_stack(stack)


def check_the_stack(stack: DeployedStack) -> None:
    """What a deployment must do, however it is run: replication over TLS, one recovery
    leader, every worker and discovery healthy and ready, the API over HTTPS to its admin only,
    discovery crawling over TLS, a graceful takeover, no secret in any log."""
    # the replica replicates over TLS, db1's certificate checked against the stack's CA
    status = wait_until(
        lambda: (s := _replica_io_state(stack.db2)).get("Slave_IO_Running") == "Yes" and s,
        timeout=20,
        what="db2 replicating from db1",
    )
    assert status["Master_SSL_Allowed"] == "Yes"
    assert status["Master_SSL_Verify_Server_Cert"] == "Yes"
    _execute(stack.db1, "CREATE DATABASE compose_check")  # a GTID for the takeover to compare
    wait_until(
        lambda: _replica_io_state(stack.db2).get("Gtid_IO_Pos"), timeout=20, what="db2 applied it"
    )

    # the recovery workers elect a leader through etcd (TLS, client certificates)
    def leader() -> Any:
        answer = http_get(f"{stack.coordinator_url}/health")
        return answer is not None and answer[0] == 200 and b'"leader_present":true' in answer[1]

    wait_until(leader, timeout=30, what="a recovery leader")
    workers = listeners(stack, "orchestrator-recovery")
    assert len(workers) == 2 and all(workers), workers

    wait_until(
        lambda: sum(scrape(str(a))["orchestrator_recovery_leading"] for a in workers) == 1,
        timeout=15,
        what="one of the two workers leading, on their /metrics",
    )
    # what the Deployments' probes ask of every worker and of discovery (deploy/kubernetes/)
    discovery = listeners(stack, "orchestrator-discovery")
    assert len(discovery) == 1 and all(discovery), discovery
    for address in [*workers, *discovery]:
        for path in ("/health", "/ready"):
            answer = http_get(f"http://{address}{path}")
            assert answer is not None and answer[0] == 200, (address, path, answer)

    # the API: HTTPS only, and only for its admin
    master = f"{LOOPBACK}:{stack.db1.port}"
    with stack.client(authenticated=False) as anonymous:
        assert anonymous.get("/api/clusters").status_code == 401
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port: no answer
        httpx.get(stack.api_url.replace("https://", "http://") + "/api/health", timeout=5)

    with stack.client() as client:
        # discovery crawled both servers over TLS, through NATS with its own user
        def both_discovered() -> Any:
            answer = client.get(f"/api/cluster/{master}")
            if answer.status_code != 200:
                return None
            instances = answer.json()
            return len(instances) == 2 and instances

        instances = wait_until(both_discovered, timeout=40, what="db1 and db2 discovered")
        assert all(instance["IsLastCheckValid"] for instance in instances), instances

        # a graceful takeover: signed by the API, run by the leader worker over TLS
        replica = f"{LOOPBACK}/{stack.db2.port}"
        answer = client.get(f"/api/graceful-master-takeover/{master}/{replica}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["Code"] == "OK", answer.text

        # the other API replicas (compose: topology-api-2) share this one's store: an
        # operator's entry made here is read there
        downtime = f"/api/begin-downtime/{replica}/deploy-check/shared-store/10m"
        assert client.get(downtime).json()["Code"] == "OK"
    for url in stack.other_api_urls:
        with stack.client(url=url) as other:
            audit = other.get("/api/audit").json()
        assert any(
            (entry["AuditType"], entry["User"]) == ("begin-downtime", "admin") for entry in audit
        ), audit

    # db2 is the master, writable; db1 is pointed at it (started by the operator: the
    # non-auto takeover leaves replication stopped, as orchestrator's does)
    assert _read_only(stack.db2) == 0
    assert _read_only(stack.db1) == 1
    demoted = _replica_io_state(stack.db1)
    assert int(demoted["Master_Port"]) == stack.db2.port
    # ...with the successor's TLS options, so the repl user (REQUIRE SSL) can replicate: the
    # operator gives it the replication user and starts it
    assert (demoted["Master_SSL_Allowed"], demoted["Master_SSL_Verify_Server_Cert"]) == (
        "Yes",
        "Yes",
    )
    assert demoted["Master_SSL_CA_File"] == status["Master_SSL_CA_File"]
    password = (stack.machine.secrets / "db" / "repl-password").read_text()
    _execute(stack.db1, f"CHANGE MASTER TO master_user='repl', master_password='{password}'")
    _execute(stack.db1, "START SLAVE")
    wait_until(
        lambda: _replica_io_state(stack.db1).get("Slave_IO_Running") == "Yes",
        timeout=20,
        what="db1 replicating from db2 over TLS",
    )
    for process in stack.processes:
        assert process.is_running, f"{process.name} exited: {process.log_path.read_text()[-2000:]}"

    store = [p for p in stack.processes if isinstance(p, ComposePostgres)]
    if store:  # compose's
        api_unhealthy_without(store[0], stack)

    # no password or key of the stack in any server's or service's log
    secrets = {
        path.name: path.read_text().strip()
        for path in stack.machine.secrets.rglob("*")
        if path.is_file() and ("password" in path.name or "signing-key" in path.name)
    }
    for process in stack.processes:
        log = process.log_path.read_text(errors="replace")
        leaked = [name for name, value in secrets.items() if value in log]
        assert not leaked, f"{process.name}'s log holds {leaked}"
