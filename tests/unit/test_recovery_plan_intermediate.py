"""Recovery planning of a dead intermediate master: where each replica goes, and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
    plan_intermediate_master_recovery,
)
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_recovery_plan_scenarios import server

pytestmark = pytest.mark.unit

MASTER = "db1:3301"
FAILED = "db2:3302"
ALL = PlanOptions(recover_intermediate_master_cluster_filters=("*",))


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def master(**fields: Any) -> InstanceSnapshot:
    return server(MASTER, {"gtid": "0-3301-120", "dc": "east", **fields})


def failed() -> InstanceSnapshot:
    return server(FAILED, {"master": MASTER, "gtid": "0-3301-100", "dc": "west", "ok": False})


def replica(name: str, **fields: Any) -> InstanceSnapshot:
    return server(name, {"master": FAILED, "gtid": "0-3301-100", **fields})


def sibling(name: str, **fields: Any) -> InstanceSnapshot:
    return server(name, {"master": MASTER, "gtid": "0-3301-118", **fields})


def relocate(
    replicas: list[InstanceSnapshot],
    siblings: list[InstanceSnapshot],
    *,
    top: InstanceSnapshot | None = None,
    options: PlanOptions = ALL,
    **kwargs: Any,
) -> RelocationPlan | Refusal:
    return plan_intermediate_master_recovery(
        failed(),
        replicas,
        siblings=siblings,
        master=master() if top is None else top,
        cluster=MASTER,
        options=options,
        **kwargs,
    )


def moved(result: RelocationPlan | Refusal) -> dict[str, str]:
    assert isinstance(result, RelocationPlan), result.describe()
    return {str(replica): str(target) for replica, target in result.moves}


def test_filters_gate_automated_recovery_only() -> None:
    replicas = [replica("db5:3305")]
    result = relocate(replicas, [], options=PlanOptions())
    assert isinstance(result, Refusal)
    assert result.code is RefusalCode.FILTERED
    assert moved(relocate(replicas, [], options=PlanOptions(), forced=True)) == {"db5:3305": MASTER}


def test_no_replicas_is_refused() -> None:
    result = relocate([], [sibling("db3:3303")])
    assert isinstance(result, Refusal)
    assert result.code is RefusalCode.NO_REPLICAS


def test_sibling_in_the_dead_intermediate_masters_data_center_first() -> None:
    siblings = [sibling("db3:3303", dc="east"), sibling("db4:3304", dc="west")]
    result = relocate([replica("db5:3305")], siblings)
    assert moved(result) == {"db5:3305": "db4:3304"}
    assert isinstance(result, RelocationPlan)
    assert result.targets == (key("db4:3304"),)
    assert result.rejected[key("db3:3303")] == "fit, but db4:3304 ranks first"


def test_promotion_rule_before_data_center_and_must_not_never() -> None:
    siblings = [
        sibling("db3:3303", dc="east"),
        sibling("db4:3304", dc="west"),
        sibling("db6:3306", dc="west"),
    ]
    candidates = {key("db3:3303"): PromotionRule.PREFER, key("db6:3306"): PromotionRule.MUST_NOT}
    result = relocate([replica("db5:3305")], siblings, candidates=candidates)
    assert moved(result) == {"db5:3305": "db3:3303"}
    assert "must_not (registered)" in result.rejected[key("db6:3306")]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ok": False}, "unreachable"),
        ({"io": "Connecting"}, "is not replicating (IO thread Connecting, SQL thread Yes)"),
        ({"master": "db9:3309"}, "does not replicate from the master db1:3301"),
        ({"log_bin": False}, "log_bin=OFF"),
        ({"log_slave_updates": False}, "log_slave_updates=OFF"),
        ({"sql_delay": 3600}, "SQL_Delay=3600s"),
        ({"promotion_rule": "must_not"}, "must_not (detected)"),
        ({"gtid": "0-3301-118,4-3303-2"}, "errant GTIDs 4-3303-2"),
        ({"gtid": ""}, "its GTID position is unknown"),
        ({"gtid": "0-3301-99"}, "cannot take db5:3305: lacks 0-3301-100 that the replica has"),
        ({"version": "11.4.1-MariaDB"}, "cannot take db5:3305: runs 11.4, newer than 10.11"),
    ],
)
def test_unfit_sibling_is_passed_over_for_the_master(fields: dict[str, Any], reason: str) -> None:
    result = relocate([replica("db5:3305")], [sibling("db3:3303", **fields)])
    assert moved(result) == {"db5:3305": MASTER}
    assert reason in result.rejected[key("db3:3303")]


def test_unreachable_master_is_not_a_target() -> None:
    result = relocate([replica("db5:3305")], [], top=master(ok=False))
    assert isinstance(result, Refusal)
    assert result.code is RefusalCode.NOTHING_RELOCATABLE
    assert "unreachable" in result.rejected[key(MASTER)]
    assert "no sibling or master can take it (none is fit)" in result.rejected[key("db5:3305")]


def test_without_the_masters_snapshot_siblings_still_serve() -> None:
    result = plan_intermediate_master_recovery(
        failed(),
        [replica("db5:3305")],
        siblings=[sibling("db3:3303")],
        master=None,
        cluster=MASTER,
        options=ALL,
    )
    assert moved(result) == {"db5:3305": "db3:3303"}


def test_a_replica_ahead_of_the_sibling_goes_to_the_master_the_other_to_the_sibling() -> None:
    replicas = [replica("db5:3305", gtid="0-3301-119"), replica("db6:3306")]
    result = relocate(replicas, [sibling("db3:3303")])
    assert moved(result) == {"db5:3305": MASTER, "db6:3306": "db3:3303"}


def test_a_replica_nobody_can_take_is_lost_with_each_targets_reason() -> None:
    replicas = [replica("db5:3305", gtid="0-3301-130"), replica("db6:3306")]
    result = relocate(replicas, [sibling("db3:3303")])
    assert moved(result) == {"db6:3306": "db3:3303"}
    assert isinstance(result, RelocationPlan)
    reason = result.lost[key("db5:3305")]
    assert "db3:3303 lacks 0-3301-130 that the replica has" in reason
    assert f"{MASTER} lacks 0-3301-130 that the replica has" in reason


def test_received_but_unapplied_transactions_count() -> None:
    replicas = [replica("db5:3305", gtid_io_pos="0-3301-119")]
    assert moved(relocate(replicas, [sibling("db3:3303")])) == {"db5:3305": MASTER}


def test_mysql_relocation_by_gtid_sets() -> None:
    uuid = "00000000-0000-0000-0000-000000003301"
    mysql = {"version": "8.0.36"}
    top = server(MASTER, {**mysql, "gtid_executed": f"{uuid}:1-50"})
    dead = server(FAILED, {**mysql, "master": MASTER, "gtid_executed": f"{uuid}:1-40"})
    result = plan_intermediate_master_recovery(
        dead,
        [server("db5:3305", {**mysql, "master": FAILED, "gtid_executed": f"{uuid}:1-40"})],
        siblings=[server("db3:3303", {**mysql, "master": MASTER, "gtid_executed": f"{uuid}:1-45"})],
        master=top,
        cluster=MASTER,
        options=ALL,
    )
    assert moved(result) == {"db5:3305": "db3:3303"}
    assert result.to_dict()["gtid_kind"] == "mysql"


def test_plan_value() -> None:
    result = relocate([replica("db5:3305"), replica("db6:3306", ok=False)], [sibling("db3:3303")])
    assert isinstance(result, RelocationPlan)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "intermediate-master"
    assert data["moves"] == [{"replica": "db5:3305", "master": "db3:3303"}]
    assert list(data["lost"]) == ["db6:3306"]
    assert result.describe() == (
        "cluster db1:3301: relocate replicas of dead intermediate master db2:3302: "
        "db5:3305 under db3:3303; lost db6:3306"
    )


def test_nested_master_needs_log_slave_updates_and_upstream_gtids_are_not_errant() -> None:
    top = server("db0:3300", {"gtid": "0-3300-200"})
    parent = master(master="db0:3300", gtid="0-3300-150", log_slave_updates=False)
    # db3 has GTIDs written by db0 after db1's snapshot: legitimate, given the upstream.
    siblings = [sibling("db3:3303", gtid="0-3300-160")]
    replicas = [replica("db5:3305", gtid="0-3300-140")]
    result = relocate(replicas, siblings, top=parent, upstream=[top])
    assert moved(result) == {"db5:3305": "db3:3303"}
    assert "log_slave_updates=OFF" in result.rejected[key(MASTER)]
    without = relocate(replicas, siblings, top=parent)
    assert "errant GTIDs 0-3300-160" in without.rejected[key("db3:3303")]
