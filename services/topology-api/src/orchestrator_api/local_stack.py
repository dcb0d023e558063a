"""``orchestrator up``: the whole stack on this machine, one process per service.

What it starts, in order:

1. with ``--sandbox DIR``: a MariaDB sandbox there (or reuses the one already running there),
   whose master becomes the discovery seed when the config names none, and whose topology user
   is used when the config names none;
2. a local ``nats-server`` with JetStream when ``NATSServers`` is empty (its data under
   ``DIR/run/nats`` or a temporary directory);
3. ``orchestrator-discovery`` with a generated config file;
4. a watcher that follows the snapshot stream and prints the discovered topology whenever it
   changes (``--once``: print it as soon as every instance of the sandbox is discovered, then
   stop everything and exit).

Ctrl-C / SIGTERM stops what it started (the sandbox too, unless it was already running or
``--keep-sandbox`` is given). The other services join this command as their issues land.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import nats
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from orchestrator_api.children import spawn_child
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import OrchestratorError
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import build_topology, render_topology

SANDBOX_USER = "orchestrator"
SANDBOX_PASSWORD = "orch_topology"


class StackError(OrchestratorError):
    """The local stack could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, *, process: subprocess.Popen[bytes], timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{name} exited with code {process.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g}s")


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


def _spawn(name: str, argv: list[str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    try:
        process = spawn_child(argv, log=log_path, parent_death_signal=True)
    except OSError as exc:
        raise StackError(f"cannot start {name}: {exc.strerror}") from None
    return Child(name=name, process=process, log_path=log_path)


def find_nats_server() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if found is None:
        raise StackError("nats-server not found: install it (Debian: apt-get install nats-server)")
    return found


@contextlib.contextmanager
def local_nats(data_dir: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    child = _spawn(
        "nats-server",
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)],
        log_dir,
    )
    try:
        _wait_port(port, process=child.process, timeout=10, name="nats-server")
        yield f"nats://127.0.0.1:{port}"
    finally:
        child.stop()


@contextlib.contextmanager
def discovery_process(settings: dict[str, Any], run_dir: Path) -> Iterator[Child]:
    config_path = run_dir / "discovery.conf.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(settings, indent=2))
    config_path.chmod(0o600)
    child = _spawn(
        "discovery",
        [sys.executable, "-m", "orchestrator_discovery.main", "--config", str(config_path)],
        run_dir,
    )
    try:
        yield child
    finally:
        child.stop()


async def watch_topology(
    nats_url: str,
    subjects: Subjects,
    *,
    poll_seconds: float,
    expect: int | None,
    discovery: Child,
    give_up_after: float | None,
    out: IO[str],
) -> bool:
    """Print the topology each time it changes. With ``expect``: return once that many
    instances are discovered and answering (True), or False when ``give_up_after`` seconds
    pass first."""
    snapshots: dict[str, InstanceSnapshot] = {}
    changed = asyncio.Event()
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1)

    async def on_snapshot(msg: Msg) -> None:
        snapshot = InstanceSnapshot.from_json(msg.data)
        previous = snapshots.get(snapshot.key)
        snapshots[snapshot.key] = snapshot
        if previous is None or _shape(previous) != _shape(snapshot):
            changed.set()

    js = nc.jetstream()
    deadline = None if give_up_after is None else time.monotonic() + give_up_after
    while True:  # discovery creates the stream when it has connected
        _check_alive(discovery)
        try:
            subscription = await js.subscribe(
                subjects.all_snapshots, cb=on_snapshot, ordered_consumer=True
            )
            break
        except NotFoundError:
            if deadline is not None and time.monotonic() > deadline:
                await nc.close()
                return False
            await asyncio.sleep(0.2)
    last_text = ""
    try:
        while True:
            _check_alive(discovery)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await changed.wait()
            changed.clear()
            text = _render(snapshots, poll_seconds)
            if text and text != last_text:
                out.write(f"\n{datetime.now(UTC):%H:%M:%S} discovered topology:\n{text}\n")
                out.flush()
                last_text = text
            healthy = [s for s in snapshots.values() if s.probe.ok]
            if expect is not None and len(healthy) >= expect:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
    finally:
        await subscription.unsubscribe()
        await nc.close()


def _check_alive(discovery: Child) -> None:
    if discovery.process.poll() is not None:
        raise StackError(
            f"discovery exited with code {discovery.process.returncode}:\n" + discovery.log_tail()
        )


def _shape(snapshot: InstanceSnapshot) -> tuple[Any, ...]:
    channel = snapshot.primary_channel
    return (
        snapshot.probe.ok,
        snapshot.read_only,
        snapshot.replica_keys,
        channel.master_key if channel else None,
        channel.is_replicating if channel else None,
    )


def _render(snapshots: dict[str, InstanceSnapshot], poll_seconds: float) -> str:
    topology = build_topology(snapshots.values())
    now = datetime.now(UTC)
    blocks = []
    for name, cluster in sorted(topology.clusters.items()):
        header = f"cluster {name}" + (f" (alias {cluster.alias})" if cluster.alias != name else "")
        blocks.append(header + "\n" + render_topology(cluster, now=now, poll_seconds=poll_seconds))
    return "\n\n".join(blocks)


def discovery_settings(
    settings: Settings, *, nats_url: str, seeds: list[str], sandbox_credentials: bool
) -> dict[str, Any]:
    """The config file handed to the discovery process."""
    document: dict[str, Any] = json.loads(settings.model_dump_json())
    document["NATSServers"] = [nats_url]
    if not settings.DiscoverySeeds:
        document["DiscoverySeeds"] = seeds
    if sandbox_credentials and not settings.MySQLTopologyUser:
        document["MySQLTopologyUser"] = SANDBOX_USER
        document["MySQLTopologyPassword"] = SANDBOX_PASSWORD
    if document.get("DiscoveryMetricsListenAddress") == "127.0.0.1:9125":
        document["DiscoveryMetricsListenAddress"] = f"127.0.0.1:{free_port()}"
    return document


def run_dir_for(sandbox_dir: Path | None) -> Path:
    if sandbox_dir is not None:
        return sandbox_dir / "run"
    return Path(tempfile.mkdtemp(prefix="orchestrator-up-"))


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C, so ``finally`` blocks stop every child."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
