"""Moves of many replicas (issue 6): ``relocate-replicas``, ``move-replicas-gtid``,
``move-up-replicas``, ``repoint-replicas``, ``take-siblings``, ``regroup-replicas``,
``take-master`` and ``make-co-master``, on a real 4-node MariaDB GTID sandbox (node 0 the
master, the others its replicas).

After every move each moved replica replicates with GTID (``Using_Gtid: Slave_Pos``) and has
lost nothing (``CHECKSUM TABLE sandbox.t`` matches the master's after a write); refused moves
change nothing. One sandbox serves the module (every test puts the star back); the tests that
kill a node get their own. The routes and the CLI: ``test_moves_many_api.py``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from orchestrator_cli.sandbox import REPLICATION_PASSWORD, REPLICATION_USER, Sandbox
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused
from tests.harness.ports import free_port
from tests.integration.api_support import Link, Recorder, link
from tests.integration.test_moves import (
    MASTER,
    key_json,
    port,
    request,
    restore_star,
    same_data,
    settled,
    star,
    topology,
)
from tests.integration.test_moves import handlers as move_handlers

pytestmark = pytest.mark.integration

CREDENTIALS = f"SELECT '{REPLICATION_USER}' AS user, '{REPLICATION_PASSWORD}' AS password"


def undo_co_master(sandbox: Sandbox) -> None:
    """Node 0 back to replicating from nobody (after make-co-master)."""
    sandbox.execute(MASTER, "STOP SLAVE")
    sandbox.execute(MASTER, "RESET SLAVE ALL")


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    await put_back(sandbox)


async def put_back(sandbox: Sandbox) -> None:
    """The star as built again, whatever moves (or make-co-master) the test left."""
    undo_co_master(sandbox)
    restore_star(sandbox)
    for index in range(1, 4):
        sandbox.execute(index, "SET GLOBAL read_only = 1")
    await settled(sandbox, star(sandbox))


def handlers(recorder: Recorder, *, verify: float = 10.0, credentials: bool = True) -> Any:
    """The move handlers, with ``ReplicationCredentialsQuery`` set (for make-co-master)."""
    query = CREDENTIALS if credentials else ""
    return move_handlers(recorder, verify=verify, credentials_query=query)


def below(sandbox: Sandbox, index: int) -> Link:
    return (port(sandbox, index), "Yes", "Yes", "Slave_Pos")


def only(sandbox: Sandbox, *indexes: int) -> str:
    """A ``pattern`` selecting these nodes."""
    return "|".join(f":{port(sandbox, i)}$" for i in indexes)


def keys_of(details: Any) -> list[dict[str, Any]]:
    return [entry["Key"] for entry in details]


# --- the handlers against the sandbox -------------------------------------------------------


async def test_relocate_replicas_below_one_of_them_and_back(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    moved = await ops["relocate-replicas"](request("relocate-replicas", sandbox, 0, below=1))
    assert moved.message == f"Relocated 2 replicas of {zero} below {one}"
    assert keys_of(moved.details) == [key_json(sandbox, 2), key_json(sandbox, 3)]
    assert all(entry["MasterKey"] == key_json(sandbox, 1) for entry in moved.details)
    assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 1)]
    await same_data(sandbox, 2, "after relocate-replicas")
    await same_data(sandbox, 3, "after relocate-replicas")
    assert recorder.guards == 6  # STOP, CHANGE MASTER, START for each
    assert [(e.type, e.ok, e.key) for e in recorder.audits] == [("relocate-replicas", True, zero)]

    up = await ops["move-up-replicas"](request("move-up-replicas", sandbox, 1))
    assert up.message == f"Moved up 2 replicas of {one}"
    assert [entry["MasterKey"] for entry in up.details] == [key_json(sandbox, 0)] * 2
    assert topology(sandbox) == star(sandbox)

    pattern = only(sandbox, 3)
    some = await ops["relocate-replicas"](
        request("relocate-replicas", sandbox, 0, below=1, pattern=pattern)
    )
    assert keys_of(some.details) == [key_json(sandbox, 3)]
    assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 0), below(sandbox, 1)]
    same = await ops["repoint-replicas"](request("repoint-replicas", sandbox, 1))
    assert same.message == f"Repointed 1 replicas of {one}"
    assert link(sandbox, 3) == below(sandbox, 1)
    await same_data(sandbox, 3, "after repoint-replicas")

    gtid = await ops["move-replicas-gtid"](request("move-replicas-gtid", sandbox, 1, below=0))
    assert gtid.message == f"Moved 1 replicas of {one} below {zero} via GTID"
    assert gtid.details == key_json(sandbox, 0)  # orchestrator's Details: the destination
    assert topology(sandbox) == star(sandbox)
    await same_data(sandbox, 3, "after move-replicas-gtid")
    assert len(recorder.audits) == 5
    assert all(event.ok and event.user == "alice" for event in recorder.audits)


async def test_a_chain_built_with_relocates_and_put_back(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    await ops["relocate-replicas"](
        request("relocate-replicas", sandbox, 0, below=1, pattern=only(sandbox, 2, 3))
    )
    await ops["relocate-replicas"](
        request("relocate-replicas", sandbox, 1, below=2, pattern=only(sandbox, 3))
    )
    chain = [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 2)]
    assert topology(sandbox) == chain
    await same_data(sandbox, 3, "at the end of the chain")
    await ops["relocate-replicas"](request("relocate-replicas", sandbox, 2, below=0))
    await ops["relocate-replicas"](request("relocate-replicas", sandbox, 1, below=0))
    assert topology(sandbox) == star(sandbox)
    await same_data(sandbox, 3, "after the chain")
    await same_data(sandbox, 2, "after the chain")


async def test_take_siblings_regroup_and_take_master(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    one = sandbox.node(1).key
    took = await ops["take-siblings"](request("take-siblings", sandbox, 1))
    assert took.message == f"Took 2 siblings of {one}"
    assert took.details["Key"] == key_json(sandbox, 1)
    assert took.details["MasterKey"] == key_json(sandbox, 0)
    assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 1)]

    # 2 and 3 are equally up to date: the lower key is promoted, the other moves below it
    first, second = sorted((2, 3), key=lambda i: sandbox.node(i).key)
    promoted = await ops["regroup-replicas"](request("regroup-replicas", sandbox, 1))
    assert promoted.message == (f"promoted replica: {sandbox.node(first).key}, lost: 0, moved: 1")
    assert promoted.details["Key"] == key_json(sandbox, first)
    assert link(sandbox, second) == below(sandbox, first)
    assert link(sandbox, first) == below(sandbox, 1)
    await same_data(sandbox, second, "after regroup")

    # second takes first, its master: second below 1, first below second
    taken = await ops["take-master"](request("take-master", sandbox, second))
    assert taken.message == f"{sandbox.node(second).key} took its master"
    assert taken.details["MasterKey"] == key_json(sandbox, 1)
    assert link(sandbox, second) == below(sandbox, 1)
    assert link(sandbox, first) == below(sandbox, second)
    await same_data(sandbox, first, "after take-master")
    await same_data(sandbox, second, "after take-master")
    assert [e.type for e in recorder.audits] == ["take-siblings", "regroup-replicas", "take-master"]

    # 1's master is the cluster master: not taken
    before, guards = topology(sandbox), recorder.guards
    with pytest.raises(OperationRefused, match="is not a replica: take-master swaps"):
        await ops["take-master"](request("take-master", sandbox, 1))
    assert (topology(sandbox), recorder.guards) == (before, guards)


async def test_make_co_master(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    with pytest.raises(OperationRefused, match="has no replication credentials"):
        await handlers(Recorder(), credentials=False)["make-co-master"](
            request("make-co-master", sandbox, 1)
        )
    sandbox.execute(3, "SET GLOBAL read_only = 0")
    ops = handlers(recorder)
    with pytest.raises(OperationRefused, match="is not read-only"):
        await ops["make-co-master"](request("make-co-master", sandbox, 3))
    assert topology(sandbox) == star(sandbox)
    assert recorder.guards == 0

    made = await ops["make-co-master"](request("make-co-master", sandbox, 1))
    assert made.message == f"Instance made co-master: {one}"
    assert made.details["Key"] == key_json(sandbox, 1)
    assert made.details["MasterKey"] == key_json(sandbox, 0)
    assert link(sandbox, MASTER) == below(sandbox, 1)
    assert recorder.guards == 3  # SET gtid_slave_pos, CHANGE MASTER, START SLAVE
    # writes on 0 reach 1 and come back to 0 without being applied twice
    for note in ("co-master 1", "co-master 2"):
        await same_data(sandbox, 1, note)
    sandbox.execute(MASTER, "STOP SLAVE")
    sandbox.execute(MASTER, "START SLAVE")
    await same_data(sandbox, 1, "after restarting the co-master link")
    await settled(sandbox, [below(sandbox, 1), *star(sandbox)[1:]])

    for index, who in ((1, one), (0, zero)):
        with pytest.raises(OperationRefused, match=f"{who} is already co master"):
            await ops["make-co-master"](request("make-co-master", sandbox, index))
    with pytest.raises(OperationRefused, match="not a direct replica of a cluster master"):
        await ops["make-co-master"](request("make-co-master", sandbox, 2))

    # relocate under the co-master works, and back
    await ops["relocate"](request("relocate", sandbox, 2, below=1))
    assert link(sandbox, 2) == below(sandbox, 1)
    await same_data(sandbox, 2, "below the co-master")
    await ops["relocate"](request("relocate", sandbox, 2, below=0))
    assert link(sandbox, 2) == below(sandbox, 0)
    assert (recorder.audits[0].type, recorder.audits[0].ok) == ("make-co-master", True)


async def test_impossible_moves_are_refused_and_change_nothing(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    cases: list[tuple[str, CommandRequest]] = [
        ("below .* itself", request("relocate-replicas", sandbox, 0, below=0)),
        ("bad pattern", request("relocate-replicas", sandbox, 0, below=1, pattern="(")),
        ("is not a replica: its replicas cannot move up", request("move-up-replicas", sandbox, 0)),
        ("is not a replica: it has no siblings", request("take-siblings", sandbox, 0)),
        ("has no replicas to regroup", request("regroup-replicas", sandbox, 3)),
        ("is not a replica", request("take-master", sandbox, 0)),
        ("no destination given", request("move-replicas-gtid", sandbox, 0)),
    ]
    for reason, wanted in cases:
        with pytest.raises(OperationRefused, match=reason):
            await ops[wanted.operation](wanted)
    with pytest.raises(OperationRefused, match=r"cannot read 127\.0\.0\.1:\d+"):
        await ops["relocate-replicas"](
            CommandRequest(
                operation="relocate-replicas",
                instance=sandbox.node(0).key,
                destination=f"127.0.0.1:{free_port()}",
            )
        )
    assert topology(sandbox) == star(sandbox)
    assert recorder.guards == 0
    # only the refused pattern is audited (the API should have refused it: 400)
    assert [(a.type, a.ok, a.key) for a in recorder.audits] == [
        ("pattern-refused", False, sandbox.node(0).key)
    ]
    assert "bad pattern" in recorder.audits[0].message

    # a chain 0 -> 1 -> 2: the replicas of 0 (1 and 3) cannot all go below 2 (1 is its master),
    # so none moves, and the refusal names the one that cannot
    await ops["relocate"](request("relocate", sandbox, 2, below=1))
    guards = recorder.guards
    with pytest.raises(OperationRefused) as refused:
        await ops["relocate-replicas"](request("relocate-replicas", sandbox, 0, below=2))
    text = str(refused.value)
    assert "nothing moved: 1 of 2 replicas cannot move" in text
    assert f"{sandbox.node(1).key}: " in text
    assert "cannot move it below its own replica" in text
    assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 0)]
    assert recorder.guards == guards
    # narrowed by the pattern, the movable one moves
    await ops["relocate-replicas"](
        request("relocate-replicas", sandbox, 0, below=2, pattern=only(sandbox, 3))
    )
    assert link(sandbox, 3) == below(sandbox, 2)
    await same_data(sandbox, 3, "narrowed by the pattern")


async def test_a_catastrophic_pattern_is_matched_in_linear_time(clean: Sandbox) -> None:
    """``(a+)+$`` against a replica named ``aaa…ab`` (the API lists the replicas it knows):
    Python's re would backtrack for hours on the worker's event loop; RE2 answers at once."""
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    victim = "a" * 64 + "b.example"
    wanted = request(
        "relocate-replicas",
        sandbox,
        0,
        below=1,
        pattern="(a+)+$",
        replicas=f"{victim}:3306,{sandbox.node(2).key},{sandbox.node(3).key}",
    )
    started = time.perf_counter()
    with contextlib.suppress(OperationRefused):  # nothing selected: whatever it answers
        await ops["relocate-replicas"](wanted)
    assert time.perf_counter() - started < 5
    assert topology(sandbox) == star(sandbox)
    assert recorder.guards == 0
    too_long = request("relocate-replicas", sandbox, 0, below=1, pattern="a" * 600)
    with pytest.raises(OperationRefused, match="bad pattern: a pattern of 600 characters"):
        await ops["relocate-replicas"](too_long)
    assert topology(sandbox) == star(sandbox)


async def test_a_lease_lost_midway_stops_and_says_what_moved(clean: Sandbox) -> None:
    sandbox = clean
    recorder = Recorder(fail_at=4)  # replica 2 moved (guards 1-3), lost before 3's STOP
    with pytest.raises(LeaseLost) as lost:
        await handlers(recorder)["relocate-replicas"](
            request("relocate-replicas", sandbox, 0, below=1)
        )
    two, three = sandbox.node(2).key, sandbox.node(3).key
    assert str(lost.value) == (
        f"relocate-replicas: moved 1 of 2 below {sandbox.node(1).key} ({two}), then the lease "
        f"was lost before moving {three} (lease lost (test)); not tried: none"
    )
    assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 0)]
    assert [(e.type, e.ok) for e in recorder.audits] == [("relocate-replicas", False)]


async def test_a_target_killed_midway_restores_that_replica_and_reports(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(nodes=4)
    await settled(sandbox, star(sandbox))
    # replica 2 moves (guards 1-3), then 1 is killed before replica 3's CHANGE MASTER (guard 5)
    recorder = Recorder(on_guard={5: lambda: sandbox.kill(1)})
    ops = handlers(recorder, verify=3.0)
    with pytest.raises(OperationRefused) as failed:
        await ops["relocate-replicas"](request("relocate-replicas", sandbox, 0, below=1))
    text = str(failed.value)
    two, three, zero = (sandbox.node(i).key for i in (2, 3, 0))
    assert f"moved 1 of 2 below {sandbox.node(1).key} ({two}), then moving {three} failed" in text
    assert f"{three} restored to replicate from {zero}; not tried: none" in text
    assert link(sandbox, 3) == below(sandbox, 0)
    moved = link(sandbox, 2)
    assert moved is not None
    assert moved[0] == port(sandbox, 1)  # stays moved, as reported
    await same_data(sandbox, 3, "after the failed relocate-replicas")
    assert [(e.type, e.ok) for e in recorder.audits] == [("relocate-replicas", False)]

    # the replicas of the dead 1 (the one the store knows) can still be relocated
    back = await ops["relocate-replicas"](
        request("relocate-replicas", sandbox, 1, below=0, replicas=two)
    )
    assert keys_of(back.details) == [key_json(sandbox, 2)]
    assert link(sandbox, 2) == below(sandbox, 0)
    await same_data(sandbox, 2, "relocated away from the dead 1")


async def test_take_master_failing_midway_puts_the_master_back(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(nodes=3)
    await settled(sandbox, star(sandbox))
    ops = handlers(Recorder())
    await ops["relocate"](request("relocate", sandbox, 2, below=1))  # 0 -> 1 -> 2
    # 2 moves below 0 (guards 1-3); 2 is killed before 1's CHANGE MASTER to it (guard 5)
    recorder = Recorder(on_guard={5: lambda: sandbox.kill(2)})
    with pytest.raises(OperationRefused) as failed:
        await handlers(recorder, verify=3.0)["take-master"](request("take-master", sandbox, 2))
    text = str(failed.value)
    zero, one, two = (sandbox.node(i).key for i in range(3))
    assert f"take-master: {two} moved below {zero}, then moving {one} below it failed" in text
    assert f"{one} restored to replicate from {zero}" in text
    assert f"moving {two} back below {one} failed too: cannot read {two}" in text
    assert link(sandbox, 1) == below(sandbox, 0)
    await same_data(sandbox, 1, "after the failed take-master")
    assert [(e.type, e.ok) for e in recorder.audits] == [("take-master", False)]
