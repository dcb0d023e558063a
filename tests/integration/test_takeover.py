"""Graceful master takeover and force-master-takeover through the whole stack (real 4-node
MariaDB GTID sandbox, nats-server, etcd, discovery, topology-api, two recovery workers), in
the form of orchestrator's system tests (reference §10.3): ``graceful-master-takeover`` and
back, ``-auto``, and the failures (no target, not a direct replica, cross-region, a failed
pre-hook and a successor that stops applying, both rolled back)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator_cli.sandbox import REPLICATION_PASSWORD, REPLICATION_USER, Sandbox
from tests.integration.api_support import checksum, link, run_cli
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    read_only,
    replica_status,
    wait_listed,
    wait_until,
)

pytestmark = pytest.mark.integration

CREDENTIALS = f"SELECT '{REPLICATION_USER}', '{REPLICATION_PASSWORD}'"


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code, out = run_cli(stack.api, *argv)
    return code, out, capsys.readouterr().err


def same_data(sandbox: Sandbox, master: int, note: str, nodes: Sequence[int] = ()) -> None:
    """A write on ``master`` reaches ``nodes`` (default: every other node), which then match it."""
    sandbox.execute(master, f"INSERT INTO sandbox.t (note) VALUES ('{note}')")
    expected = checksum(sandbox, master)
    for index in nodes or [node.index for node in sandbox.nodes if node.index != master]:
        wait_until(
            lambda index=index: checksum(sandbox, index) == expected,
            timeout=10,
            what=f"{sandbox.node(index).key} has {note}",
        )


def star_of(sandbox: Sandbox, master: int) -> None:
    """``master`` writable and alone; every other node replicates from it with GTID."""
    assert not read_only(sandbox, master)
    assert replica_status(sandbox, master) is None
    for node in sandbox.nodes:
        if node.index != master:
            found = wait_until(
                lambda node=node: (
                    (found := link(sandbox, node.index)) and found[1:3] == ("Yes", "Yes") and found
                ),
                timeout=10,
                what=f"{node.key} replicating",
            )
            assert found[0] == sandbox.node(master).port, (node.key, found)
            assert found[3] in {"Slave_Pos", "Current_Pos"}, (node.key, found)


def master_shown(stack: Stack, index: int) -> None:
    """Until the API shows node ``index`` as the master of a 4-instance cluster."""
    key = stack.sandbox.node(index).key
    wait_until(
        lambda: (
            (found := api_get(stack, f"/api/master/{key}"))
            and found["Key"]["Port"] == stack.sandbox.node(index).port
            and len(api_get(stack, f"/api/cluster/{key}") or []) == 4
        ),
        timeout=15,
        what=f"the API shows {key} as the master of the 4 nodes",
    )


def ready(make_stack: StackFactory, **settings: Any) -> Stack:
    """The whole stack with ``settings``, once every worker has read the fleet and one leads."""
    stack = make_stack(**settings)
    wait_listed(stack, stack.sandbox.master.key)
    time.sleep(1.5)
    return stack


def take_over_to_node_1(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """``graceful-master-takeover`` from node 0 to node 1, and the topology it leaves."""
    sandbox = stack.sandbox
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    assert cli(stack, capsys, "-c", "graceful-master-takeover", "-i", zero, "-d", one) == (
        0,
        f"{one}\n",
        "",
    )
    # the new master: writable, replicating from nobody; the others below it
    assert not read_only(sandbox, 1) and replica_status(sandbox, 1) is None
    for index in (2, 3):
        assert link(sandbox, index) == (sandbox.node(1).port, "Yes", "Yes", "Slave_Pos")
    # the demoted master: read_only, pointed at the new one with current_pos, not started
    assert read_only(sandbox, 0)
    assert link(sandbox, 0) == (sandbox.node(1).port, "No", "No", "Current_Pos")


def test_graceful_takeover_and_back(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = ready(make_stack, ReplicationCredentialsQuery=CREDENTIALS)
    sandbox = stack.sandbox
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    take_over_to_node_1(stack, capsys)
    same_data(sandbox, 1, "new master", nodes=(2, 3))  # node 0 not started yet
    master_shown(stack, 1)
    assert cli(stack, capsys, "-c", "start-replica", "-i", zero)[0] == 0
    star_of(sandbox, 1)
    same_data(sandbox, 1, "after the takeover")
    wait_until(
        lambda: (
            (found := api_get(stack, f"/api/instance/{zero.replace(':', '/')}"))
            and found["ReplicationLagSeconds"]["Valid"]
        ),
        timeout=15,
        what="the API sees the demoted master replicating",
    )
    # and back, with -auto: the demoted master (now 1) replicates at once
    code, out, err = cli(
        stack, capsys, "-c", "graceful-master-takeover-auto", "-i", one, "-d", zero
    )
    assert (code, out, err) == (0, f"{zero}\n", "")
    star_of(sandbox, 0)
    same_data(sandbox, 0, "back on the first master")
    history = api_get(stack, "/api/audit-recovery")
    assert history and all(row["IsSuccessful"] for row in history[:2]), history


def test_auto_takeover_without_a_target_picks_one_and_starts_the_demoted_master(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = ready(make_stack, ReplicationCredentialsQuery=CREDENTIALS)
    sandbox = stack.sandbox
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    code, out, err = cli(stack, capsys, "-c", "graceful-master-takeover-auto", "-i", zero)
    # three direct replicas, all equal by the rules: the smallest key wins
    assert (code, out, err) == (0, f"{one}\n", "")
    star_of(sandbox, 1)
    same_data(sandbox, 1, "after an automatic choice")


def test_takeover_refusals_and_rollbacks_leave_the_topology_as_it_was(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fail_hook = tmp_path / "fail-pre-hook"
    stop_hook = tmp_path / "stop-successor"
    stack = ready(
        make_stack,
        ReplicationCredentialsQuery=CREDENTIALS,
        # node 3 (server_id 4) is in another region
        DetectRegionQuery="SELECT IF(@@server_id = 4, 'rgn-west', 'rgn-east')",
        PreventCrossRegionMasterFailover=True,
        ReasonableMaintenanceReplicationLagSeconds=5,
        PreGracefulTakeoverProcesses=[
            f"test ! -e {fail_hook}",
            # the designated replica stops applying, then the master takes one more write:
            # the catch-up cannot finish
            f"if [ -e {stop_hook} ]; then mariadb -uroot -h127.0.0.1 -P{{successorPort}} "
            "-e 'STOP SLAVE SQL_THREAD' && mariadb -uroot -h127.0.0.1 -P{failedPort} "
            "-e \"INSERT INTO sandbox.t (note) VALUES ('not applied yet')\"; fi",
        ],
    )
    sandbox = stack.sandbox
    zero, one, three = (sandbox.node(i).key for i in (0, 1, 3))

    def refused(*argv: str, expected: str) -> None:
        code, out, err = cli(stack, capsys, *argv)
        assert (code, out) == (1, ""), (code, out, err)
        assert expected in err, err
        assert err.count("\n") == 1, err
        star_of(sandbox, 0)

    refused(
        "-c",
        "graceful-master-takeover",
        "-i",
        zero,
        expected="GracefulMasterTakeover: target instance not indicated",
    )
    refused(
        "-c",
        "graceful-master-takeover",
        "-i",
        zero,
        "-d",
        "127.0.0.1:10999",
        expected="must be directly replicating from the master",
    )
    wait_until(
        lambda: (
            (found := api_get(stack, f"/api/instance/{three.replace(':', '/')}"))
            and found["Region"] == "rgn-west"
        ),
        timeout=15,
        what="node 3's region seen",
    )
    refused(
        "-c",
        "graceful-master-takeover",
        "-i",
        zero,
        "-d",
        three,
        expected="PreventCrossRegionMasterFailover",
    )
    # a failing pre-hook: the replicas moved below the designated one are moved back
    fail_hook.touch()
    refused(
        "-c",
        "graceful-master-takeover",
        "-i",
        zero,
        "-d",
        one,
        expected="PreGracefulTakeoverProcesses",
    )
    fail_hook.unlink()
    # the designated replica stops applying once the old master is read_only: rolled back
    stop_hook.touch()
    code, out, err = cli(stack, capsys, "-c", "graceful-master-takeover", "-i", zero, "-d", one)
    assert (code, out) == (1, ""), (code, out, err)
    assert "rolled back" in err and "SQL thread" in err, err
    stop_hook.unlink()
    sandbox.execute(1, "START SLAVE SQL_THREAD")
    star_of(sandbox, 0)
    same_data(sandbox, 0, "after the rollbacks")
    # not a direct replica (node 3 below node 1)
    assert cli(stack, capsys, "-c", "relocate", "-i", three, "-d", one)[0] == 0
    code, out, err = cli(stack, capsys, "-c", "graceful-master-takeover", "-i", zero, "-d", three)
    assert (code, out) == (1, "") and "must be directly replicating from the master" in err


def test_force_master_takeover_promotes_the_named_replica(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = ready(make_stack)
    sandbox = stack.sandbox
    zero, two = sandbox.node(0).key, sandbox.node(2).key
    code, _, err = cli(stack, capsys, "-c", "force-master-takeover", "-i", zero)
    assert code == 2 and "needs -d" in err
    assert cli(stack, capsys, "-c", "force-master-takeover", "-i", zero, "-d", two) == (
        0,
        f"{two}\n",
        "",
    )
    assert not read_only(sandbox, 2) and replica_status(sandbox, 2) is None
    assert read_only(sandbox, 0)  # fenced, as in a failover
    for index in (1, 3):
        assert link(sandbox, index) == (sandbox.node(2).port, "Yes", "Yes", "Slave_Pos")
