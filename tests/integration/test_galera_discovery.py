"""Discovery against a real 3-node MariaDB Galera cluster (``galera_sandbox``: nodes 0-2 are
the Galera nodes, node 3 an async GTID replica of node 0) and a real nats-server."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.harness.nats import NatsServer
from tests.integration.test_discovery import (
    eventually,
    jetstream,
    running_discovery,
    settings_for,
    stream_snapshots,
)

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
