"""The simulated fleet (tests/harness/simfleet.py) answers our real prober like MariaDB 10.11.

A small fleet (3 clusters of 1 master + 2 replicas) runs in a subprocess; the discovery
``Prober`` probes a master and a replica twice: the first probe detects the dialect (variables
only), the second sends the full multi-statement batch. If the simulator drifted from what
MariaDB sends, the benchmarks built on it would measure nothing, so this test pins it.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from orchestrator_adapters.probe import ConnectionPool, ProbeOptions, Prober
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor, ThreadState

pytestmark = pytest.mark.integration

SIMFLEET = Path(__file__).resolve().parents[1] / "harness" / "simfleet.py"
CLUSTERS = 3
CLUSTER_SIZE = 3
LOOPBACK = "127.0.0.1"


def _ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def _start_simfleet(base_port: int) -> subprocess.Popen[str]:
    command = [
        sys.executable, str(SIMFLEET),
        "--base-port", str(base_port),
        "--clusters", str(CLUSTERS),
        "--cluster-size", str(CLUSTER_SIZE),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # "ready", or "" when it exited
    if line != "ready":
        process.kill()
        _, errors = process.communicate(timeout=5)
        raise RuntimeError(f"simfleet did not start: {errors.strip()}")
    return process


@pytest.fixture(scope="module")
def fleet_base_port() -> Iterator[int]:
    """A running simfleet; its first port (cluster 0's master). Always stopped at the end."""
    count = CLUSTERS * CLUSTER_SIZE
    process: subprocess.Popen[str] | None = None
    for _ in range(20):
        base = random.randrange(20000, 32768 - count)
        if not _ports_free(base, count):
            continue
        try:
            process = _start_simfleet(base)
        except RuntimeError:
            continue  # another program took a port meanwhile: try elsewhere
        break
    if process is None:
        pytest.fail("could not start simfleet on free ports")
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _options() -> ProbeOptions:
    return ProbeOptions(
        user="orchestrator",
        password="any",
        connect_timeout=2,
        deadline=5,
        pool_size=2,
        trust_show_slave_hosts=False,
    )


async def test_prober_reads_master_and_replica(fleet_base_port: int) -> None:
    cluster = 1
    master = InstanceKey(LOOPBACK, fleet_base_port + cluster * CLUSTER_SIZE)
    replica = InstanceKey(LOOPBACK, master.port + 1)
    pool = ConnectionPool(_options())
    prober = Prober(_options(), pool)
    try:
        first_master = await prober.probe(master)
        master_snapshot = await prober.probe(master, first_master)
        first_replica = await prober.probe(replica)
        replica_snapshot = await prober.probe(replica, first_replica)
    finally:
        pool.close()

    for snapshot in (first_master, master_snapshot, first_replica, replica_snapshot):
        assert snapshot.probe.ok, snapshot.probe.error
        assert snapshot.flavor is Flavor.MARIADB
        assert snapshot.version.startswith("10.11.")

    assert master_snapshot.server_id == master.port
    assert not master_snapshot.read_only
    assert master_snapshot.log_bin
    assert master_snapshot.log_slave_updates
    assert master_snapshot.binlog_format == "ROW"
    assert master_snapshot.channels == ()
    assert master_snapshot.replica_keys == (
        f"{LOOPBACK}:{master.port + 1}",
        f"{LOOPBACK}:{master.port + 2}",
    )
    assert master_snapshot.self_coordinates is not None
    assert master_snapshot.gtid_binlog_pos.startswith(f"0-{master.port}-")
    assert master_snapshot.uptime_seconds > 0

    assert replica_snapshot.server_id == replica.port
    assert replica_snapshot.read_only
    assert replica_snapshot.replica_keys == ()
    (channel,) = replica_snapshot.channels
    assert channel.name == ""
    assert channel.master_key == str(master)
    assert channel.using_gtid == "Slave_Pos"
    assert channel.io_thread is ThreadState.RUNNING
    assert channel.sql_thread is ThreadState.RUNNING
    assert channel.is_replicating
    assert channel.master_server_id == master.port
    assert channel.seconds_behind_master == 0
    assert replica_snapshot.replication_lag_seconds == 0
    assert replica_snapshot.gtid_binlog_pos.startswith(f"0-{master.port}-")
    assert replica_snapshot.gtid_slave_pos == replica_snapshot.gtid_binlog_pos
    assert channel.gtid_io_pos == replica_snapshot.gtid_binlog_pos


def test_unknown_statement_is_an_error_and_ping_answers(fleet_base_port: int) -> None:
    conn = pymysql.connect(host=LOOPBACK, port=fleet_base_port, user="u", password="p")
    try:
        conn.ping(reconnect=False)
        with conn.cursor() as cur:
            with pytest.raises(pymysql.err.ProgrammingError) as caught:
                cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.2+ only: MariaDB refuses it
            assert caught.value.args[0] == 1064
            cur.execute("SELECT @@read_only, @@server_id")
            assert cur.fetchall() == ((0, fleet_base_port),)
    finally:
        conn.close()
