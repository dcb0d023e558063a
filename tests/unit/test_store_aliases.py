"""Cluster names and aliases across master changes (``store/aliases.py`` through the view):
the alias follows the successor, the old name resolves to the new cluster, a failed master
lost in recovery claims nothing, and one alias names one cluster, deterministically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_api.store.aliases import (
    LOST_IN_RECOVERY,
    AliasConflict,
    Succession,
    is_lost_in_recovery,
)
from orchestrator_api.store.view import ClusterSetting, FleetView
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Downtime
from orchestrator_shared.snapshot import (
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    ThreadState,
)
from orchestrator_shared.topology import update_topology

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RECOVERED_AT = T0 + timedelta(seconds=30)
NOW = T0 + timedelta(minutes=5)


def k(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def snap(
    key: str,
    master: str | None = None,
    *,
    alias: str = "bars",
    ok: bool = True,
    checked: datetime = NOW,
    replicating: bool = True,
    read_only: bool | None = None,
) -> InstanceSnapshot:
    state = ThreadState.RUNNING if replicating else ThreadState.OTHER
    channels = (
        (ReplicationChannel(master_key=master, io_thread=state, sql_thread=ThreadState.RUNNING),)
        if master
        else ()
    )
    return InstanceSnapshot(
        key=key,
        probe=ProbeFacts(
            ok=ok, checked_at=checked, attempted_at=checked, last_seen_at=checked if ok else T0
        ),
        read_only=master is not None if read_only is None else read_only,
        channels=channels,
        suggested_cluster_alias=alias,
    )


def lost(key: str, *, begins: datetime = RECOVERED_AT) -> Downtime:
    return Downtime(
        key=k(key),
        owner="worker-1",
        reason=LOST_IN_RECOVERY,
        begins_at=begins,
        ends_at=begins + timedelta(days=1),
    )


def succession(
    old: str, new: str, *, alias: str = "bars", at: datetime = RECOVERED_AT
) -> Succession:
    return Succession(cluster=old, successor=k(new), at=at, alias=alias, recovery_uid="r1")


def fleet(
    *snapshots: InstanceSnapshot,
    downtime: tuple[Downtime, ...] = (),
    successions: tuple[Succession, ...] = (),
    settings: dict[str, ClusterSetting] | None = None,
) -> FleetView:
    return FleetView(
        {s.instance_key: s for s in snapshots},
        settings or {},
        downtime=downtime,
        successions=successions,
        now=NOW,
    )


# The sandbox after a failover: a:1 died, b:1 was promoted, c:1 and d:1 follow b:1.
AFTER_FAILOVER = (
    snap("a:1", ok=False, checked=NOW, read_only=False),
    snap("b:1", read_only=False),
    snap("c:1", "b:1"),
    snap("d:1", "b:1"),
)


def test_after_a_failover_the_alias_and_the_old_name_reach_the_new_master() -> None:
    view = fleet(*AFTER_FAILOVER, downtime=(lost("a:1"),), successions=(succession("a:1", "b:1"),))
    assert view.cluster_by_alias("bars") == "b:1"
    assert view.resolve_cluster("bars") == "b:1"
    assert view.resolve_cluster("a:1") == "b:1"  # the old cluster name follows the succession
    # the dead master is still a cluster of its own, showing its name, claiming nothing
    assert view.summaries["a:1"].alias == "a:1"
    assert view.summaries["b:1"].alias == "bars"
    assert [s.alias for s in view.summaries.values()].count("bars") == 1
    assert view.alias_conflicts == ()
    # its own key still finds it as an instance
    assert view.instance(k("a:1")) is not None


def test_before_the_recovery_is_recorded_a_contested_alias_goes_to_the_answering_master() -> None:
    # b:1's new snapshot arrived before the recovery's completion event: both claim "bars"
    view = fleet(*AFTER_FAILOVER)
    assert view.cluster_by_alias("bars") == "b:1"
    assert view.summaries["a:1"].alias == "a:1"
    assert view.alias_conflicts == (AliasConflict("bars", "b:1", ("a:1",), "its master answers"),)
    assert "claimed by b:1 and by a:1" in view.alias_conflicts[0].describe()


def test_a_succession_decides_a_conflict_before_probe_facts() -> None:
    # the old master came back and answers (writable, as MariaDB restarts), not lost any more
    revived = (snap("a:1", read_only=False), *AFTER_FAILOVER[1:])
    view = fleet(*revived, successions=(succession("a:1", "b:1"),))
    assert view.cluster_by_alias("bars") == "b:1"
    assert view.alias_conflicts[0].why == "it passed there in the latest master change"
    # a live cluster's own name is itself again
    assert view.resolve_cluster("a:1") == "a:1"


def test_an_alias_an_operator_set_wins_over_a_detected_one() -> None:
    view = fleet(
        snap("x:1", alias="bars"),
        snap("y:1", alias=""),
        settings={"y:1": ClusterSetting(alias_override="bars")},
    )
    assert view.cluster_by_alias("bars") == "y:1"
    assert view.summaries["x:1"].alias == "x:1"
    assert view.alias_conflicts[0].why == "an operator set it"


def test_ties_are_broken_by_size_then_name() -> None:
    by_size = fleet(snap("x:1"), snap("y:1", read_only=False), snap("z:1", "y:1"))
    assert by_size.cluster_by_alias("bars") == "y:1"
    assert by_size.alias_conflicts[0].why == "it has more instances"
    by_name = fleet(snap("y:1", read_only=False), snap("x:1", read_only=False))
    assert by_name.cluster_by_alias("bars") == "x:1"
    assert by_name.alias_conflicts[0] == AliasConflict(
        "bars", "x:1", ("y:1",), "its name sorts first"
    )


def test_successions_are_followed_through_several_master_changes() -> None:
    # a:1 -> b:1 (failover), then b:1 -> c:1 (takeover: b:1 now replicates from c:1)
    view = fleet(
        snap("a:1", ok=False, read_only=False),
        snap("c:1", read_only=False),
        snap("b:1", "c:1"),
        snap("d:1", "c:1"),
        downtime=(lost("a:1"),),
        successions=(succession("a:1", "b:1"), succession("b:1", "c:1", at=NOW)),
    )
    assert view.resolve_cluster("a:1") == "c:1"
    assert view.resolve_cluster("b:1") == "c:1"
    assert view.resolve_cluster("bars") == "c:1"


def test_a_takeover_there_and_back_leaves_each_live_name_its_own() -> None:
    view = fleet(
        snap("a:1", read_only=False),
        snap("b:1", "a:1"),
        successions=(succession("a:1", "b:1"), succession("b:1", "a:1", at=NOW)),
    )
    assert view.resolve_cluster("a:1") == "a:1"
    assert view.resolve_cluster("b:1") == "a:1"  # no longer a cluster: followed back
    assert view.alias_conflicts == ()


def test_a_succession_loop_or_a_forgotten_successor_ends_the_walk() -> None:
    loop = fleet(
        snap("a:1", ok=False, read_only=False),
        snap("b:1", ok=False, read_only=False),
        downtime=(lost("a:1"), lost("b:1")),
        successions=(succession("a:1", "b:1"), succession("b:1", "a:1")),
    )
    assert loop.resolve_cluster("a:1") == "a:1"  # round the loop once, then stop
    gone = fleet(snap("a:1", ok=False), successions=(succession("a:1", "q:1"),))
    assert gone.resolve_cluster("a:1") == "a:1"


def test_a_lost_master_seen_replicating_again_is_back_at_work() -> None:
    # the operator repaired a:1 and put it under b:1
    repaired = snap("a:1", "b:1", checked=NOW)
    view = fleet(repaired, *AFTER_FAILOVER[1:], downtime=(lost("a:1"),))
    assert view.downtime_of(k("a:1"), now=NOW) is None
    assert view.downtimes(now=NOW) == []
    assert not view.lost
    # not yet replicating (IO thread connecting): still lost
    stuck = snap("a:1", "b:1", replicating=False)
    assert is_lost_in_recovery(lost("a:1"), stuck, now=NOW)
    # replicating, but seen before the downtime began: still lost
    early = snap("a:1", "b:1", checked=T0)
    assert is_lost_in_recovery(lost("a:1"), early, now=NOW)
    # an ordinary downtime is not ended by replication
    other = Downtime(k("a:1"), "ops", "maintenance", RECOVERED_AT, NOW + timedelta(hours=1))
    assert fleet(repaired, downtime=(other,)).downtime_of(k("a:1"), now=NOW) == other


def test_a_view_over_new_snapshots_reconsiders_lost_masters_and_conflicts() -> None:
    before = fleet(*AFTER_FAILOVER, downtime=(lost("a:1"),))
    assert before.lost == {k("a:1")}
    # a:1 answers again, in the same place (a cluster of its own), still not replicating
    snapshots = dict(before.snapshots)
    snapshots[k("a:1")] = snap("a:1", read_only=False)
    after = before.with_snapshots(
        snapshots, update_topology(before.topology, snapshots, [k("a:1")])
    )
    assert after.lost == {k("a:1")}
    assert after.cluster_by_alias("bars") == "b:1"
    # a contested alias is decided again when its claimants' probes change
    contested = fleet(*AFTER_FAILOVER)
    assert contested.cluster_by_alias("bars") == "b:1"
    flipped = dict(contested.snapshots)
    flipped[k("a:1")] = snap("a:1", read_only=False)
    flipped[k("b:1")] = snap("b:1", ok=False, read_only=False)
    topology = update_topology(contested.topology, flipped, [k("a:1"), k("b:1")])
    assert topology.cluster_of_instance is contested.topology.cluster_of_instance
    assert contested.with_snapshots(flipped, topology).cluster_by_alias("bars") == "a:1"
