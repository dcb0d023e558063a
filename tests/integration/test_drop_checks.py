"""The web UI's drop checks (issue 11): ``/api/can-relocate`` and ``/api/can-relocate-replicas``
through the whole stack on a real 4-node MariaDB sandbox (answered by the active recovery
worker, read-only), and the worker's checks against a simulated 200-instance cluster
(tests/harness/simfleet.py; their speed: benchmarks/drop_checks.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_recovery.operations.drop_checks import DropChecks
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.instance_key import InstanceKey
from tests.harness.ports import free_port
from tests.integration.api_support import ACCESS, link
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_simfleet import _ports_free

pytestmark = pytest.mark.integration

ADMIN = ("ops", "s3cret")
READER = ("readonly", "anything")
SIMFLEET = Path(__file__).resolve().parents[1] / "harness" / "simfleet.py"
FLEET_SIZE = 200


def verdicts(answer: httpx.Response) -> dict[int, tuple[bool, str]]:
    """port -> (Allowed, Reason)."""
    assert answer.status_code == 200, answer.text
    return {v["Key"]["Port"]: (v["Allowed"], v["Reason"]) for v in answer.json()}


def master_port(api: str, sandbox: Sandbox, index: int) -> int | None:
    node = sandbox.node(index)
    answer = httpx.get(f"{api}/api/instance/127.0.0.1/{node.port}", auth=READER, timeout=5)
    return int(answer.json()["MasterKey"]["Port"]) if answer.status_code == 200 else None


def test_drop_checks_on_the_sandbox(make_stack: StackFactory) -> None:
    stack = make_stack(
        AuthenticationMethod="multi", HTTPAuthUser=ADMIN[0], HTTPAuthPassword=ADMIN[1]
    )
    sandbox, api = stack.sandbox, stack.api
    ports = [sandbox.node(i).port for i in range(4)]
    # node 3 below node 1: 0 <- {1 <- 3, 2}
    sandbox.execute(3, "STOP SLAVE")
    sandbox.execute(
        3, f"CHANGE MASTER TO master_host='127.0.0.1', master_port={ports[1]}, "
        "master_use_gtid=slave_pos",
    )  # fmt: skip
    sandbox.execute(3, "START SLAVE")
    wait_until(
        lambda: master_port(api, sandbox, 3) == ports[1] and master_port(api, sandbox, 2),
        timeout=30,
        what="the API sees node 3 below node 1",
    )
    before = [link(sandbox, i) for i in range(4)]

    def get(route: str, index: int) -> httpx.Response:
        url = f"{api}/api/{route}/127.0.0.1/{ports[index]}"
        return httpx.get(url, auth=READER, timeout=10)  # the read role is enough

    wait_until(
        lambda: get("can-relocate", 1).status_code == 200,
        timeout=20,
        what="a recovery worker leads and answers",
    )
    one = verdicts(get("can-relocate", 1))
    assert set(one) == {ports[0], ports[2], ports[3]}
    assert one[ports[2]] == (True, "")  # its sibling
    assert one[ports[0]] == (True, "")  # its own master (a repoint)
    allowed, reason = one[ports[3]]  # its own replica
    assert not allowed
    assert reason == (
        f"127.0.0.1:{ports[3]} replicates (directly or not) from 127.0.0.1:{ports[1]}: "
        "cannot move it below its own replica"
    )

    master = verdicts(get("can-relocate", 0))  # every other instance is below the master
    assert all(
        not ok and why.endswith("cannot move it below its own replica")
        for ok, why in master.values()
    ), master

    # the replicas of node 1 (node 3 only): below 0 or 2, not below 3 itself
    many = verdicts(get("can-relocate-replicas", 1))
    assert many[ports[0]] == (True, "")
    assert many[ports[2]] == (True, "")
    assert many[ports[3]][0] is False
    assert "no replica to move" in many[ports[3]][1]
    # the replicas of the master (1 and 2) below 3: 1 cannot go below its own replica
    top = verdicts(get("can-relocate-replicas", 0))
    assert top[ports[3]] == (
        False,
        f"127.0.0.1:{ports[1]}: 127.0.0.1:{ports[3]} replicates (directly or not) from "
        f"127.0.0.1:{ports[1]}: cannot move it below its own replica",
    )

    unknown = httpx.get(f"{api}/api/can-relocate/127.0.0.1/1", auth=READER, timeout=5)
    assert unknown.status_code == 404
    bad = httpx.get(f"{api}/api/can-relocate/127.0.0.1/x", auth=READER, timeout=5)
    assert bad.status_code == 400
    assert httpx.get(f"{api}/api/can-relocate/127.0.0.1/{ports[1]}", timeout=5).status_code == 401

    # someone's maintenance on node 2: moving below it is refused for the others, with whose
    begun = httpx.post(
        f"{api}/api/begin-maintenance/127.0.0.1/{ports[2]}/alice/disk%20swap",
        auth=ADMIN,
        timeout=10,
    )
    assert begun.status_code == 200, begun.text
    locked = verdicts(get("can-relocate", 1))
    assert not locked[ports[2]][0]
    assert locked[ports[2]][1].startswith(f"127.0.0.1:{ports[2]} is in maintenance (alice, ")
    assert locked[ports[0]] == (True, "")
    ended = httpx.post(f"{api}/api/end-maintenance/127.0.0.1/{ports[2]}", auth=ADMIN, timeout=10)
    assert ended.status_code == 200, ended.text
    assert verdicts(get("can-relocate", 1))[ports[2]] == (True, "")

    # nothing changed on the servers
    assert [link(sandbox, i) for i in range(4)] == before

    # a target that does not answer is refused, with why
    sandbox.kill(2)
    dead = verdicts(get("can-relocate", 3))
    assert dead[ports[1]] == (True, "")
    assert not dead[ports[2]][0]
    assert dead[ports[2]][1].startswith(f"cannot read 127.0.0.1:{ports[2]}: ")


@pytest.fixture
def fleet() -> Iterator[int]:
    """One simulated cluster of 200 (a master and 199 replicas); its base port."""
    for _ in range(20):
        base = free_port()
        if _ports_free(base, FLEET_SIZE):
            break
    else:
        pytest.fail("no free range of ports for the simulated fleet")
    command = [
        sys.executable, str(SIMFLEET), "--base-port", str(base),
        "--clusters", "1", "--cluster-size", str(FLEET_SIZE),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", "simfleet did not start"
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_every_target_of_a_200_instance_cluster_is_checked(fleet: int) -> None:
    """Every other instance gets its verdict (how fast: benchmarks/drop_checks.py)."""
    keys = [InstanceKey("127.0.0.1", fleet + member) for member in range(FLEET_SIZE)]
    checks = DropChecks(access=ACCESS)
    replica = keys[1]
    request = CommandRequest(
        operation="can-relocate",
        instance=str(replica),
        arguments={"targets": ",".join(str(key) for key in keys if key != replica)},
    )
    reply = await checks.can_relocate(request)
    answers = {v["Key"]["Port"]: (v["Allowed"], v["Reason"]) for v in reply.details}
    assert len(answers) == FLEET_SIZE - 1
    assert answers[fleet] == (True, "")  # the master
    siblings = [answers[fleet + member] for member in range(2, FLEET_SIZE)]
    assert all(allowed for allowed, _ in siblings), siblings[:3]
