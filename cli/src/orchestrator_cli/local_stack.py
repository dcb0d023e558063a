"""``orchestrator up``: the whole stack on this machine, one process per service.

What it starts, in order (each one ready before the next starts):

1. with ``--sandbox DIR``: a MariaDB sandbox there (or reuses the one already running there),
   whose master becomes the discovery seed when the config names none, and whose topology user
   is used when the config names none;
2. a local ``nats-server`` with JetStream when ``NATSServers`` is empty (data under
   ``<run dir>/nats``); ready when its port answers;
3. a local ``etcd`` when ``EtcdEndpoints`` is empty (data under ``<run dir>/etcd``, wiped at
   each start: it will only hold leases); ready when ``/health`` says so;
4. ``orchestrator-discovery``; ready when its metrics port answers;
5. ``orchestrator-topology-api`` on ``ListenAddress`` with its store as configured (``BackendDB``
   and its settings pass through; by default SQLite in ``<run dir>``); ready when
   ``/api/health`` answers OK (over HTTPS with ``UseSSL``: ``up`` trusts exactly the configured
   ``SSLCertFile``, see :func:`orchestrator_adapters.tls.local_api_context`).

The run dir is ``DIR/run`` with ``--sandbox``, else a temporary directory; each child logs to
``<run dir>/<name>.log`` and gets a generated config file there. Every child is started with
``PR_SET_PDEATHSIG`` (:mod:`orchestrator_cli.children`): if ``up`` is killed, even by SIGKILL,
the kernel takes them along. Ctrl-C / SIGTERM stops them in reverse order.

Then :func:`follow_topology` prints the topology as the API shows it, whenever it changes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from orchestrator_cli.children import spawn_child
from orchestrator_cli.sandbox.config import REPLICATION_PASSWORD, REPLICATION_USER
from orchestrator_shared.command_signing import generate_key
from orchestrator_shared.config import Settings, parse_listen_address
from orchestrator_shared.errors import OrchestratorError

SANDBOX_USER = "orchestrator"
SANDBOX_PASSWORD = "orch_topology"
DEFAULT_DISCOVERY_METRICS = "127.0.0.1:9125"
DEFAULT_SQLITE_FILE = "orchestrator.sqlite3"
DEFAULT_COORDINATOR_ADDRESS = "127.0.0.1:9127"
READY_TIMEOUT = 30.0


class StackError(OrchestratorError):
    """The local stack could not be started, or one of its processes died."""


class PortInUseError(StackError):
    """A port the configuration names is taken by another program."""

    def __init__(self, setting: str, address: str) -> None:
        _, port = parse_listen_address(address)
        super().__init__(
            f"port {port} is already in use ({setting} is {address!r}): stop what listens "
            f"there or set {setting} in --config FILE or ORCHESTRATOR_{setting}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_address_free(address: str) -> bool:
    """Whether a server could listen on ``host:port`` now (lingering TIME_WAIT sockets aside,
    as servers set SO_REUSEADDR too)."""
    host, port = parse_listen_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise StackError(f"cannot listen on {address}: {exc.strerror}") from None
    return True


def check_ports(settings: Settings) -> None:
    """Fail before starting anything when a port the configuration names is taken."""
    if not is_address_free(settings.ListenAddress):
        raise PortInUseError("ListenAddress", settings.ListenAddress)
    metrics = settings.DiscoveryMetricsListenAddress
    if metrics and metrics != DEFAULT_DISCOVERY_METRICS and not is_address_free(metrics):
        raise PortInUseError("DiscoveryMetricsListenAddress", metrics)


# how up's own requests to the API verify it: True for http://, the pinning context for https://
Verify = ssl.SSLContext | bool


def api_url(listen_address: str, prefix: str = "", *, scheme: str = "http") -> str:
    """The URL a local client uses for a server on ``listen_address`` (under ``URLPrefix``
    ``prefix``, already normalized)."""
    host, port = parse_listen_address(listen_address)
    if host in {"0.0.0.0", ""}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{prefix}"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self.process.returncode} "
                f"(log: {self.log_path}):\n{self.log_tail()}"
            )


def _spawn(name: str, argv: list[str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    try:
        process = spawn_child(argv, log=log_path, parent_death_signal=True)
    except OSError as exc:
        raise StackError(f"cannot start {name}: {exc.strerror}") from None
    return Child(name=name, process=process, log_path=log_path)


def _wait_ready(child: Child, is_ready: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not is_ready():
        child.check_alive()
        if time.monotonic() > deadline:
            raise StackError(
                f"{child.name} was not ready within {READY_TIMEOUT:g}s ({what}); "
                f"see {child.log_path}"
            )
        time.sleep(0.1)


def _port_answers(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check


def _json_answers(
    url: str, expected: Callable[[Any], bool], *, verify: Verify = True
) -> Callable[[], bool]:
    def check() -> bool:
        try:
            answer = httpx.get(url, timeout=1, verify=verify)
            return answer.status_code == 200 and expected(answer.json())
        except (httpx.HTTPError, ValueError):
            return False

    return check


def _find_program(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        raise StackError(f"{name} not found: install it (Debian: apt-get install {package})")
    return found


def find_nats_server() -> str:
    return _find_program("nats-server", "nats-server")


@contextlib.contextmanager
def local_nats(data_dir: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    child = _spawn(
        "nats-server",
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)],
        log_dir,
    )
    try:
        _wait_ready(child, _port_answers(port), what=f"listening on 127.0.0.1:{port}")
        yield f"nats://127.0.0.1:{port}"
    finally:
        child.stop()


@contextlib.contextmanager
def local_etcd(data_dir: Path, log_dir: Path) -> Iterator[str]:
    """A one-member etcd on free loopback ports; yields its client URL."""
    shutil.rmtree(data_dir, ignore_errors=True)
    client = f"http://127.0.0.1:{free_port()}"
    peer = f"http://127.0.0.1:{free_port()}"
    child = _spawn(
        "etcd",
        [
            _find_program("etcd", "etcd-server"),
            "--name=orchestrator-up",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=orchestrator-up={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
        ],
        log_dir,
    )
    try:
        healthy = _json_answers(f"{client}/health", lambda body: body.get("health") == "true")
        _wait_ready(child, healthy, what=f"{client}/health")
        yield client
    finally:
        child.stop()


def _write_config(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)  # it may hold the topology password
    path.write_text(json.dumps(document, indent=2))


@contextlib.contextmanager
def discovery_process(settings: dict[str, Any], run_dir: Path) -> Iterator[Child]:
    config_path = run_dir / "discovery.conf.json"
    _write_config(config_path, settings)
    child = _spawn(
        "discovery",
        [sys.executable, "-m", "orchestrator_discovery.main", "--config", str(config_path)],
        run_dir,
    )
    try:
        metrics = settings.get("DiscoveryMetricsListenAddress", "")
        if metrics:
            _, port = parse_listen_address(metrics)
            _wait_ready(child, _port_answers(port), what=f"metrics on {metrics}")
        yield child
    finally:
        child.stop()


@contextlib.contextmanager
def api_process(
    settings: dict[str, Any], run_dir: Path, *, url: str, verify: Verify = True
) -> Iterator[Child]:
    """``orchestrator-topology-api``; yields once ``/api/health`` answers OK at ``url``."""
    config_path = run_dir / "topology-api.conf.json"
    _write_config(config_path, settings)
    child = _spawn(
        "topology-api",
        [sys.executable, "-m", "orchestrator_api.main", "--config", str(config_path)],
        run_dir,
    )
    try:
        healthy = _json_answers(
            f"{url}/api/health", lambda body: body.get("Code") == "OK", verify=verify
        )
        try:
            _wait_ready(child, healthy, what=f"{url}/api/health")
        except StackError:
            if "address already in use" in child.log_tail().lower():  # taken since checked
                raise PortInUseError("ListenAddress", settings["ListenAddress"]) from None
            raise
        yield child
    finally:
        child.stop()


@contextlib.contextmanager
def coordinator_process(settings: dict[str, Any], run_dir: Path) -> Iterator[Child]:
    """``orchestrator-coordinator``; yields once its ``/health`` answers."""
    document = dict(settings)
    if document.get("CoordinatorListenAddress") == DEFAULT_COORDINATOR_ADDRESS:
        document["CoordinatorListenAddress"] = f"127.0.0.1:{free_port()}"
    config_path = run_dir / "coordinator.conf.json"
    _write_config(config_path, document)
    child = _spawn(
        "coordinator",
        [sys.executable, "-m", "orchestrator_coordinator.main", "--config", str(config_path)],
        run_dir,
    )
    try:
        _, port = parse_listen_address(document["CoordinatorListenAddress"])
        _wait_ready(child, _port_answers(port), what=f"coordinator on port {port}")
        yield child
    finally:
        child.stop()


@contextlib.contextmanager
def recovery_process(settings: dict[str, Any], run_dir: Path, name: str) -> Iterator[Child]:
    """One ``orchestrator-recovery`` worker (it campaigns for the leadership itself)."""
    config_path = run_dir / f"{name}.conf.json"
    _write_config(config_path, settings)
    child = _spawn(
        name,
        [sys.executable, "-m", "orchestrator_recovery.main", "--config", str(config_path)],
        run_dir,
    )
    try:
        yield child
    finally:
        child.stop()


def recovery_settings(common: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A local stack recovers every cluster unless the configuration says otherwise
    (orchestrator's default, no filter, would make its failover a no-op)."""
    document = dict(common)
    if not settings.RecoverMasterClusterFilters:
        document["RecoverMasterClusterFilters"] = ["*"]
    if not settings.RecoverIntermediateMasterClusterFilters:
        document["RecoverIntermediateMasterClusterFilters"] = ["*"]
    return document


def common_settings(
    settings: Settings,
    *,
    nats_servers: list[str],
    etcd_endpoints: list[str],
    seeds: list[str],
    sandbox_credentials: bool,
    sandbox_ca: Path | None = None,
) -> dict[str, Any]:
    """The configuration every child shares: the user's, plus what ``up`` started, and a
    fresh command signing key when none is configured. ``sandbox_ca``: the sandbox serves
    TLS from this CA; unless TLS to MySQL is configured, topology connections verify it."""
    document: dict[str, Any] = json.loads(settings.model_dump_json())
    document["NATSServers"] = nats_servers
    document["EtcdEndpoints"] = etcd_endpoints
    if not settings.DiscoverySeeds:
        document["DiscoverySeeds"] = seeds
    if not settings.CommandSigningKey and not settings.AllowUnsignedCommands:
        # the API signs commands with it, the workers verify (only these children know it;
        # their config files are readable by the owner alone)
        document["CommandSigningKey"] = generate_key()
    if sandbox_credentials and not settings.MySQLTopologyUser:
        document["MySQLTopologyUser"] = SANDBOX_USER
        document["MySQLTopologyPassword"] = SANDBOX_PASSWORD
    if sandbox_ca is not None and not settings.MySQLTopologyUseMutualTLS:
        document["MySQLTopologyUseMutualTLS"] = True
        document["MySQLTopologySSLCAFile"] = str(sandbox_ca.resolve())
    if sandbox_credentials and not settings.ReplicationCredentialsQuery:
        # the sandbox's replication user, so a demoted master can replicate after a takeover
        document["ReplicationCredentialsQuery"] = (
            f"SELECT '{REPLICATION_USER}' AS user, '{REPLICATION_PASSWORD}' AS password"
        )
    return document


def discovery_settings(common: dict[str, Any]) -> dict[str, Any]:
    document = dict(common)
    if document.get("DiscoveryMetricsListenAddress") == DEFAULT_DISCOVERY_METRICS:
        document["DiscoveryMetricsListenAddress"] = f"127.0.0.1:{free_port()}"
    return document


def api_settings(common: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    document = dict(common)
    if document.get("SQLite3DataFile") == DEFAULT_SQLITE_FILE:
        document["SQLite3DataFile"] = str(run_dir.resolve() / DEFAULT_SQLITE_FILE)
    return document


# --- following the topology through the API ---------------------------------------------------


def _get(client: httpx.Client, path: str) -> Any:
    answer = client.get(path)
    answer.raise_for_status()
    return answer.json()


def _rendered_topology(client: httpx.Client) -> str:
    blocks = []
    for info in sorted(_get(client, "/api/clusters-info"), key=lambda i: str(i["ClusterName"])):
        name, alias = str(info["ClusterName"]), str(info["ClusterAlias"])
        text = _get(client, f"/api/topology/{quote(name, safe=':[]')}").get("Details") or ""
        header = f"cluster {name}" + (f" (alias {alias})" if alias and alias != name else "")
        blocks.append(f"{header}\n{str(text).rstrip()}")
    return "\n\n".join(blocks)


def _all_answering(client: httpx.Client, expect: Collection[str]) -> bool:
    answering = {
        f"{i['Key']['Hostname']}:{i['Key']['Port']}"
        for i in _get(client, "/api/all-instances")
        if i.get("IsLastCheckValid")
    }
    return set(expect) <= answering


def discover_through_api(url: str, key: str, *, verify: Verify = True) -> None:
    """Ask the API to discover ``key`` now (for a sandbox the configured seeds do not name)."""
    host, _, port = key.rpartition(":")
    answer = httpx.get(
        f"{url}/api/discover/{quote(host, safe='')}/{port}", timeout=15, verify=verify
    )
    if answer.status_code != 200:
        raise StackError(f"discovering {key} failed: {answer.json().get('Message', answer.text)}")


def follow_topology(
    url: str,
    *,
    children: list[Child],
    expect: Collection[str] | None,
    give_up_after: float | None,
    out: IO[str],
    verify: Verify = True,
) -> bool:
    """Print the topology the API shows each time it changes. With ``expect`` (instance keys):
    return True once all of them are discovered and answering, False when ``give_up_after``
    seconds pass first. Raises :class:`StackError` when a child dies."""
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    last_text = ""
    with httpx.Client(base_url=url, timeout=5, verify=verify) as client:
        while True:
            for child in children:
                child.check_alive()
            try:
                done = expect is not None and _all_answering(client, expect)
                text = _rendered_topology(client)  # after: with every instance when done
            except (httpx.HTTPError, ValueError, KeyError):
                text, done = last_text, False  # a slow or odd answer: ask again
            if text and text != last_text:
                out.write(f"\n{datetime.now(UTC):%H:%M:%S} discovered topology:\n{text}\n")
                out.flush()
                last_text = text
            if done:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.5)


# --- signals ----------------------------------------------------------------------------------


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C, so ``finally`` blocks stop every child."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def defer_signals() -> None:
    """While stopping: a second Ctrl-C / SIGTERM must not cut the shutdown short. (A no-op
    handler rather than SIG_IGN, which processes started meanwhile would inherit.)"""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
