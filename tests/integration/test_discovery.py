"""Discovery against real MariaDB sandboxes and a real nats-server.

Discovery runs in-process here (the same objects ``orchestrator-discovery`` builds), so tests
can read its state; one test runs the real console script end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pymysql
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy

from orchestrator_adapters.probe import ConnectionPool, ProbeOptions, Prober
from orchestrator_cli.sandbox import Sandbox
from orchestrator_discovery.main import build_service
from orchestrator_discovery.metrics import DiscoveryMetrics
from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_discovery.service import DiscoveryService
from orchestrator_shared.bus import (
    EVENTS_STREAM,
    SNAPSHOTS_STREAM,
    DiscoveryReply,
    DiscoveryVerb,
    Subjects,
    UnreachableEvent,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.gtid import MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot, ThreadState
from orchestrator_shared.topology import build_topology
from tests.harness.nats import NatsServer
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TOPOLOGY_USER = {"MySQLTopologyUser": "orchestrator", "MySQLTopologyPassword": "orch_topology"}


def settings_for(nats_url: str, seeds: list[str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **TOPOLOGY_USER,
        "NATSServers": [nats_url],
        "DiscoverySeeds": seeds,
        "InstancePollSeconds": 1,
        "MySQLDiscoveryReadTimeoutSeconds": 2,
        "MySQLConnectTimeoutSeconds": 1,
        "DiscoveryMetricsListenAddress": "",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@asynccontextmanager
async def running_discovery(settings: Settings) -> AsyncIterator[DiscoveryService]:
    """The discovery service of ``orchestrator-discovery``, running in this event loop."""
    holder: list[DiscoveryService] = []

    async def republish() -> None:
        if holder:
            asyncio.get_running_loop().create_task(holder[0].republish_all())

    bus = NatsBus(SUBJECTS, events_retention_days=1, on_reconnect=republish)
    await bus.connect(list(settings.NATSServers), name="test-discovery")
    service = build_service(settings, bus, DiscoveryMetrics())
    holder.append(service)
    await bus.serve_requests(service.handle_request)
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[tuple[nats.NATS, JetStreamContext]]:
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield nc, nc.jetstream()
    finally:
        await nc.close()


async def stream_snapshots(js: JetStreamContext, keys: list[str]) -> dict[str, InstanceSnapshot]:
    """The latest snapshot on the stream of each key that has one."""
    found: dict[str, InstanceSnapshot] = {}
    # Only once the stream exists and holds something: nats-server 2.9 (Debian's) can crash
    # on a message get that races the stream's creation (a nil pointer in jsMsgGetRequest).
    try:
        info = await js.stream_info(SNAPSHOTS_STREAM)
    except nats.js.errors.NotFoundError:
        return found
    if info.state.messages == 0:
        return found
    for key in keys:
        try:
            msg = await js.get_last_msg(SNAPSHOTS_STREAM, SUBJECTS.snapshot(InstanceKey.parse(key)))
        except nats.js.errors.NotFoundError:
            continue
        found[key] = InstanceSnapshot.from_json(msg.data)
    return found


async def eventually(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll an (async) check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or check}")
        await asyncio.sleep(interval)


def query(sandbox: Sandbox, index: int, sql: str) -> list[dict[str, Any]]:
    args = sandbox.connect_args(index)
    conn = pymysql.connect(**args, cursorclass=pymysql.cursors.DictCursor, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def keys_of(sandbox: Sandbox) -> list[str]:
    return [node.key for node in sandbox.nodes]


# --- a shared star sandbox for the tests that do not break it ------------------------------


@pytest.fixture(scope="module")
def star(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return module_sandbox_factory(nodes=4)


async def test_snapshots_of_a_4_node_sandbox_are_right(
    star: Sandbox, nats_server: NatsServer
) -> None:
    # a write, so GTID positions are non-trivial; then let it reach every replica
    query(star, 0, "INSERT INTO sandbox.t (note) VALUES ('discovery test')")
    master_pos = query(star, 0, "SELECT @@gtid_binlog_pos AS p")[0]["p"]
    for index in range(1, 4):
        await eventually(
            lambda i=index: query(star, i, "SELECT @@gtid_slave_pos AS p")[0]["p"] == master_pos,
            timeout=10,
            what="replicas caught up",
        )
    settings = settings_for(nats_server.url, [star.master.key])
    async with running_discovery(settings), jetstream(nats_server.url) as (_, js):
        snapshots = await eventually(
            lambda: _all_fresh(js, keys_of(star)), timeout=10, what="4 snapshots on the stream"
        )
    master = snapshots[star.master.key]
    assert master.probe.ok and not master.probe.partial
    assert master.flavor == "MariaDB"
    assert master.read_only is False
    assert master.channels == ()
    assert set(master.replica_keys) == set(keys_of(star)[1:])
    assert master.gtid_binlog_pos == master_pos
    assert MariaGtidPosition.parse(master.gtid_binlog_pos) == MariaGtidPosition.parse(master_pos)
    assert master.log_bin and master.log_slave_updates and master.binlog_format == "ROW"
    assert master.self_coordinates is not None
    for index, node in enumerate(star.nodes):
        snap = snapshots[node.key]
        variables = query(star, index, "SELECT @@server_id AS id, @@version AS v")[0]
        assert snap.server_id == variables["id"]
        assert snap.version == variables["v"]
        assert snap.gtid_domain_id == 0
        assert snap.gtid_strict_mode is True
        assert snap.probe.latency_seconds < 1
    for node in star.nodes[1:]:
        replica = snapshots[node.key]
        assert replica.read_only is True
        assert replica.master_key == InstanceKey.parse(star.master.key)
        channel = replica.primary_channel
        assert channel is not None
        assert channel.io_thread is ThreadState.RUNNING
        assert channel.sql_thread is ThreadState.RUNNING
        assert channel.using_gtid == "Slave_Pos"
        assert channel.seconds_behind_master == 0
        assert replica.replication_lag_seconds == 0
        assert replica.gtid_slave_pos == master_pos
        assert replica.replica_keys == ()
    cluster = build_topology(snapshots.values()).clusters[star.master.key]
    assert cluster.count == 4


async def _all_fresh(js: JetStreamContext, keys: list[str]) -> dict[str, InstanceSnapshot] | None:
    found = await stream_snapshots(js, keys)
    if len(found) == len(keys) and all(s.probe.ok for s in found.values()):
        return found
    return None


async def test_stopped_replica_thread_shows_within_one_poll(
    star: Sandbox, nats_server: NatsServer
) -> None:
    replica = star.nodes[2]
    settings = settings_for(nats_server.url, [star.master.key], InstancePollSeconds=2)
    async with running_discovery(settings) as service:
        await eventually(lambda: len(service.known) == 4, timeout=10, what="tree discovered")
        query(star, 2, "STOP SLAVE SQL_THREAD")
        stopped_at = time.monotonic()
        try:

            def sql_stopped() -> bool:
                snap = service.snapshot(InstanceKey.parse(replica.key))
                channel = snap.primary_channel if snap else None
                return channel is not None and channel.sql_thread is ThreadState.STOPPED

            await eventually(sql_stopped, timeout=2 + 1, what="SQL thread stopped in snapshot")
            assert time.monotonic() - stopped_at <= 2 + 1
            snap = service.snapshot(InstanceKey.parse(replica.key))
            assert snap is not None and snap.primary_channel is not None
            assert snap.primary_channel.io_thread is ThreadState.RUNNING
            assert snap.primary_channel.sql_running == "No"
        finally:
            query(star, 2, "START SLAVE SQL_THREAD")


async def test_discovery_requests_over_nats(star: Sandbox, nats_server: NatsServer) -> None:
    settings = settings_for(nats_server.url, [])
    async with running_discovery(settings) as service, jetstream(nats_server.url) as (nc, _):

        async def request(verb: str, body: bytes) -> dict[str, Any]:
            msg = await nc.request(SUBJECTS.root + f".discovery.{verb}", body, timeout=5)
            reply: dict[str, Any] = json.loads(msg.data)
            return reply

        reply = await request("discover", json.dumps({"key": star.nodes[1].key}).encode())
        assert reply["ok"] is True, reply
        assert reply["snapshot"]["server_id"] == star.nodes[1].server_id
        # it crawls from there: the master and its other replicas follow
        await eventually(lambda: len(service.known) == 4, timeout=10, what="crawl")

        malformed = await request("discover", b'{"key": "127.0.0.1:notaport"}')
        assert malformed["ok"] is False
        assert "invalid instance key '127.0.0.1:notaport'" in malformed["error"]

        silent = await request("discover", b'{"key": "127.0.0.1:1"}')
        assert silent["ok"] is False
        assert silent["error"].startswith("cannot probe 127.0.0.1:1: Can't connect")
        assert InstanceKey("127.0.0.1", 1) not in service.known

        forgotten = await request("forget", star.nodes[3].key.encode())
        assert forgotten["ok"] is True
        assert InstanceKey.parse(star.nodes[3].key) not in service.known

        refreshed = await request("refresh", star.nodes[3].key.encode())
        assert refreshed["ok"] is True
        assert InstanceKey.parse(star.nodes[3].key) in service.known


async def test_wrong_password_is_a_clear_error_not_a_crash(
    star: Sandbox, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        nats_server.url, [star.master.key], MySQLTopologyPassword="wrong", InstancePollSeconds=0.5
    )
    async with running_discovery(settings) as service, jetstream(nats_server.url) as (_, js):
        snapshots = await eventually(
            lambda: stream_snapshots(js, [star.master.key]), timeout=5, what="failed snapshot"
        )
        snap = snapshots[star.master.key]
        assert snap.probe.ok is False
        assert snap.probe.errno == 1045
        assert snap.probe.timed_out is False
        assert snap.probe.error.startswith("Access denied for user 'orchestrator'")
        await asyncio.sleep(1.2)  # more polls: the service lives on
        assert service.snapshot(InstanceKey.parse(star.master.key)) is not None
    assert any("Access denied" in record.getMessage() for record in caplog.records)


async def test_partial_success_is_recorded_as_such(star: Sandbox, nats_server: NatsServer) -> None:
    # A user that may read variables and status but not binlog or replication state.
    query(star, 0, "CREATE USER IF NOT EXISTS 'limited'@'%' IDENTIFIED BY 'limited'")
    settings = settings_for(
        nats_server.url,
        [star.nodes[1].key],
        MySQLTopologyUser="limited",
        MySQLTopologyPassword="limited",
    )
    async with running_discovery(settings) as service:
        key = InstanceKey.parse(star.nodes[1].key)

        def probed() -> InstanceSnapshot | None:
            snap = service.snapshot(key)
            return snap if snap is not None and snap.probe.partial else None

        snap = await eventually(probed, timeout=5, what="a partial probe")
    assert snap.probe.ok is False
    assert snap.probe.errno == 1227
    assert "Access denied" in snap.probe.error
    # what it could read is fresh and right
    assert snap.server_id == star.nodes[1].server_id
    assert snap.read_only is True
    assert snap.version.startswith("10.11")
    assert snap.probe.last_seen_at is None  # never fully seen with this user


# --- tests that break their own sandbox ----------------------------------------------------


async def test_chain_is_fully_crawled_from_its_middle(
    sandbox_factory: Callable[..., Sandbox], nats_server: NatsServer
) -> None:
    chain = sandbox_factory(nodes=3, chain=True)
    a, b, c = keys_of(chain)
    settings = settings_for(nats_server.url, [b])
    async with running_discovery(settings) as service:
        await eventually(lambda: len(service.known) == 3, timeout=10, what="3 instances")
        snapshots = await eventually(
            lambda: (
                [s for s in service.known.values() if s and s.probe.ok]
                if all(s and s.probe.ok for s in service.known.values())
                else None
            ),
            timeout=10,
        )
    topology = build_topology(snapshots)
    assert list(topology.clusters) == [a]
    cluster = topology.clusters[a]
    depths = {str(k): node.depth for k, node in cluster.instances.items()}
    assert depths == {a: 0, b: 1, c: 2}


async def test_a_kept_connection_killed_by_the_server_is_not_a_failed_probe(star: Sandbox) -> None:
    # (a takeover's fence kills every client session of the old master, ours included)
    options = ProbeOptions.from_settings(settings_for("nats://127.0.0.1:1", []))
    pool = ConnectionPool(options)
    prober = Prober(options, pool)
    key = InstanceKey.parse(star.node(1).key)
    try:
        first = await prober.probe(key)
        assert first.probe.ok and pool.has_idle(key)
        mine = [
            row["id"]
            for row in query(
                star,
                1,
                "SELECT id FROM information_schema.processlist WHERE user = "
                f"'{TOPOLOGY_USER['MySQLTopologyUser']}'",
            )
        ]
        assert mine
        for connection_id in mine:
            star.execute(1, f"KILL CONNECTION {connection_id}")
        again = await prober.probe(key, first)
        assert again.probe.ok, again.probe.error
    finally:
        pool.close()


async def test_killed_master_is_unreachable_at_once_through_its_waiting_connection(
    sandbox_factory: Callable[..., Sandbox], nats_server: NatsServer
) -> None:
    sandbox = sandbox_factory(nodes=3)
    master = sandbox.master.key
    # pings far apart: only the waiting connection can tell of the death within the test
    settings = settings_for(
        nats_server.url, [master], InstancePollSeconds=5, MasterLivenessCheckIntervalSeconds=30
    )
    events: list[tuple[float, UnreachableEvent]] = []
    async with running_discovery(settings) as service, jetstream(nats_server.url) as (nc, js):

        async def on_event(msg: Any) -> None:
            events.append((time.monotonic(), UnreachableEvent.model_validate_json(msg.data)))

        await nc.subscribe(SUBJECTS.all_unreachable, cb=on_event)
        await nc.flush()
        await eventually(lambda: len(service.known) == 3, timeout=10, what="tree discovered")
        await asyncio.sleep(1)  # the liveness watch is on
        killed_at = time.monotonic()
        sandbox.kill(0)
        await eventually(lambda: events, timeout=3, what="unreachable event")
        arrived, event = events[0]
        assert arrived - killed_at < 1.0
        assert event.key == master
        # the waiting connection broke, a new one was refused: that is the evidence
        assert event.error.startswith("Can't connect to MySQL server"), event.error
        assert "(after: Lost connection to MySQL server during query" in event.error, event.error
        assert set(event.replica_keys) == set(keys_of(sandbox)[1:])
        # when the link broke, for the recovery's `detect` phase: before the event, by little
        assert event.lost_at is not None
        assert timedelta(0) <= event.detected_at - event.lost_at < timedelta(seconds=1)
        # and the failed probe is on the stream, with the last known facts kept
        snapshots = await eventually(
            lambda: _failed(js, master), timeout=3, what="failed snapshot of the master"
        )
        failed = snapshots[master]
        assert failed.probe.ok is False
        assert failed.probe.last_seen_at is not None
        assert set(failed.replica_keys) == set(keys_of(sandbox)[1:])
        assert len(events) == 1


def waiting_connections(sandbox: Sandbox) -> list[int]:
    """The ids of the liveness waiting connections on the master."""
    rows = query(sandbox, 0, "SELECT ID, INFO FROM information_schema.PROCESSLIST")
    return [int(row["ID"]) for row in rows if "orchestrator liveness" in str(row["INFO"] or "")]


async def test_a_dbas_kill_of_the_waiting_connection_is_no_death(
    sandbox_factory: Callable[..., Sandbox], nats_server: NatsServer
) -> None:
    sandbox = sandbox_factory(nodes=2)
    master = sandbox.master.key
    settings = settings_for(nats_server.url, [master], MasterLivenessCheckIntervalSeconds=30)
    events: list[UnreachableEvent] = []
    async with running_discovery(settings) as service, jetstream(nats_server.url) as (nc, _):

        async def on_event(msg: Any) -> None:
            events.append(UnreachableEvent.model_validate_json(msg.data))

        await nc.subscribe(SUBJECTS.all_unreachable, cb=on_event)
        await nc.flush()
        [waiting] = await eventually(
            lambda: waiting_connections(sandbox), timeout=10, what="the waiting connection"
        )
        query(sandbox, 0, f"KILL {waiting}")
        survived = service.metrics.liveness_breaks_survived
        await eventually(lambda: survived._value.get() == 1, timeout=5, what="the break seen")
        # a new waiting connection, and no unreachable event
        again = await eventually(
            lambda: [n for n in waiting_connections(sandbox) if n != waiting],
            timeout=5,
            what="a new waiting connection",
        )
        assert len(again) == 1
        query(sandbox, 0, f"KILL QUERY {again[0]}")  # SLEEP ends early: it just waits again
        await eventually(
            lambda: waiting_connections(sandbox) == again,
            timeout=5,
            what="the same connection waiting again",
        )
    assert events == []
    assert survived._value.get() == 1


async def _failed(js: JetStreamContext, key: str) -> dict[str, InstanceSnapshot] | None:
    found = await stream_snapshots(js, [key])
    return found if key in found and not found[key].probe.ok else None


async def test_hung_instance_delays_no_other_probe(
    sandbox_factory: Callable[..., Sandbox], nats_server: NatsServer
) -> None:
    sandbox = sandbox_factory(nodes=3)
    hung_key = InstanceKey.parse(sandbox.nodes[2].key)
    settings = settings_for(
        nats_server.url,
        [sandbox.master.key],
        InstancePollSeconds=0.5,
        MySQLDiscoveryReadTimeoutSeconds=2,
    )
    async with running_discovery(settings) as service:
        await eventually(lambda: len(service.known) == 3, timeout=10, what="tree discovered")
        await asyncio.sleep(1)
        sandbox.hang(2)
        hung_at = time.monotonic()
        try:
            others = [k for k in service.known if k != hung_key]
            seen_before = {k: service.snapshot(k).probe.checked_at for k in others}  # type: ignore[union-attr]
            await asyncio.sleep(1.5)  # well inside the hung probe's 2 s deadline
            for key in others:
                snap = service.snapshot(key)
                assert snap is not None and snap.probe.ok
                assert snap.probe.checked_at > seen_before[key], f"{key} was not probed"

            def hung_failed() -> bool:
                snap = service.snapshot(hung_key)
                return snap is not None and not snap.probe.ok

            await eventually(hung_failed, timeout=4, what="hung instance reported failed")
            snap = service.snapshot(hung_key)
            assert snap is not None
            assert snap.probe.error == "no answer within 2s"
            assert snap.probe.timed_out is True
            assert time.monotonic() - hung_at >= 2
        finally:
            sandbox.resume(2)

        def recovered() -> bool:
            snap = service.snapshot(hung_key)
            return snap is not None and snap.probe.ok

        await eventually(recovered, timeout=6, what="hung instance back after SIGCONT")


async def test_stream_holds_every_instance_again_after_nats_restart(
    star: Sandbox, nats_server: NatsServer
) -> None:
    settings = settings_for(nats_server.url, [star.master.key], InstancePollSeconds=30)
    async with running_discovery(settings) as service:
        await eventually(lambda: len(service.known) == 4, timeout=10, what="tree discovered")
        async with jetstream(nats_server.url) as (_, js):
            await eventually(lambda: _all_fresh(js, keys_of(star)), timeout=10)
        # the server dies and comes back without its data: the streams are gone
        nats_server.kill()
        shutil.rmtree(nats_server.store_dir, ignore_errors=True)
        nats_server.restart()
        # InstancePollSeconds is 30: only the reconnect republish can refill the stream in time
        async with jetstream(nats_server.url) as (_, js):
            snapshots = await eventually(
                lambda: _all_fresh(js, keys_of(star)), timeout=10, what="stream refilled"
            )
        assert set(snapshots) == set(keys_of(star))


# --- the real process ----------------------------------------------------------------------


def test_console_script_runs_and_stops_cleanly_on_sigterm(
    star: Sandbox, nats_server: NatsServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                **TOPOLOGY_USER,
                "NATSServers": [nats_server.url],
                "DiscoverySeeds": [star.master.key],
                "InstancePollSeconds": 1,
                "DiscoveryMetricsListenAddress": f"127.0.0.1:{metrics_port}",
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_discovery.main", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ORCHESTRATOR_LOG_LEVEL": "INFO"},
    )
    try:

        async def wait_for_stream() -> dict[str, InstanceSnapshot]:
            async with jetstream(nats_server.url) as (_, js):
                found: dict[str, InstanceSnapshot] = await eventually(
                    lambda: _all_fresh(js, keys_of(star)), timeout=15, what="4 snapshots"
                )
                return found

        snapshots = asyncio.run(wait_for_stream())
        assert len(snapshots) == 4
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "orchestrator_discovery_instances_known 4.0" in metrics
        assert "orchestrator_discovery_masters_watched 1.0" in metrics
        ok_probes = re.search(r'orchestrator_discovery_probes_total\{result="ok"\} (\S+)', metrics)
        assert ok_probes is not None
        assert float(ok_probes.group(1)) >= 4
        assert "orchestrator_discovery_probe_latency_seconds_bucket" in metrics
        # the same listener answers Kubernetes' probes: alive, and ready (connected, running)
        for path, state in (("health", "alive"), ("ready", "ready")):
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/{path}", timeout=5) as r:
                assert (r.status, json.loads(r.read())) == (200, {"status": state})
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0, stderr.decode()
        assert b"discovery stopped" in stderr
        assert b"Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its pipes, whatever happened above


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"InstancePollSeconds": -1},
            "InstancePollSeconds: Input should be greater than 0, got -1",
        ),
        (
            {"DiscoverySeeds": ["db:x"]},
            "DiscoverySeeds: invalid instance key 'db:x': port 'x' is not a number",
        ),
        ({"NATSServers": "nats://x"}, "NATSServers: expected a JSON list, got 'nats://x'"),
        (
            {"DiscoveryAllowedHostnameFilters": ["10.0.0.0/8", "db("]},
            "DiscoveryAllowedHostnameFilters: expected a regular expression, 'db(' is not one: "
            "missing ): db(",
        ),
    ],
)
def test_bad_config_stops_start_up_with_one_line(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator_discovery.main", "--config", str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == f"orchestrator-discovery: bad configuration: {expected}"


@asynccontextmanager
async def blackhole() -> AsyncIterator[int]:
    """A TCP listener on loopback that accepts and never says a word (a hung MySQL server);
    its port. Connections are held open until the listener closes."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_a_hung_target_does_not_stall_other_requests(nats_server: NatsServer) -> None:
    settings = settings_for(
        nats_server.url,
        [],
        MySQLConnectTimeoutSeconds=8,
        MySQLDiscoveryReadTimeoutSeconds=8,
        EtcdLeaseTTLSeconds=10,
        DiscoveryAllowedHostnameFilters=["127.0.0.1"],
    )
    async with (
        blackhole() as port,
        running_discovery(settings),
        jetstream(nats_server.url) as (nc, _),
    ):
        hung = asyncio.create_task(
            nc.request(
                SUBJECTS.discovery(DiscoveryVerb.DISCOVER),
                json.dumps({"key": f"127.0.0.1:{port}"}).encode(),
                timeout=30,
            )
        )
        await asyncio.sleep(0.5)  # the hung discover is being handled
        started = time.monotonic()
        forget = await nc.request(
            SUBJECTS.discovery(DiscoveryVerb.FORGET),
            json.dumps({"key": "127.0.0.1:1"}).encode(),
            timeout=5,
        )
        assert time.monotonic() - started < 2
        assert DiscoveryReply.model_validate_json(forget.data).ok
        assert not hung.done()  # still waiting on the target that never answers
        answer = DiscoveryReply.model_validate_json((await hung).data)
        assert not answer.ok and answer.key == f"127.0.0.1:{port}", answer


async def test_the_events_stream_is_bounded_in_bytes_the_oldest_dropped(
    nats_server: NatsServer,
) -> None:
    bus = NatsBus(SUBJECTS, events_retention_days=1, events_max_bytes=1 << 20)
    await bus.connect([nats_server.url], name="test-discovery")
    try:
        async with jetstream(nats_server.url) as (_, js):
            config = (await js.stream_info(EVENTS_STREAM)).config
            assert config.max_bytes == 1 << 20 and config.discard == DiscardPolicy.OLD
            filler = "x" * 16_000
            for n in range(100):  # about 1.6 MB of events
                await bus.publish_unreachable(
                    UnreachableEvent(
                        key=f"db{n}:3306", detected_at=NOW, last_seen_at=None, error=filler
                    )
                )
            state = (await js.stream_info(EVENTS_STREAM)).state
            assert state.bytes <= 1 << 20
            assert state.first_seq > 1 and state.last_seq == 100  # the oldest went first
    finally:
        await bus.close()
