"""Recovery planning of a dead master: each rule, each reason, the plan's values."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from orchestrator_shared.analysis import ErrantGtids
from orchestrator_shared.gtid import GtidSet, MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    GtidKind,
    MasterPlan,
    PlanOptions,
    Refusal,
    RefusalCode,
    cluster_matches_filters,
    plan_master_recovery,
)
from orchestrator_shared.recovery.positions import MariaPosition, MySQLPosition
from orchestrator_shared.snapshot import Flavor, GaleraState, InstanceSnapshot
from tests.unit.test_recovery_plan_scenarios import server

pytestmark = pytest.mark.unit

FAILED = "db1:3301"
ALL = PlanOptions(recover_master_cluster_filters=("*",))
UUID1 = "00000000-0000-0000-0000-000000003301"


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def failed(**fields: Any) -> InstanceSnapshot:
    return server(FAILED, {"gtid": "0-3301-100", "dc": "east", **fields})


def replica(name: str, **fields: Any) -> InstanceSnapshot:
    return server(name, {"master": FAILED, "gtid": "0-3301-100", **fields})


def plan(
    replicas: list[InstanceSnapshot],
    *,
    master: InstanceSnapshot | None = None,
    options: PlanOptions = ALL,
    **kwargs: Any,
) -> MasterPlan | Refusal:
    return plan_master_recovery(
        master or failed(), replicas, cluster=FAILED, options=options, **kwargs
    )


def promoted(result: MasterPlan | Refusal) -> MasterPlan:
    assert isinstance(result, MasterPlan), result.describe()
    return result


def refused(result: MasterPlan | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result.describe()
    return result


# --- cluster filters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "matches"),
    [
        ((), False),
        (("",), False),
        (("*",), True),
        (("db1:3301",), True),
        (("shop",), True),
        (("alias=shop",), True),
        (("alias=sho",), False),
        (("alias~=^sh",), True),
        (("alias~=^x",), False),
        (("^db1",), True),
        (("3301$",), True),
        (("^db2",), False),
        (("([",), False),
        (("^db2", "alias=shop"), True),
    ],
)
def test_cluster_filters_follow_orchestrator(filters: tuple[str, ...], matches: bool) -> None:
    assert cluster_matches_filters(filters, cluster="db1:3301", alias="shop") is matches


def test_alias_filters_never_match_a_cluster_without_alias() -> None:
    assert not cluster_matches_filters(("alias=",), cluster="db1:3301", alias="")


def test_automated_recovery_needs_the_cluster_filters_forced_does_not() -> None:
    replicas = [replica("db2:3302")]
    result = refused(plan(replicas, options=PlanOptions()))
    assert result.code is RefusalCode.FILTERED
    assert "RecoverMasterClusterFilters" in result.reason
    forced = promoted(plan(replicas, options=PlanOptions(), forced=True))
    assert forced.successor == key("db2:3302")
    assert forced.forced


def test_alias_filter_selects_by_alias() -> None:
    options = PlanOptions(recover_master_cluster_filters=("alias~=^shop",))
    result = plan_master_recovery(
        failed(), [replica("db2:3302")], cluster=FAILED, cluster_alias="shop-eu", options=options
    )
    assert isinstance(result, MasterPlan)


def test_lag_limit_zero_or_none_is_off() -> None:
    assert PlanOptions().lag_limit_seconds is None
    assert PlanOptions(fail_on_lag_seconds=0).lag_limit_seconds is None
    assert PlanOptions(fail_on_lag_seconds=300).lag_limit_seconds == 300


# --- the gate and the inputs ---------------------------------------------------------------


def test_no_replicas_is_refused() -> None:
    result = refused(plan([]))
    assert result.code is RefusalCode.NO_REPLICAS
    assert "has no replicas" in result.reason


def test_the_failed_master_and_duplicates_in_the_replica_list_are_ignored() -> None:
    result = promoted(plan([failed(), replica("db2:3302"), replica("db2:3302", gtid="0-3301-1")]))
    assert result.successor == key("db2:3302")
    assert result.repoint == ()
    assert dict(result.rejected) == {}


def test_every_unreachable_is_refused() -> None:
    result = refused(plan([replica("db2:3302", ok=False), replica("db3:3303", ok=False)]))
    assert result.code is RefusalCode.NO_CANDIDATE
    assert "no replica of db1:3301 is reachable" in result.reason
    assert set(result.rejected) == {key("db2:3302"), key("db3:3303")}


def test_a_replica_of_another_master_is_neither_promoted_nor_moved() -> None:
    result = promoted(plan([replica("db2:3302", master="db9:3309"), replica("db3:3303")]))
    assert result.successor == key("db3:3303")
    assert "does not replicate from db1:3301" in result.rejected[key("db2:3302")]
    assert key("db2:3302") in result.lost


# --- each rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ok": False}, "unreachable (Can't connect to MySQL server)"),
        ({"sql_delay": 60}, "is a delayed replica (SQL_Delay=60s)"),
        ({"gtid": "0-3301-100,7-3302-3", "gtid_slave_pos": "0-3301-100"}, "errant GTIDs 7-3302-3"),
        ({"log_bin": False}, "has no binary log (log_bin=OFF)"),
        ({"log_slave_updates": False}, "log_slave_updates=OFF"),
        ({"promotion_rule": "must_not"}, "promotion rule must_not (detected)"),
        ({"version": "11.4.2-MariaDB"}, "runs 11.4, newer than 10.11 on db3:3303"),
        ({"lag": 300}, "lags 300s, at or beyond FailMasterPromotionOnLagMinutes (300s)"),
        ({"using_gtid": "No"}, "does not replicate with GTID"),
        ({"gtid": ""}, "its GTID position is unknown"),
        ({"dc": "west"}, "PreventCrossDataCenterMasterFailover"),
        ({"region": "eu"}, "PreventCrossRegionMasterFailover"),
        ({"version": "8.0.36", "gtid_executed": f"{UUID1}:1-5"}, "runs mysql GTID"),
    ],
)
def test_each_rule_rejects_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    options = dataclasses.replace(
        ALL, fail_on_lag_seconds=300, prevent_cross_data_center=True, prevent_cross_region=True
    )
    master = failed(region="us")
    others = [replica("db3:3303", dc="east", region="us", gtid="0-3301-90")]
    result = plan(
        [replica("db2:3302", **{"dc": "east", "region": "us", **fields}), *others],
        master=master,
        options=options,
    )
    rejected = result.rejected[key("db2:3302")]
    assert reason in rejected
    if isinstance(result, MasterPlan):
        assert result.successor == key("db3:3303")


def test_all_reasons_of_a_replica_are_kept() -> None:
    result = plan(
        [
            replica("db2:3302", sql_delay=10, log_bin=False, promotion_rule="must_not"),
            replica("db3:3303"),
        ]
    )
    reason = result.rejected[key("db2:3302")]
    assert "delayed" in reason
    assert "log_bin=OFF" in reason
    assert "must_not" in reason


def test_registered_rule_overrides_the_detected_one() -> None:
    replicas = [replica("db2:3302", promotion_rule="must_not"), replica("db3:3303")]
    result = promoted(plan(replicas, candidates={key("db2:3302"): PromotionRule.MUST}))
    assert result.successor == key("db2:3302")
    assert "promotion rule must over neutral" in result.rejected[key("db3:3303")]


def test_unknown_detected_rule_counts_as_neutral() -> None:
    replicas = [replica("db2:3302", promotion_rule="whatever"), replica("db3:3303")]
    assert promoted(plan(replicas)).successor == key("db2:3302")


def test_lag_unknown_is_not_held_against_a_replica() -> None:
    options = dataclasses.replace(ALL, fail_on_lag_seconds=60)
    assert promoted(plan([replica("db2:3302")], options=options)).successor == key("db2:3302")


def test_lag_just_under_the_limit_is_accepted() -> None:
    options = dataclasses.replace(ALL, fail_on_lag_seconds=60)
    result = promoted(plan([replica("db2:3302", lag=59)], options=options))
    assert result.successor == key("db2:3302")


def test_version_rule_ignores_replicas_that_cannot_follow() -> None:
    replicas = [
        replica("db2:3302", version="11.4.2-MariaDB"),
        replica("db3:3303", version="10.6.1-MariaDB", using_gtid="No"),
    ]
    result = promoted(plan(replicas))
    assert result.successor == key("db2:3302")
    assert "does not replicate with GTID" in result.lost[key("db3:3303")]


def test_unknown_version_does_not_block() -> None:
    result = promoted(plan([replica("db2:3302", version="MariaDB"), replica("db3:3303")]))
    assert result.successor == key("db2:3302")


def test_cross_data_center_with_unknown_data_centers_compares_as_text() -> None:
    options = dataclasses.replace(ALL, prevent_cross_data_center=True)
    result = promoted(plan([replica("db2:3302")], master=failed(dc=""), options=options))
    assert result.successor == key("db2:3302")


# --- no data loss ---------------------------------------------------------------------------


def test_received_transactions_count_and_the_successor_must_catch_up() -> None:
    replicas = [
        replica("db2:3302", gtid="0-3301-103"),
        replica(
            "db3:3303",
            gtid_io_pos="0-3301-106",
            read="mariadb-bin.000007:9000",
            exec="mariadb-bin.000007:5000",
        ),
    ]
    result = promoted(plan(replicas))
    assert result.successor == key("db3:3303")
    assert result.successor_must_catch_up
    assert result.catch_up_gtid == "0-3301-106"
    assert result.catch_up_coordinates == "mariadb-bin.000007:9000"
    assert result.successor_gtid_position == "0-3301-106"


def test_exec_behind_read_coordinates_means_catch_up_even_without_gtid_difference() -> None:
    replicas = [replica("db2:3302", read="mariadb-bin.000007:900", exec="mariadb-bin.000007:100")]
    result = promoted(plan(replicas))
    assert result.successor_must_catch_up
    assert result.catch_up_gtid == "0-3301-100"


def test_caught_up_successor_has_nothing_to_wait_for() -> None:
    result = promoted(plan([replica("db2:3302", read="mariadb-bin.000007:900")]))
    assert not result.successor_must_catch_up
    assert result.catch_up_gtid == ""


def test_a_mariadb_errant_replica_without_slave_pos_is_judged_conservatively() -> None:
    # Without gtid_slave_pos its legitimate part in the errant domain is only bounded
    # (seq_no - 1), which the other replica does not reach: refuse rather than lose data.
    replicas = [replica("db2:3302"), replica("db3:3303", gtid="0-3301-100,1-3303-7")]
    result = refused(plan(replicas))
    assert result.code is RefusalCode.DATA_LOSS
    assert "lacks 1-?-6 that db3:3303 has" in result.rejected[key("db2:3302")]


def test_errant_replica_sharing_the_successors_data_is_lost_not_blocking() -> None:
    replicas = [
        replica("db2:3302"),
        replica("db3:3303", gtid="0-3301-100,1-3303-7", gtid_slave_pos="0-3301-100"),
    ]
    result = promoted(plan(replicas))
    assert result.successor == key("db2:3302")
    assert "errant GTIDs 1-3303-7" in result.lost[key("db3:3303")]


def test_transactions_of_the_failed_master_after_its_last_snapshot_are_not_errant() -> None:
    # The master's snapshot is older than the replicas': its own later GTIDs are legitimate.
    result = promoted(plan([replica("db2:3302", gtid="0-3301-150"), replica("db3:3303")]))
    assert result.successor == key("db2:3302")
    assert result.repoint == (key("db3:3303"),)


def test_same_seq_no_from_a_server_outside_the_chain_is_errant() -> None:
    replicas = [
        replica("db2:3302", gtid="0-3301-100"),
        replica("db3:3303", gtid="0-3309-100", gtid_slave_pos="0-3309-100"),
    ]
    master = failed(server_id=3301)
    result = plan(replicas, master=master)
    # db3 holds 0-3309-100, which its master never wrote: errant, and not the cluster's data.
    assert "errant GTIDs 0-3309-100" in result.rejected[key("db3:3303")]


def test_without_the_masters_gtid_state_errant_is_judged_against_the_other_replicas() -> None:
    replicas = [
        replica("db2:3302", gtid="0-3301-104"),
        replica("db3:3303", gtid="0-3301-100,1-3303-7", gtid_slave_pos="0-3301-100"),
        replica("db4:3304", gtid="0-3301-100"),
    ]
    result = promoted(plan(replicas, master=failed(gtid="")))
    # db2 alone has 0-3301-104, but the master (server 3301) wrote it: not errant.
    assert result.successor == key("db2:3302")
    assert "errant GTIDs 1-3303-7" in result.rejected[key("db3:3303")]


def test_without_the_masters_identity_nothing_is_judged_errant() -> None:
    replicas = [replica("db2:3302", gtid="0-3301-104"), replica("db3:3303")]
    result = promoted(plan(replicas, master=failed(gtid="", server_id=0)))
    assert result.successor == key("db2:3302")
    assert "errant" not in result.rejected[key("db3:3303")]


def test_an_ineligible_replica_with_unknown_position_is_compared_by_coordinates() -> None:
    replicas = [
        replica("db2:3302", read="mariadb-bin.000007:500"),
        replica("db3:3303", gtid="", using_gtid="No", read="mariadb-bin.000007:900"),
    ]
    result = refused(plan(replicas))
    assert result.code is RefusalCode.DATA_LOSS
    assert "mariadb-bin.000007:500 to mariadb-bin.000007:900" in result.reason


def test_coordinates_behind_are_fine() -> None:
    replicas = [
        replica("db2:3302", read="mariadb-bin.000007:900"),
        replica("db3:3303", gtid="", using_gtid="No", read="mariadb-bin.000007:500"),
    ]
    result = promoted(plan(replicas))
    assert result.successor == key("db2:3302")
    assert key("db3:3303") in result.lost


def test_nothing_to_compare_is_refused() -> None:
    replicas = [replica("db2:3302"), replica("db3:3303", gtid="", using_gtid="No")]
    result = refused(plan(replicas))
    assert result.code is RefusalCode.DATA_LOSS
    assert "cannot be compared with db3:3303" in result.reason


# --- requested successor ---------------------------------------------------------------------


def test_requested_that_is_not_a_replica_is_refused() -> None:
    result = refused(plan([replica("db2:3302")], requested=key("db7:3307")))
    assert result.code is RefusalCode.REQUESTED_NOT_REPLICA
    assert "db7:3307 is not a direct replica of db1:3301" in result.reason


def test_requested_delayed_is_refused_with_why() -> None:
    result = refused(
        plan([replica("db2:3302", sql_delay=30), replica("db3:3303")], requested=key("db2:3302"))
    )
    assert result.code is RefusalCode.REQUESTED_REJECTED
    assert "SQL_Delay=30s" in result.reason


def test_requested_equal_replica_wins_over_better_rule() -> None:
    replicas = [replica("db2:3302", promotion_rule="must"), replica("db3:3303")]
    result = promoted(plan(replicas, requested=key("db3:3303")))
    assert result.successor == key("db3:3303")
    assert result.requested == key("db3:3303")
    assert result.rejected[key("db2:3302")] == "eligible, but db3:3303 was requested"


# --- the plan as a value ---------------------------------------------------------------------


def test_semi_sync_master_follows_the_failed_master() -> None:
    assert promoted(
        plan([replica("db2:3302")], master=failed(semi_sync_master=True))
    ).semi_sync_master
    assert not promoted(plan([replica("db2:3302")])).semi_sync_master


def test_mysql_plan_carries_its_kind_and_flavor() -> None:
    mysql = {"version": "8.0.36"}
    master = server(FAILED, {**mysql, "gtid_executed": f"{UUID1}:1-10"})
    replicas = [
        server("db2:3302", {**mysql, "master": FAILED, "gtid_executed": f"{UUID1}:1-10"}),
        server("db3:3303", {**mysql, "master": FAILED, "gtid_executed": f"{UUID1}:1-9"}),
    ]
    result = promoted(plan(replicas, master=master))
    assert result.gtid_kind is GtidKind.MYSQL
    assert result.flavor is Flavor.MYSQL
    assert result.successor_gtid_position == f"{UUID1}:1-10"
    assert f"lacks {UUID1}:10 that db2:3302 has" in result.rejected[key("db3:3303")]


def test_plan_is_frozen_json_able_and_described() -> None:
    result = promoted(
        plan([replica("db2:3302"), replica("db3:3303", using_gtid="No")], forced=True)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.successor = key("db3:3303")  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.lost[key("db9:3309")] = "x"  # type: ignore[index]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "master"
    assert data["successor"] == "db2:3302"
    assert data["lost"] == {"db3:3303": result.lost[key("db3:3303")]}
    assert data["gtid_kind"] == "mariadb"
    assert data["forced"] is True
    assert result.describe() == (
        "cluster db1:3301: promote db2:3302 in place of dead master db1:3301; repoint none; "
        "lost db3:3303"
    )


def test_refusal_is_json_able_and_described() -> None:
    result = refused(plan([replica("db2:3302", sql_delay=5)]))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "refusal"
    assert data["code"] == "no-candidate"
    assert data["rejected"] == {"db2:3302": "is a delayed replica (SQL_Delay=5s)"}
    assert result.describe().startswith("cluster db1:3301: no recovery of db1:3301: ")
    assert "db2:3302 is a delayed replica" in result.reason


# --- positions -------------------------------------------------------------------------------


def maria(text: str) -> MariaPosition:
    return MariaPosition.of(MariaGtidPosition.parse(text))


@pytest.mark.parametrize(
    ("holder", "other", "contains", "lacks"),
    [
        ("0-1-100", "0-1-100", True, ""),
        ("0-1-101", "0-1-100", True, ""),
        ("0-1-100", "0-1-101", False, "0-1-101"),
        ("0-1-100", "0-2-100", False, "0-2-100"),
        ("0-1-100,1-1-5", "1-1-5", True, ""),
        ("0-1-100", "0-1-100,1-1-5", False, "1-1-5"),
        ("0-1-101,1-1-4", "0-1-100,1-1-5", False, "1-1-5"),
        ("", "", True, ""),
    ],
)
def test_maria_position_containment(holder: str, other: str, contains: bool, lacks: str) -> None:
    assert maria(holder).contains(maria(other)) is contains
    assert maria(holder).lacks(maria(other)) == lacks


def test_maria_bound_without_writer_matches_any_writer() -> None:
    bound = maria("0-1-101,5-7-3").without_errant(ErrantGtids("5-7-3", "test"))
    assert str(bound) == "0-1-101,5-?-2"
    assert maria("0-1-101,5-1-2").contains(bound) is True
    assert maria("0-1-101,5-1-1").contains(bound) is False
    replicated = maria("0-1-101,5-1-1")
    exact = maria("0-1-101,5-7-3").without_errant(ErrantGtids("5-7-3", "test"), replicated)
    assert exact == replicated


def test_positions_of_different_kinds_are_not_comparable() -> None:
    mysql = MySQLPosition(GtidSet.parse(f"{UUID1}:1-3"))
    assert mysql.contains(maria("0-1-1")) is None
    assert maria("0-1-1").contains(mysql) is None
    assert mysql.lacks(maria("0-1-1")) == ""
    errant = ErrantGtids(f"{UUID1}:3", "test")
    assert str(mysql.without_errant(errant)) == f"{UUID1}:1-2"


# --- Galera ----------------------------------------------------------------------------------


def galera_node(cluster_name: str = "shop") -> InstanceSnapshot:
    """The failed master as a Synced node of a 3-node Galera cluster."""
    state = GaleraState(
        cluster_name=cluster_name,
        cluster_state_uuid="6f5e4d3c-0000-0000-0000-000000000001",
        cluster_size=3,
        cluster_status="Primary",
        local_state="Synced",
        ready=True,
        connected=True,
    )
    return failed().model_copy(update={"galera": state})


@pytest.mark.parametrize("forced", [False, True])
def test_a_galera_nodes_async_replica_is_never_promoted_even_forced(forced: bool) -> None:
    replicas = [replica("db2:3302"), replica("db3:3303")]
    result = refused(plan(replicas, master=galera_node(), forced=forced))
    assert result.code is RefusalCode.GALERA_NODE
    assert result.reason.startswith(f"{FAILED} is a node of Galera cluster shop: ")
    assert "never promoted" in result.reason and "split brain" in result.reason
    assert result.forced is forced
    assert dict(result.rejected) == {}


def test_a_galera_node_is_refused_before_the_cluster_filters_and_with_a_requested_successor() -> (
    None
):
    nameless = galera_node(cluster_name="")
    result = refused(plan([replica("db2:3302")], master=nameless, options=PlanOptions()))
    assert result.code is RefusalCode.GALERA_NODE
    assert "is a node of a Galera cluster:" in result.reason
    requested = refused(plan([replica("db2:3302")], master=nameless, requested=key("db2:3302")))
    assert requested.code is RefusalCode.GALERA_NODE


def test_a_master_without_galera_state_is_planned_as_before() -> None:
    assert failed().galera is None
    assert promoted(plan([replica("db2:3302")])).successor == key("db2:3302")


# --- a hung failed master ------------------------------------------------------------------


def test_a_failed_master_whose_probe_timed_out_is_planned_as_hung() -> None:
    """A hung master (its probe timed out) gets the executor's short fence attempt; a dead
    one (it refused) and one that answers do not."""
    dead = failed(ok=False)
    hung = dead.model_copy(update={"probe": dead.probe.model_copy(update={"timed_out": True})})
    replicas = [replica("db2:3302"), replica("db3:3303")]
    assert promoted(plan(replicas, master=hung)).failed_hung
    assert not promoted(plan(replicas, master=dead)).failed_hung
    assert not promoted(plan(replicas)).failed_hung
