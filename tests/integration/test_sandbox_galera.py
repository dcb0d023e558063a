"""A Galera sandbox against real ``mariadbd`` and galera-4: three Synced nodes on loopback, an
async GTID replica of node 0 that follows writes made on any node, a killed node that rejoins,
and ``orchestrator sandbox up --galera`` / ``status`` / ``down`` leaving nothing running.

One cluster (``galera_sandbox``) serves the module; the test that kills a node restarts it and
runs last. The command-line test builds a second, smaller one of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.galera import is_synced
from tests.harness.cli import run_orchestrator as orchestrator
from tests.harness.ports import is_port_free

pytestmark = pytest.mark.integration

GALERA = [0, 1, 2]
REPLICA = 3


def synced_everywhere(sandbox: Sandbox, size: int) -> bool:
    """Every running Galera node Synced in a primary component of ``size`` nodes."""
    running = [index for index in GALERA if sandbox.is_running(index)]
    return all(is_synced(sandbox.galera_status(index), size) for index in running)


def wait_for(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        time.sleep(0.1)


def test_three_nodes_are_synced_in_one_primary_component(galera_sandbox: Sandbox) -> None:
    keys = {node.key for node in galera_sandbox.galera_nodes}
    assert len(keys) == 3
    uuids = set()
    for index in GALERA:
        state = galera_sandbox.galera_status(index)
        assert state["wsrep_local_state_comment"] == "Synced"
        assert state["wsrep_cluster_size"] == "3"
        assert state["wsrep_cluster_status"] == "Primary"
        assert state["wsrep_ready"] == "ON"
        assert state["wsrep_connected"] == "ON"
        # discovery finds the other nodes from this: their client addresses, not AUTO
        assert set(state["wsrep_incoming_addresses"].split(",")) == keys
        uuids.add(state["wsrep_cluster_state_uuid"])
        assert galera_sandbox.execute(index, "SELECT @@read_only")[0][0] == 0
    assert len(uuids) == 1
    assert [node.source_index for node in galera_sandbox.nodes] == [None, None, None, 0]
    assert galera_sandbox.execute(REPLICA, "SELECT @@read_only")[0][0] == 1


def test_a_write_on_node_1_reaches_the_async_replica_of_node_0(galera_sandbox: Sandbox) -> None:
    galera_sandbox.execute(1, "INSERT INTO sandbox.t (note) VALUES ('written on node 1')")
    galera_sandbox.wait_caught_up()
    notes = {row[0] for row in galera_sandbox.execute(REPLICA, "SELECT note FROM sandbox.t")}
    assert "written on node 1" in notes
    # one GTID history on every node, in the common Galera domain: the replica could follow
    # any of them
    positions = {
        galera_sandbox.execute(index, "SELECT @@gtid_binlog_pos")[0][0] for index in GALERA
    }
    assert len(positions) == 1
    (position,) = positions
    assert position.startswith("0-")
    assert galera_sandbox.execute(REPLICA, "SELECT @@gtid_slave_pos")[0][0] == position


def test_status_shows_the_cluster_and_its_replica(galera_sandbox: Sandbox) -> None:
    lines = galera_sandbox.status().splitlines()
    node0, node1, node2, replica = (node.key for node in galera_sandbox.nodes)
    assert lines[0].startswith(f"{node0} [galera, rw, Synced, Primary of 3, GTID 0-")
    assert lines[1].startswith(f"+ {replica} [replica, ro, IO:Yes SQL:Yes")
    assert lines[2].startswith(f"{node1} [galera, rw, Synced, Primary of 3")
    assert lines[3].startswith(f"{node2} [galera, rw, Synced, Primary of 3")


def test_a_killed_node_rejoins_and_gets_what_it_missed(galera_sandbox: Sandbox) -> None:
    galera_sandbox.kill(2)
    wait_for(lambda: synced_everywhere(galera_sandbox, 2), "the others see a cluster of 2")
    galera_sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('while node 2 was dead')")
    galera_sandbox.start(2)
    galera_sandbox.wait_galera_synced()
    assert synced_everywhere(galera_sandbox, 3)
    rows = galera_sandbox.execute(2, "SELECT note FROM sandbox.t WHERE note LIKE 'while%'")
    assert rows == [("while node 2 was dead",)]


def processes_under(directory: Path) -> list[psutil.Process]:
    """Every process whose command line names ``directory`` (mariadbd, SST helpers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(directory) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_cli_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "galera"
    base = next(
        port
        for port in range(63000, 64900, 17)
        if all(is_port_free(port + offset) for offset in range(2 + 3 * 2))
    )
    try:
        up = orchestrator(
            "sandbox", "up", "--dir", str(directory), "--base-port", str(base),
            "--galera", "2", "--async-replicas", "0",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert "a 2-node Galera cluster and 0 async replicas" in up.stdout
        status = orchestrator("sandbox", "status", "--dir", str(directory))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[1].startswith(
            f"127.0.0.1:{base + 1} [galera, rw, Synced, Primary of 2"
        )
        assert processes_under(directory)

        down = orchestrator("sandbox", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert processes_under(directory) == []
        assert orchestrator("sandbox", "status", "--dir", str(directory)).stdout.splitlines() == [
            f"127.0.0.1:{base} [unreachable: not running]",
            f"127.0.0.1:{base + 1} [unreachable: not running]",
        ]
    finally:
        if (directory / "sandbox.json").exists():
            Sandbox.load(directory).down()
