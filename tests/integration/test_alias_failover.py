"""After a master change the cluster keeps its name for its users (issue 10 §1), through the whole
stack (a real 4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api and two recovery
workers, each its own process), with every cluster aliased ``bars`` by
``DetectClusterAliasQuery``: kill -9 of the master, three times in a row (the dead master
restarted and put back under the new one in between), then a graceful takeover.

After each one: ``/api/master/bars`` and every earlier cluster name name the new, writable
master; one cluster shows the alias; the failed master is downtimed ``lost-in-recovery`` until
it replicates again. How fast that happens is measured by benchmarks/alias_failover.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.config import change_master_sql
from orchestrator_shared.errors import SandboxError
from orchestrator_shared.events import RecoveryPhase
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    read_only,
    recovery_events,
    replica_status,
    wait_for_phase,
    wait_until,
)
from tests.integration.test_stack import cli

pytestmark = pytest.mark.integration

ALIAS = "bars"


def node_of(sandbox: Sandbox, key: str) -> int:
    return next(node.index for node in sandbox.nodes if node.key == key)


def master_named(stack: Stack, hint: str) -> str | None:
    found = api_get(stack, f"/api/master/{hint}")
    return None if found is None else f"{found['Key']['Hostname']}:{found['Key']['Port']}"


def clusters_info(stack: Stack) -> list[dict[str, Any]]:
    answer = api_get(stack, "/api/clusters-info")
    assert isinstance(answer, list)
    return answer


def lost_in_recovery(stack: Stack) -> set[str]:
    answer = api_get(stack, "/api/lost-in-recovery") or []
    return {f"{i['Key']['Hostname']}:{i['Key']['Port']}" for i in answer}


def rejoin(sandbox: Sandbox, index: int, master: str) -> bool:
    """Put a restarted old master back to work under ``master`` (as an operator would); the
    worker that fenced it may still be cutting its client connections, ours included: then
    False, and the caller tries again."""
    port = int(master.rsplit(":", 1)[1])
    try:
        sandbox.execute(index, "SET GLOBAL read_only = 1")
        sandbox.execute(index, "STOP SLAVE")
        sandbox.execute(index, change_master_sql(port).replace("slave_pos", "current_pos"))
        sandbox.execute(index, "START SLAVE")
    except SandboxError:
        return False
    return True


def check_named(stack: Stack, master: str, earlier: list[str]) -> None:
    """The alias and every earlier cluster name lead to ``master``, which is writable."""
    sandbox = stack.sandbox
    try:
        wait_until(
            lambda: master_named(stack, ALIAS) == master,
            timeout=10,
            what=f"/api/master/{ALIAS} names {master}",
        )
    except AssertionError as exc:
        state = {
            "master": master_named(stack, ALIAS),
            "clusters": clusters_info(stack),
            "lost": sorted(lost_in_recovery(stack)),
        }
        raise AssertionError(f"{exc}; the API shows {state}") from None
    assert not read_only(sandbox, node_of(sandbox, master))
    for name in earlier:
        assert master_named(stack, name) == master, name
        cluster = api_get(stack, f"/api/cluster-info/{name}")
        assert cluster is not None and cluster["ClusterName"] == master, name
    aliased = [c["ClusterName"] for c in clusters_info(stack) if c["ClusterAlias"] == ALIAS]
    assert aliased == [master]
    # orchestrator-client's view of it
    which = cli(stack.api, "-c", "which-cluster-master", "-alias", ALIAS)
    assert (which.returncode, which.stdout) == (0, f"{master}\n"), which.stderr
    aliases = cli(stack.api, "-c", "clusters-alias")
    assert f"{master},{ALIAS}" in aliases.stdout.splitlines(), (
        aliases.stdout
    )  # as orchestrator-client
    assert api_get(stack, f"/api/cluster/alias/{ALIAS}") is not None


async def test_the_alias_and_old_names_follow_every_master_change(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(DetectClusterAliasQuery=f"SELECT '{ALIAS}'", RecoveryPeriodBlockSeconds=0)
    sandbox = stack.sandbox
    master = sandbox.master.key
    names = [master]
    wait_until(
        lambda: len(api_get(stack, f"/api/cluster/{ALIAS}") or []) == 4,
        timeout=30,
        what="the API lists the 4 instances under the alias",
    )
    assert master_named(stack, ALIAS) == master

    for _ in range(3):
        dead = master
        async with recovery_events(stack.nats_url) as events:
            await asyncio.sleep(1.5)  # every worker has read the fleet
            sandbox.kill(node_of(sandbox, dead))
            done = await wait_for_phase(
                events, RecoveryPhase.COMPLETED, timeout=30, no_failure=True
            )
        master = done.data.successor
        check_named(stack, master, names)
        names.append(master)
        # the failed master: downtimed as lost in recovery, listed, its own cluster
        wait_until(
            lambda dead=dead: dead in lost_in_recovery(stack),
            timeout=10,
            what=f"{dead} lost in recovery",
        )
        listed = cli(stack.api, "-c", "which-lost-in-recovery")
        assert dead in listed.stdout.splitlines(), listed
        instance = api_get(stack, f"/api/instance/{dead.replace(':', '/')}")
        assert instance is not None
        assert instance["IsDowntimed"] is True
        assert instance["DowntimeReason"] == "lost-in-recovery"
        steps = api_get(stack, f"/api/audit-recovery-steps/{done.data.recovery_id}")
        assert steps and steps[0]["Message"].startswith("detected: DeadMaster")
        assert steps[-1]["Message"].startswith("completed:")
        recovery = api_get(stack, f"/api/audit-recovery/uid/{done.data.recovery_id}")
        assert recovery, recovery
        entry = recovery[0]["AnalysisEntry"]  # what orchestrator's readers look for in it
        assert entry["Analysis"] == "DeadMaster"
        assert entry["AnalyzedInstanceKey"] == {
            "Hostname": "127.0.0.1",
            "Port": int(dead.rsplit(":", 1)[1]),
        }
        assert entry["ClusterDetails"]["ClusterName"] == dead
        # it comes back (fenced by the worker) and an operator puts it back to work under the
        # new master: it is not lost any more
        index = node_of(sandbox, dead)
        sandbox.start(index)
        wait_until(lambda index=index: read_only(sandbox, index), timeout=15, what="fenced")
        wait_until(
            lambda index=index, master=master: rejoin(sandbox, index, master),
            timeout=15,
            what=f"{dead} repointed to {master}",
        )
        wait_until(
            lambda dead=dead: dead not in lost_in_recovery(stack),
            timeout=20,
            what=f"{dead} back at work",
        )
        wait_until(
            lambda: len(api_get(stack, f"/api/cluster/{ALIAS}") or []) == 4,
            timeout=20,
            what="the 4 instances together again",
        )
        check_named(stack, master, names[:-1])

    # a graceful takeover (asked by alias): the alias and every name follow, nobody is lost
    successor = next(node.key for node in sandbox.nodes if replicates_from(sandbox, node, master))
    to_host, to_port = successor.rsplit(":", 1)
    async with httpx.AsyncClient(base_url=stack.api, timeout=120) as client:
        answer = await client.post(f"/api/graceful-master-takeover/{ALIAS}/{to_host}/{to_port}")
    assert answer.status_code == 200, answer.text
    check_named(stack, successor, names)
    assert lost_in_recovery(stack) == set()


def replicates_from(sandbox: Sandbox, node: Any, master: str) -> bool:
    status = replica_status(sandbox, node.index)
    return status is not None and f"127.0.0.1:{status['Master_Port']}" == master
