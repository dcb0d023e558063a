"""Graceful takeover decisions: the successor's choice (the failover's rules, without the
completeness rule), the statements, the catch-up test and the credentials query's answer."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from orchestrator_recovery.operations.takeover_sql import (
    demoted_master_sql,
    not_applied,
    parse_credentials,
    replication_tls,
)
from orchestrator_recovery.sql import Dialect, Positions
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import PlanOptions
from orchestrator_shared.recovery.takeover import choose_takeover_successor
from orchestrator_shared.snapshot import Flavor, GaleraState, InstanceSnapshot
from tests.unit.test_recovery_plan_scenarios import server

pytestmark = pytest.mark.unit

MASTER = "db1:3301"
OPTIONS = PlanOptions()
MARIADB = Dialect(Flavor.MARIADB)


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def master(**fields: Any) -> InstanceSnapshot:
    return server(MASTER, {"gtid": "0-3301-100", "dc": "east", **fields})


def replica(name: str, **fields: Any) -> InstanceSnapshot:
    return server(name, {"master": MASTER, "gtid": "0-3301-100", "dc": "east", **fields})


def test_a_replica_behind_the_others_is_still_chosen_it_catches_up_first() -> None:
    replicas = [replica("db2:3302", gtid="0-3301-90"), replica("db3:3303", gtid="0-3301-100")]
    choice = choose_takeover_successor(
        master(), replicas, options=OPTIONS, candidates={}, requested=key("db2:3302")
    )
    assert choice.successor == key("db2:3302")
    assert choice.rejected[key("db3:3303")] == "eligible, but db2:3302 was requested"


def test_without_a_request_the_rules_rank_then_the_smallest_key() -> None:
    replicas = [replica("db3:3303"), replica("db2:3302"), replica("db4:3304")]
    choice = choose_takeover_successor(master(), replicas, options=OPTIONS, candidates={})
    assert choice.successor == key("db2:3302")
    preferred = {key("db4:3304"): PromotionRule.PREFER}
    choice = choose_takeover_successor(master(), replicas, options=OPTIONS, candidates=preferred)
    assert choice.successor == key("db4:3304")
    assert "promotion rule prefer" in choice.rejected[key("db2:3302")]


@pytest.mark.parametrize(
    ("requested", "fields", "reason"),
    [
        ("db9:3309", {}, "db9:3309 must be directly replicating from the master db1:3301"),
        ("db2:3302", {"promotion_rule": "must_not"}, "promotion rule must_not"),
        ("db2:3302", {"sql_delay": 3600}, "delayed replica"),
        ("db2:3302", {"region": "west"}, "PreventCrossRegionMasterFailover"),
        ("db2:3302", {"log_slave_updates": False}, "log_slave_updates=OFF"),
    ],
)
def test_a_requested_replica_breaking_a_rule_is_refused(
    requested: str, fields: dict[str, Any], reason: str
) -> None:
    options = dataclasses.replace(OPTIONS, prevent_cross_region=True)
    replicas = [
        replica("db2:3302", **{"region": "east", **fields}),
        replica("db3:3303", region="east"),
    ]
    choice = choose_takeover_successor(
        master(region="east"), replicas, options=options, candidates={}, requested=key(requested)
    )
    assert choice.successor is None
    assert reason in choice.reason


def test_a_replica_of_a_replica_is_not_a_candidate() -> None:
    below = server("db4:3304", {"master": "db2:3302", "gtid": "0-3301-100"})
    choice = choose_takeover_successor(
        master(), [replica("db2:3302"), below], options=OPTIONS, candidates={}
    )
    assert choice.successor == key("db2:3302")
    assert key("db4:3304") not in choice.rejected


def test_no_direct_replica_or_none_eligible_is_refused() -> None:
    assert (
        "no direct replica"
        in choose_takeover_successor(master(), [], options=OPTIONS, candidates={}).reason
    )
    choice = choose_takeover_successor(
        master(), [replica("db2:3302", sql_delay=60)], options=OPTIONS, candidates={}
    )
    assert choice.successor is None and "db2:3302" in choice.reason


def test_the_demoted_master_uses_current_pos_on_mariadb_and_auto_position_on_mysql() -> None:
    target = key("db2:3302")
    assert demoted_master_sql(MARIADB, target) == (
        "CHANGE MASTER TO master_host='db2', master_port=3302, master_use_gtid=current_pos"
    )
    assert demoted_master_sql(MARIADB, target, user="repl", password="it's") == (
        "CHANGE MASTER TO master_host='db2', master_port=3302, master_user='repl', "
        "master_password='it\\'s', master_use_gtid=current_pos"
    )
    assert demoted_master_sql(Dialect(Flavor.MYSQL), target).endswith("SOURCE_AUTO_POSITION=1")


@pytest.mark.parametrize(
    ("old", "successor", "applied"),
    [
        ("0-1-100", "0-1-100", True),
        ("0-1-100", "0-1-101", True),  # (it cannot be ahead, but that is not "behind")
        ("0-1-100", "0-1-99", False),
        ("0-1-100,1-1-5", "0-1-100", False),  # a domain not applied at all
        ("0-1-100,1-1-5", "1-1-5,0-1-100", True),
    ],
)
def test_the_successor_has_applied_all_the_old_master_logged(
    old: str, successor: str, applied: bool
) -> None:
    why = not_applied(MARIADB, Positions(binlog=old), Positions(binlog=successor))
    assert (why is None) is applied, why


def test_credentials_are_the_first_two_columns_of_the_first_row() -> None:
    assert parse_credentials([{"u": "repl", "p": b"secret"}, {"u": "x", "p": "y"}]) == (
        "repl",
        "secret",
    )
    assert parse_credentials([]) is None
    assert parse_credentials([{"u": "", "p": "x"}]) is None
    assert parse_credentials([{"u": "only"}]) is None


def test_the_demoted_master_replicates_with_the_tls_options_of_the_successor() -> None:
    master, target = key("db1:3301"), key("db2:3302")
    rows = [
        {"Master_Host": "db9", "Master_Port": 3309, "Master_SSL_Allowed": "No"},
        {
            "Master_Host": "db1",
            "Master_Port": 3301,
            "Master_SSL_Allowed": "Yes",
            "Master_SSL_CA_File": "/etc/mysql/ca.pem",
            "Master_SSL_CA_Path": "",
            "Master_SSL_Cert": b"/etc/mysql/client.pem",
            "Master_SSL_Key": "/etc/mysql/client.key",
            "Master_SSL_Verify_Server_Cert": "Yes",
        },
    ]
    tls = replication_tls(MARIADB, rows, master)
    assert tls == (
        "master_ssl=1",
        "master_ssl_ca='/etc/mysql/ca.pem'",
        "master_ssl_cert='/etc/mysql/client.pem'",
        "master_ssl_key='/etc/mysql/client.key'",
        "master_ssl_verify_server_cert=1",
    )
    assert demoted_master_sql(MARIADB, target, tls=tls) == (
        "CHANGE MASTER TO master_host='db2', master_port=3302, master_ssl=1, "
        "master_ssl_ca='/etc/mysql/ca.pem', master_ssl_cert='/etc/mysql/client.pem', "
        "master_ssl_key='/etc/mysql/client.key', master_ssl_verify_server_cert=1, "
        "master_use_gtid=current_pos"
    )
    # MySQL spells them SOURCE_*; a link without TLS, or from another master, gives nothing
    mysql_rows = [
        {
            "Source_Host": "db1",
            "Source_Port": "3301",
            "Source_SSL_Allowed": "Yes",
            "Source_SSL_CA_File": "/ca.pem",
            "Source_SSL_Verify_Server_Cert": "No",
        }
    ]
    mysql = replication_tls(Dialect(Flavor.MYSQL), mysql_rows, master)
    assert mysql == ("SOURCE_SSL=1", "SOURCE_SSL_CA='/ca.pem'")
    assert demoted_master_sql(Dialect(Flavor.MYSQL), target, tls=mysql).endswith(
        "SOURCE_SSL=1, SOURCE_SSL_CA='/ca.pem', SOURCE_AUTO_POSITION=1"
    )
    assert replication_tls(MARIADB, rows[:1], master) == ()
    assert replication_tls(MARIADB, [{**rows[1], "Master_SSL_Allowed": "No"}], master) == ()


def test_a_galera_node_is_never_taken_over_by_its_async_replica() -> None:
    state = GaleraState(cluster_name="shop", cluster_size=3, cluster_status="Primary")
    galera_master = master().model_copy(update={"galera": state})
    for requested in (key("db2:3302"), None):
        choice = choose_takeover_successor(
            galera_master,
            [replica("db2:3302")],
            options=OPTIONS,
            candidates={},
            requested=requested,
        )
        assert choice.successor is None
        assert choice.reason.startswith(f"{MASTER} is a node of Galera cluster shop: ")
        assert "never promoted" in choice.reason
