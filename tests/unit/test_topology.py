"""Clusters built from snapshots, and orchestrator's topology text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    GaleraState,
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
)
from orchestrator_shared.topology import build_topology, render_topology, update_topology

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
VERSION = "10.11.19-MariaDB-0+deb12u1-log"


def snap(
    port: int,
    master: int | None = None,
    *,
    read_only: bool | None = None,
    io: str = "Yes",
    alias: str = "",
    ok: bool = True,
    lag: int | None = 0,
    galera: GaleraState | None = None,
) -> InstanceSnapshot:
    channels = ()
    if master is not None:
        channels = (
            ReplicationChannel.model_validate(
                {
                    "master_key": f"127.0.0.1:{master}",
                    "io_running": io,
                    "sql_running": "Yes",
                    "io_thread": 1 if io == "Yes" else 2,
                    "sql_thread": 1,
                    "using_gtid": "Slave_Pos",
                }
            ),
        )
    return InstanceSnapshot(
        key=f"127.0.0.1:{port}",
        probe=ProbeFacts(ok=ok, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
        version=VERSION,
        read_only=(master is not None) if read_only is None else read_only,
        log_bin=True,
        log_slave_updates=True,
        binlog_format="ROW",
        channels=channels,
        suggested_cluster_alias=alias,
        replication_lag_seconds=lag if master is not None else None,
        galera=galera,
    )


def wsrep(
    uuid: str = "c0ffee", name: str = "sales-galera", state: str = "Synced", status: str = "Primary"
) -> GaleraState:
    return GaleraState(
        cluster_name=name, cluster_state_uuid=uuid, local_state=state, cluster_status=status
    )


NIL_UUID = "00000000-0000-0000-0000-000000000000"


def galera_node(port: int, master: int | None = None, **facts: str) -> InstanceSnapshot:
    """A writable Galera node (of one shared cluster unless ``uuid`` says otherwise)."""
    return snap(port, master, read_only=False, galera=wsrep(**facts))


def key(port: int) -> InstanceKey:
    return InstanceKey("127.0.0.1", port)


def test_star_cluster_named_after_master() -> None:
    topology = build_topology([snap(1), snap(3, 1), snap(2, 1), snap(4, 1)])
    assert list(topology.clusters) == ["127.0.0.1:1"]
    cluster = topology.clusters["127.0.0.1:1"]
    assert cluster.master == key(1)
    assert cluster.alias == "127.0.0.1:1"
    assert {k: n.depth for k, n in cluster.instances.items()} == {
        key(1): 0,
        key(2): 1,
        key(3): 1,
        key(4): 1,
    }
    assert cluster.instances[key(1)].replicas == (key(2), key(3), key(4))


def test_chain_depths_and_alias_from_any_member() -> None:
    topology = build_topology([snap(3, 2, alias="sb"), snap(2, 1), snap(1)])
    cluster = topology.clusters["127.0.0.1:1"]
    assert [(str(n.key), n.depth) for n in cluster.walk()] == [
        ("127.0.0.1:1", 0),
        ("127.0.0.1:2", 1),
        ("127.0.0.1:3", 2),
    ]
    assert cluster.alias == "sb"
    assert topology.cluster_of(key(3)) is cluster


def test_replica_of_unknown_master_is_its_own_cluster() -> None:
    topology = build_topology([snap(5, 9), snap(6, 5)])
    assert list(topology.clusters) == ["127.0.0.1:5"]
    assert topology.clusters["127.0.0.1:5"].instances[key(6)].depth == 1


def test_co_masters_share_a_cluster_named_after_the_writable_one() -> None:
    topology = build_topology([snap(1, 2, read_only=True), snap(2, 1, read_only=False), snap(3, 2)])
    assert list(topology.clusters) == ["127.0.0.1:2"]
    cluster = topology.clusters["127.0.0.1:2"]
    assert cluster.instances[key(2)].depth == 0
    assert cluster.instances[key(1)].depth == 1
    assert cluster.instances[key(1)].is_co_master and cluster.instances[key(2)].is_co_master
    assert not cluster.instances[key(3)].is_co_master


def test_two_clusters() -> None:
    topology = build_topology([snap(1), snap(2, 1), snap(10), snap(11, 10)])
    assert sorted(topology.clusters) == ["127.0.0.1:1", "127.0.0.1:10"]


def test_render_matches_orchestrator_text() -> None:
    topology = build_topology([snap(22306), snap(22307, 22306), snap(22308, 22306)])
    text = render_topology(topology.clusters["127.0.0.1:22306"], now=NOW, poll_seconds=5)
    assert text == (
        f"127.0.0.1:22306   [0s,ok,{VERSION},rw,ROW,>>]\n"
        f"+ 127.0.0.1:22307 [0s,ok,{VERSION},ro,ROW,>>,GTID]\n"
        f"+ 127.0.0.1:22308 [0s,ok,{VERSION},ro,ROW,>>,GTID]"
    )
    tabulated = render_topology(
        topology.clusters["127.0.0.1:22306"], now=NOW, poll_seconds=5, tabulated=True
    )
    assert tabulated.splitlines() == [
        f"127.0.0.1:22306  |0s|ok|{VERSION}|rw|ROW|>>     ",
        f"+ 127.0.0.1:22307|0s|ok|{VERSION}|ro|ROW|>>,GTID",
        f"+ 127.0.0.1:22308|0s|ok|{VERSION}|ro|ROW|>>,GTID",
    ]


def test_render_marks_broken_and_stale_instances() -> None:
    topology = build_topology(
        [snap(1), snap(2, 1, io="Connecting", lag=None), snap(3, 2, ok=False), snap(4, 1, lag=60)]
    )
    text = render_topology(topology.clusters["127.0.0.1:1"], now=NOW, poll_seconds=5)
    lines = text.splitlines()
    assert lines[1].startswith("- 127.0.0.1:2 ") and "[null,nonreplicating," in lines[1]
    assert lines[2].startswith("  - 127.0.0.1:3 ") and ",invalid," in lines[2]
    assert lines[3].startswith("+ 127.0.0.1:4 ") and "[60s,lag," in lines[3]
    later = render_topology(
        topology.clusters["127.0.0.1:1"], now=NOW + timedelta(minutes=1), poll_seconds=5
    )
    assert ",unchecked," in later.splitlines()[0]


# --- Galera clusters --------------------------------------------------------------------------


def test_galera_nodes_are_one_cluster_of_peers_at_depth_0() -> None:
    topology = build_topology(
        [galera_node(3), galera_node(1), galera_node(2), snap(4, 1), snap(5, 3), snap(6, 5)]
    )
    assert list(topology.clusters) == ["127.0.0.1:1"]
    cluster = topology.clusters["127.0.0.1:1"]
    assert (cluster.master, cluster.peers) == (key(1), (key(2), key(3)))
    assert cluster.alias == "sales-galera"
    assert [(n.key.port, n.depth) for n in cluster.walk()] == [
        (1, 0),
        (4, 1),
        (2, 0),
        (3, 0),
        (5, 1),
        (6, 2),
    ]
    assert not any(node.is_co_master for node in cluster.instances.values())
    assert {topology.cluster_of_instance[key(port)] for port in range(1, 7)} == {cluster.name}


def test_a_dead_galera_node_keeps_its_place_by_its_last_state() -> None:
    dead = snap(1, read_only=False, ok=False, galera=wsrep())
    topology = build_topology([dead, galera_node(2), galera_node(3), snap(4, 1)])
    cluster = topology.clusters["127.0.0.1:1"]
    assert cluster.peers == (key(2), key(3)) and cluster.count == 4


def test_galera_clusters_with_distinct_uuids_are_distinct_clusters() -> None:
    topology = build_topology(
        [
            galera_node(1, uuid="a", name="east"),
            galera_node(2, uuid="a", name="east"),
            galera_node(3, uuid="b", name="west"),
            galera_node(4, uuid="b", name="west"),
            snap(5, read_only=False, galera=GaleraState()),  # wsrep on, no cluster state yet
            galera_node(6, uuid="b", name="west"),
            galera_node(7, uuid=NIL_UUID),  # two nodes that never joined a cluster
            galera_node(8, uuid=NIL_UUID),
        ]
    )
    assert {name: c.peers for name, c in topology.clusters.items()} == {
        "127.0.0.1:1": (key(2),),
        "127.0.0.1:3": (key(4), key(6)),
        "127.0.0.1:5": (),
        "127.0.0.1:7": (),
        "127.0.0.1:8": (),
    }
    assert topology.clusters["127.0.0.1:3"].alias == "west"


def test_a_wsrep_name_two_galera_clusters_share_is_no_alias() -> None:
    topology = build_topology(
        [
            galera_node(1, uuid="a", name="my_wsrep_cluster"),
            galera_node(2, uuid="a", name="my_wsrep_cluster"),
            galera_node(3, uuid="b", name="my_wsrep_cluster"),
            galera_node(4, uuid="b", name="my_wsrep_cluster"),
            snap(5, 3, alias="billing"),
        ]
    )
    aliases = {name: cluster.alias for name, cluster in topology.clusters.items()}
    assert aliases == {"127.0.0.1:1": "127.0.0.1:1", "127.0.0.1:3": "billing"}


def test_galera_nodes_replicating_from_an_outside_master_join_its_cluster() -> None:
    topology = build_topology(
        [snap(9, read_only=False), galera_node(2, 9), galera_node(1), galera_node(3), snap(4, 2)]
    )
    assert list(topology.clusters) == ["127.0.0.1:9"]
    cluster = topology.clusters["127.0.0.1:9"]
    assert (cluster.master, cluster.peers) == (key(9), (key(1), key(3)))
    assert [(n.key.port, n.depth) for n in cluster.walk()] == [
        (9, 0),
        (2, 1),
        (4, 2),
        (1, 0),
        (3, 0),
    ]


def test_galera_nodes_are_marked_in_the_text() -> None:
    topology = build_topology(
        [
            galera_node(22306),
            galera_node(22307, state="Donor/Desynced"),
            galera_node(22308, state="Initialized", status="non-Primary"),
            snap(22309, 22306),
        ]
    )
    text = render_topology(topology.clusters["127.0.0.1:22306"], now=NOW, poll_seconds=5)
    assert text.splitlines() == [
        f"127.0.0.1:22306   [0s,ok,{VERSION},rw,ROW,>>,galera:Synced]",
        f"+ 127.0.0.1:22309 [0s,ok,{VERSION},ro,ROW,>>,GTID]",
        f"127.0.0.1:22307   [0s,ok,{VERSION},rw,ROW,>>,galera:Donor/Desynced]",
        f"127.0.0.1:22308   [0s,ok,{VERSION},rw,ROW,>>,galera:Initialized,galera:non-Primary]",
    ]


def test_a_node_leaving_its_galera_cluster_makes_an_update_rebuild() -> None:
    fleet = [galera_node(1), galera_node(2), snap(3, 2)]
    previous = build_topology(fleet)
    bootstrapped = galera_node(2, uuid="new")
    snapshots = {s.instance_key: s for s in [fleet[0], bootstrapped, fleet[2]]}
    updated = update_topology(previous, snapshots, [key(2)])
    assert updated == build_topology(snapshots.values())
    assert sorted(updated.clusters) == ["127.0.0.1:1", "127.0.0.1:2"]
    assert updated.cluster_of(key(3)) is updated.clusters["127.0.0.1:2"]


# --- incremental updates ---------------------------------------------------------------------

PORTS = range(3300, 3308)
GALERA_STATES = st.sampled_from([None, None, wsrep("a"), wsrep("b"), wsrep("c", name="west")])


@st.composite
def fleets(draw: st.DrawFn) -> dict[int, InstanceSnapshot]:
    """Up to 8 instances with arbitrary master links (unknown masters, chains, cycles), some
    of them nodes of one of three Galera clusters (two of the same name)."""
    ports = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=8, unique=True))
    return {
        port: snap(
            port,
            draw(st.none() | st.sampled_from([*PORTS, 3399])),
            read_only=draw(st.booleans()),
            alias=draw(st.sampled_from(["", "", "sales"])),
            lag=draw(st.integers(0, 5)),
            galera=draw(GALERA_STATES),
        )
        for port in ports
    }


@given(fleets(), st.data())
@settings(max_examples=300, deadline=None)
def test_update_equals_a_fresh_build(
    fleet: dict[int, InstanceSnapshot], data: st.DataObject
) -> None:
    previous = build_topology(fleet.values())
    changed = data.draw(st.lists(st.sampled_from(sorted(fleet)), unique=True))
    after = dict(fleet)
    for port in changed:
        old = fleet[port]
        master = old.master_key.port if old.master_key is not None else None
        if data.draw(st.booleans()):  # same shape, new facts
            after[port] = snap(
                port,
                master,
                read_only=old.read_only,
                alias=old.suggested_cluster_alias,
                lag=9,
                galera=old.galera,
            )
        else:  # anything: another master, writability, alias or Galera cluster
            after[port] = snap(
                port,
                data.draw(st.none() | st.sampled_from([*PORTS, 3399])),
                read_only=data.draw(st.booleans()),
                alias=data.draw(st.sampled_from(["", "billing"])),
                galera=data.draw(GALERA_STATES),
            )
    snapshots = {s.instance_key: s for s in after.values()}
    updated = update_topology(previous, snapshots, [key(port) for port in changed])
    assert updated == build_topology(after.values())


def test_an_update_that_moves_nothing_reuses_the_untouched_clusters() -> None:
    fleet = [snap(1), snap(2, 1), snap(3, 1), snap(11), snap(12, 11)]
    previous = build_topology(fleet)
    lagging = snap(3, 1, lag=30)
    snapshots = {s.instance_key: s for s in [*fleet[:2], lagging, *fleet[3:]]}
    updated = update_topology(previous, snapshots, [key(3)])
    assert updated.clusters["127.0.0.1:11"] is previous.clusters["127.0.0.1:11"]
    assert updated.clusters["127.0.0.1:1"].instances[key(3)].snapshot is lagging
    assert (
        updated.clusters["127.0.0.1:1"].instances[key(2)]
        is previous.clusters["127.0.0.1:1"].instances[key(2)]
    )


def test_an_update_that_adds_an_instance_builds_afresh() -> None:
    previous = build_topology([snap(1)])
    snapshots = {s.instance_key: s for s in [snap(1), snap(2, 1)]}
    updated = update_topology(previous, snapshots, [key(2)])
    assert updated.clusters["127.0.0.1:1"].instances[key(2)].depth == 1
