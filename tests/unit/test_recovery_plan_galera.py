"""``plan_galera_relocation``: a failed Galera node's async replicas go under a healthy peer.

The servers are built as in the planning scenarios (``server``); a Galera node gets a
``GaleraState`` of one state uuid. The GTIDs of the cluster carry server id 1 whichever node
wrote them, as a real MariaDB Galera cluster's do (docs/galera.md)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import PlanOptions, Refusal, RefusalCode, RelocationPlan
from orchestrator_shared.recovery.galera import (
    galera_peers,
    is_failed_galera_node,
    plan_galera_relocation,
)
from orchestrator_shared.snapshot import GaleraState, InstanceSnapshot
from tests.unit.test_recovery_plan_scenarios import server

pytestmark = pytest.mark.unit

UUID = "6f5e4d3c-0000-0000-0000-000000000001"
NODE1, NODE2, NODE3 = "g1:3306", "g2:3306", "g3:3306"
REPLICA = "r1:3306"
ALL = PlanOptions(recover_master_cluster_filters=("*",))


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def node(
    name: str,
    *,
    status: str = "Primary",
    state: str = "Synced",
    uuid: str = UUID,
    **fields: Any,
) -> InstanceSnapshot:
    galera = GaleraState(
        cluster_name="shop",
        cluster_state_uuid=uuid,
        cluster_size=3,
        cluster_status=status,
        local_state=state,
        ready=status == "Primary" and state == "Synced",
        connected=True,
    )
    snap = server(name, {"gtid": "0-1-100", "server_id": 0, **fields})
    return snap.model_copy(update={"galera": galera})


def dead(name: str = NODE1, **fields: Any) -> InstanceSnapshot:
    return node(name, ok=False, **fields)


def replica(name: str = REPLICA, **fields: Any) -> InstanceSnapshot:
    return server(name, {"master": NODE1, "gtid": "0-1-100", "gtid_slave_pos": "0-1-100", **fields})


def plan(
    failed: InstanceSnapshot,
    replicas: list[InstanceSnapshot],
    peers: list[InstanceSnapshot],
    **kwargs: Any,
) -> RelocationPlan | Refusal:
    options = kwargs.pop("options", ALL)
    return plan_galera_relocation(
        failed, replicas, peers=peers, cluster=NODE1, options=options, **kwargs
    )


def planned(result: RelocationPlan | Refusal) -> RelocationPlan:
    assert isinstance(result, RelocationPlan), result.describe()
    return result


def refused(result: RelocationPlan | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result.describe()
    return result


def test_the_replicas_of_a_dead_node_go_under_the_first_healthy_peer() -> None:
    result = planned(plan(dead(), [replica(), replica("r2:3306")], [node(NODE2), node(NODE3)]))
    assert result.galera and result.failed == key(NODE1)
    assert result.moves == ((key(REPLICA), key(NODE2)), (key("r2:3306"), key(NODE2)))
    assert dict(result.rejected) == {key(NODE3): "fit, but ranks lower"}
    assert result.describe().startswith(
        f"cluster {NODE1}: relocate replicas of failed Galera node {NODE1}: "
    )
    assert result.to_dict()["kind"] == "galera-node"


def test_a_node_outside_the_primary_component_has_failed_too() -> None:
    alone = node(NODE1, status="non-Primary", state="Initialized")
    assert is_failed_galera_node(alone) and is_failed_galera_node(dead())
    assert not is_failed_galera_node(node(NODE1)) and not is_failed_galera_node(replica())
    result = planned(plan(alone, [replica()], [dead(NODE2), node(NODE3)]))
    assert result.moves == ((key(REPLICA), key(NODE3)),)
    assert "unreachable" in result.rejected[key(NODE2)]


@pytest.mark.parametrize("forced", [False, True])
def test_a_healthy_node_keeps_its_replicas_even_forced(forced: bool) -> None:
    result = refused(plan(node(NODE1), [replica()], [node(NODE2)], forced=forced))
    assert result.code is RefusalCode.GALERA_NODE
    assert "is a healthy node of Galera cluster shop" in result.reason


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        (dead(NODE2), "unreachable"),
        (node(NODE2, status="non-Primary"), "is not in the primary component (non-Primary)"),
        (node(NODE2, state="Donor/Desynced"), "is not Synced (Donor/Desynced)"),
        (node(NODE2, log_bin=False), "has no binary log"),
        (node(NODE2, log_slave_updates=False), "log_slave_updates=OFF"),
        (node(NODE2, promotion_rule="must_not"), "promotion rule must_not"),
        (node(NODE2, gtid="0-1-90"), "lacks 0-1-100"),
    ],
)
def test_each_unfit_peer_is_passed_over_with_its_reason(
    peer: InstanceSnapshot, reason: str
) -> None:
    result = planned(plan(dead(), [replica()], [peer, node(NODE3)]))
    assert result.moves == ((key(REPLICA), key(NODE3)),)
    assert reason in result.rejected[key(NODE2)], result.rejected


def test_no_fit_peer_is_a_refusal_naming_each() -> None:
    result = refused(plan(dead(), [replica()], [dead(NODE2), node(NODE3, status="non-Primary")]))
    assert result.code is RefusalCode.NOTHING_RELOCATABLE
    assert result.reason.startswith(
        f"no other node of Galera cluster shop can take the async replicas of {NODE1}: "
    )
    assert set(result.rejected) == {key(NODE2), key(NODE3), key(REPLICA)}


def test_a_replica_with_what_no_node_has_is_refused_not_moved() -> None:
    # errant: no node of the cluster has 0-1-120 (moved, it would diverge or break)
    result = refused(plan(dead(), [replica(gtid="0-1-120")], [node(NODE2), node(NODE3)]))
    assert result.code is RefusalCode.NOTHING_RELOCATABLE
    assert "has errant GTIDs 0-1-120" in result.rejected[key(REPLICA)]


def test_what_the_dead_nodes_stale_snapshot_lacks_is_not_errant_when_a_peer_has_it() -> None:
    # the failed node was last seen at 0-1-100; the replica and NODE3 went on to 0-1-120
    result = planned(
        plan(dead(), [replica(gtid="0-1-120")], [node(NODE2), node(NODE3, gtid="0-1-120")])
    )
    assert result.moves == ((key(REPLICA), key(NODE3)),)
    assert "lacks 0-1-120" in result.rejected[key(NODE2)]


def test_a_replica_without_gtid_is_lost_not_guessed() -> None:
    result = refused(plan(dead(), [replica(using_gtid="No")], [node(NODE2)]))
    assert "does not replicate with GTID" in result.rejected[key(REPLICA)]


def test_the_automated_relocation_follows_the_master_cluster_filters() -> None:
    args = (dead(), [replica()], [node(NODE2)])
    result = refused(plan(*args, options=PlanOptions()))
    assert result.code is RefusalCode.FILTERED
    assert "RecoverMasterClusterFilters" in result.reason
    assert planned(plan(*args, options=PlanOptions(), forced=True)).forced


def test_rules_and_data_center_rank_the_peers() -> None:
    peers = [node(NODE2, dc="west"), node(NODE3, dc="east")]
    by_dc = planned(plan(dead(dc="east"), [replica()], peers))
    assert by_dc.moves == ((key(REPLICA), key(NODE3)),)
    by_rule = planned(
        plan(dead(dc="east"), [replica()], peers, candidates={key(NODE2): PromotionRule.PREFER})
    )
    assert by_rule.moves == ((key(REPLICA), key(NODE2)),)


def test_no_replicas_is_refused() -> None:
    assert refused(plan(dead(), [], [node(NODE2)])).code is RefusalCode.NO_REPLICAS


def test_peers_are_the_nodes_of_the_same_state_uuid() -> None:
    fleet = {
        snap.instance_key: snap
        for snap in (
            dead(),
            node(NODE2),
            node(NODE3, uuid="another"),
            replica(),
        )
    }
    assert [p.key for p in galera_peers(fleet[key(NODE1)], fleet)] == [NODE2]
    assert galera_peers(fleet[key(REPLICA)], fleet) == []
