"""Discovery against a real 3-node MariaDB Galera cluster (``galera_sandbox``: nodes 0-2 are
the Galera nodes, node 3 an async GTID replica of node 0) and a real nats-server; then the
topology API and the CLI over it (the Galera nodes and their replica are one cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.harness.nats import NatsServer
from tests.integration.test_discovery import (
    eventually,
    jetstream,
    running_discovery,
    settings_for,
    stream_snapshots,
)
from tests.integration.test_stack import cli, running_stack, wait_until

pytestmark = pytest.mark.integration


def _synced_view(snapshot: InstanceSnapshot, size: int) -> bool:
    galera = snapshot.galera
    return (
        snapshot.probe.ok
        and galera is not None
        and galera.is_synced
        and galera.is_primary
        and galera.cluster_size == size
    )


async def _all_synced(
    js: JetStreamContext, galera_keys: list[str], replica: str
) -> dict[str, InstanceSnapshot] | None:
    """The snapshots once every Galera node's says Synced/Primary/3 and the replica's is in."""
    found = await stream_snapshots(js, [*galera_keys, replica])
    synced = all(key in found and _synced_view(found[key], 3) for key in galera_keys)
    return found if synced and replica in found else None


async def test_discovery_reads_every_galera_node_and_finds_its_peers_from_one_seed(
    galera_sandbox: Sandbox, nats_server: NatsServer
) -> None:
    galera_keys = [node.key for node in galera_sandbox.galera_nodes]
    seed, replica = galera_keys[0], galera_sandbox.node(3).key
    expected_uuid = galera_sandbox.galera_status(0)["wsrep_cluster_state_uuid"]
    settings = settings_for(nats_server.url, [seed])

    async with running_discovery(settings) as service, jetstream(nats_server.url) as (_, js):
        snapshots = await eventually(
            lambda: _all_synced(js, galera_keys, replica),
            timeout=20,
            what="3 synced Galera snapshots",
        )
        known = {str(key) for key in service.known}

    assert set(galera_keys) | {replica} <= known
    # nodes 1 and 2 are no replicas of node 0 (nor its masters): only Galera names them
    first = snapshots[seed]
    assert set(first.replica_keys) == {replica}
    assert first.channels == ()
    for index, key in enumerate(galera_keys):
        galera = snapshots[key].galera
        assert galera is not None
        cluster_name, node_name = galera_sandbox.execute(
            index, "SELECT @@wsrep_cluster_name, @@wsrep_node_name"
        )[0]
        assert galera.cluster_state_uuid == expected_uuid
        assert (galera.cluster_name, galera.node_name) == (cluster_name, node_name)
        assert galera.ready and galera.connected
        assert not galera.desync and galera.desync_count == 0
        assert galera.member_keys == tuple(sorted(galera_keys))
    # the async replica is no Galera node
    assert snapshots[replica].galera is None
    assert snapshots[replica].master_key is not None
    assert str(snapshots[replica].master_key) == seed


@pytest.fixture
def galera_stack(
    galera_sandbox: Sandbox, nats_server: NatsServer, tmp_path: Path
) -> Iterator[tuple[Sandbox, str]]:
    """Discovery and the topology API over the Galera sandbox; the API's URL."""
    yield from running_stack(galera_sandbox, nats_server, tmp_path)


def test_the_galera_nodes_and_their_replica_are_one_cluster_in_the_api_and_the_cli(
    galera_stack: tuple[Sandbox, str],
) -> None:
    sandbox, url = galera_stack
    galera_keys = [node.key for node in sandbox.galera_nodes]
    replica = sandbox.node(3).key
    name = str(min(InstanceKey.parse(key) for key in galera_keys))
    wsrep_name = str(sandbox.execute(0, "SELECT @@wsrep_cluster_name")[0][0])

    def whole_cluster() -> Any:
        answer = httpx.get(f"{url}/api/cluster/{wsrep_name}", timeout=2)
        return answer.json() if answer.status_code == 200 and len(answer.json()) == 4 else None

    instances = wait_until(whole_cluster, timeout=30, what="4 instances under the wsrep name")
    found = {f"{i['Key']['Hostname']}:{i['Key']['Port']}" for i in instances}
    assert found == {*galera_keys, replica}
    assert {i["ClusterName"] for i in instances} == {name}
    assert httpx.get(f"{url}/api/clusters", timeout=5).json() == [name]
    infos = httpx.get(f"{url}/api/clusters-info", timeout=5).json()
    summary = [(i["ClusterName"], i["ClusterAlias"], i["CountInstances"]) for i in infos]
    assert summary == [(name, wsrep_name, 4)]
    for hint in (name, galera_keys[2], replica):  # any member names the cluster
        assert len(httpx.get(f"{url}/api/cluster/{hint}", timeout=5).json()) == 4

    # the CLI's tree: each Galera node at the top, marked, node 0's replica below it
    topology = cli(url, "-c", "topology", "-a", wsrep_name)
    assert topology.returncode == 0, topology.stderr
    lines = topology.stdout.splitlines()
    assert [line.split(" [")[0].strip() for line in lines] == [
        galera_keys[0],
        f"+ {replica}",
        *galera_keys[1:],
    ], lines
    galera_lines = [lines[0], *lines[2:]]
    assert all(line.endswith(",galera:Synced]") for line in galera_lines), lines
    assert ",rw," in lines[0] and "galera:" not in lines[1], lines
