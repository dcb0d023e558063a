"""Row parsers of the probe, on rows recorded from MariaDB 10.11 and MySQL 8.0.

The MariaDB files were captured with PyMySQL from sandbox ``mariadbd`` 10.11 instances (the
same types aiomysql returns); the MySQL file reproduces MySQL 8.0.36's column names and types.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator_adapters import probe_sql
from orchestrator_adapters.probe_sql import Dialect
from orchestrator_shared.analysis import analyze
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot, ProbeFacts, ThreadState
from orchestrator_shared.topology import build_topology

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.unit

ROWS = Path(__file__).parent / "rows"


def rows(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROWS / f"{name}.json").read_text())
    return data


def test_statements_by_flavor_and_version() -> None:
    mariadb = Dialect(Flavor.MARIADB, (10, 11, 19))
    assert mariadb.statements()[2:5] == (
        "SHOW MASTER STATUS",
        "SHOW ALL SLAVES STATUS",
        "SHOW SLAVE HOSTS",
    )
    assert Dialect(Flavor.MYSQL, (8, 0, 36)).statements()[2:5] == (
        "SHOW MASTER STATUS",
        "SHOW REPLICA STATUS",
        "SHOW REPLICAS",
    )
    assert Dialect(Flavor.MYSQL, (8, 4, 0)).master_status_sql == "SHOW BINARY LOG STATUS"
    assert Dialect(Flavor.MYSQL, (5, 7, 44)).replica_status_sql == "SHOW SLAVE STATUS"
    assert probe_sql.VARIABLES_SQL.startswith("SHOW GLOBAL VARIABLES WHERE Variable_name IN (")


@pytest.mark.parametrize(
    ("version", "comment", "flavor", "parsed"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", "Debian 12", Flavor.MARIADB, (10, 11, 19)),
        ("8.0.36", "MySQL Community Server - GPL", Flavor.MYSQL, (8, 0, 36)),
        ("8.0.35-27", "Percona Server (GPL), Release 27", Flavor.PERCONA, (8, 0, 35)),
        ("5.5.5-10.6.12-MariaDB", "mariadb.org binary distribution", Flavor.MARIADB, (5, 5, 5)),
        ("", "", Flavor.UNKNOWN, (0, 0, 0)),
    ],
)
def test_flavor_and_version(
    version: str, comment: str, flavor: Flavor, parsed: tuple[int, int, int]
) -> None:
    variables = {"version": version, "version_comment": comment}
    assert probe_sql.detect_flavor(variables) is flavor
    assert probe_sql.parse_version(version) == parsed


def test_mariadb_master_rows() -> None:
    recorded = rows("mariadb-10.11-master")
    assert recorded["replica_status"] == []
    coordinates = probe_sql.parse_master_status(recorded["master_status"])
    assert coordinates is not None
    assert coordinates.file == "mariadb-bin.000001"
    assert coordinates.position > 4
    keys = probe_sql.parse_replica_hosts(
        recorded["replica_hosts"],
        dump_thread_hosts=["127.0.0.1", "127.0.0.1"],
        own_port=63306,
        trust_show_slave_hosts=False,
    )
    assert keys == ("127.0.0.1:63307", "127.0.0.1:63308")


def test_mariadb_replicating_replica() -> None:
    channel = probe_sql.parse_replica_status(rows("mariadb-10.11-replica")["replica_status"][0])
    assert channel.name == ""
    assert channel.master_key == "127.0.0.1:63306"
    assert channel.master_user == "repl"
    assert channel.io_thread is ThreadState.RUNNING
    assert channel.sql_thread is ThreadState.RUNNING
    assert channel.is_replicating
    assert channel.seconds_behind_master == 0
    assert channel.using_gtid == "Slave_Pos"
    assert channel.uses_gtid
    assert not channel.auto_position
    assert channel.gtid_io_pos.startswith("0-1-")
    assert channel.master_server_id == 1
    assert channel.last_io_errno == 0
    assert channel.read_coordinates == channel.exec_coordinates
    assert channel.relay_coordinates is not None
    assert not channel.has_replication_filters
    assert channel.heartbeat_period == 1.0  # Slave_heartbeat_period, as the sandbox sets it


def test_mariadb_replica_of_a_killed_master() -> None:
    recorded = rows("mariadb-10.11-replica-master-dead")
    channel = probe_sql.parse_replica_status(recorded["replica_status"][0])
    assert channel.master_key == "127.0.0.1:63306"
    assert channel.io_running == "Connecting"
    assert channel.io_thread is ThreadState.OTHER
    assert channel.sql_thread is ThreadState.RUNNING
    assert not channel.is_replicating
    assert channel.last_io_errno == 2003
    assert channel.last_io_error.startswith("error reconnecting to master 'repl@127.0.0.1:63306'")
    assert channel.seconds_behind_master is None
    assert channel.exec_coordinates is not None  # what it had applied is still known


def test_mysql_8_replica_status_with_new_column_names() -> None:
    recorded = rows("mysql-8.0-replica")
    channel = probe_sql.parse_replica_status(recorded["replica_status"][0])
    assert channel.master_key == "10.0.0.11:3306"
    assert channel.is_replicating
    assert channel.io_state_text == "Waiting for source to send event"
    assert channel.seconds_behind_master == 3
    assert channel.master_server_id == 11
    assert channel.master_uuid == "3E11FA47-71CA-11E1-9E33-C80AA9429562"
    assert channel.auto_position and channel.uses_gtid
    assert channel.using_gtid == ""
    assert channel.executed_gtid_set == (
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-23,8a94f357-aab4-11df-86ab-c80aa9429562:1-3"
    )
    assert channel.exec_coordinates is not None
    assert (channel.exec_coordinates.file, channel.exec_coordinates.position) == (
        "binlog.000012",
        5423,
    )
    assert channel.has_replication_filters  # Replicate_Wild_Ignore_Table = mysql.%
    assert channel.master_ssl_allowed


def test_mysql_8_identity_gtid_and_semi_sync() -> None:
    recorded = rows("mysql-8.0-replica")
    variables = probe_sql.name_value_rows(recorded["variables"])
    status = probe_sql.name_value_rows(recorded["status"])
    fields = probe_sql.identity_fields(variables)
    assert fields["flavor"] is Flavor.MYSQL
    assert fields["server_id"] == 12
    assert fields["read_only"] and fields["super_read_only"]
    assert fields["log_slave_updates"]
    assert fields["gtid_mode"] == "ON"
    assert "\n" not in fields["gtid_executed"]
    assert "gtid_binlog_pos" not in fields
    semi = probe_sql.parse_semi_sync(variables, status)
    assert semi.replica_enabled and semi.replica_status
    assert not semi.available  # no source-side semi-sync variables: plugin not loaded
    coordinates = probe_sql.parse_master_status(recorded["master_status"])
    assert coordinates is not None and coordinates.position == 197


def test_mariadb_identity_fields() -> None:
    variables = {
        "version": "10.11.19-MariaDB-0+deb12u1-log",
        "server_id": "3",
        "read_only": "ON",
        "log_bin": "ON",
        "log_slave_updates": "ON",
        "gtid_domain_id": "0",
        "gtid_binlog_pos": "0-1-12",
        "gtid_current_pos": "0-1-12",
        "gtid_slave_pos": "0-1-12",
        "gtid_strict_mode": "ON",
        "rpl_semi_sync_master_enabled": "OFF",
        "slave_net_timeout": "60",
    }
    fields = probe_sql.identity_fields(variables)
    assert fields["slave_net_timeout"] == 60
    assert fields["flavor"] is Flavor.MARIADB
    assert fields["gtid_domain_id"] == 0
    assert fields["gtid_binlog_pos"] == "0-1-12"
    assert fields["gtid_strict_mode"] is True
    assert "gtid_executed" not in fields
    assert probe_sql.parse_semi_sync(variables, {}).available


def test_replica_hosts_from_show_slave_hosts_and_dump_threads() -> None:
    reported = [{"Server_id": 2, "Host": "127.0.0.1", "Port": 22307, "Master_id": 1}]
    keys = probe_sql.parse_replica_hosts(
        reported, dump_thread_hosts=["127.0.0.1"], own_port=22306, trust_show_slave_hosts=False
    )
    assert keys == ("127.0.0.1:22307",)
    # a replica without report_host only shows as a dump thread: assume the master's port
    keys = probe_sql.parse_replica_hosts(
        reported,
        dump_thread_hosts=["127.0.0.1", "10.0.0.9"],
        own_port=22306,
        trust_show_slave_hosts=False,
    )
    assert keys == ("10.0.0.9:22306", "127.0.0.1:22307")
    # ... unless DiscoverByShowSlaveHosts says to trust SHOW SLAVE HOSTS only
    keys = probe_sql.parse_replica_hosts(
        reported,
        dump_thread_hosts=["127.0.0.1", "10.0.0.9"],
        own_port=22306,
        trust_show_slave_hosts=True,
    )
    assert keys == ("127.0.0.1:22307",)
    mysql = rows("mysql-8.0-replica")["replica_hosts"]
    assert probe_sql.parse_replica_hosts(
        mysql, dump_thread_hosts=[], own_port=3306, trust_show_slave_hosts=False
    ) == ("db3.example.com:3306",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("ON", True), ("1", True), ("Yes", True), (b"ON", True), ("OFF", False), (None, False)],
)
def test_as_bool(value: object, expected: bool) -> None:
    assert probe_sql.as_bool(value) is expected


def test_negative_lag_is_clamped() -> None:
    channel = probe_sql.parse_replica_status(
        {"Master_Host": "h", "Master_Port": 1, "Seconds_Behind_Master": -4}
    )
    assert channel.seconds_behind_master == 0


def test_a_detached_master_is_read_as_a_replica_of_nobody() -> None:
    """orchestrator's detach-replica-master-host writes Master_Host '//host': the replica keeps
    the master it was detached from, linked to no master (its own cluster), shown //host."""
    row = dict(rows("mariadb-10.11-replica")["replica_status"][0])
    row["Master_Host"] = "//127.0.0.1"
    row["Slave_IO_Running"] = "No"
    channel = probe_sql.parse_replica_status(row)
    assert channel.master_detached
    assert channel.master_key == "127.0.0.1:63306"
    snapshot = InstanceSnapshot(
        key="127.0.0.1:63307",
        probe=ProbeFacts(ok=True, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
        channels=(channel,),
        read_only=True,
    )
    assert snapshot.master_key is None
    master = InstanceSnapshot(
        key="127.0.0.1:63306",
        probe=ProbeFacts(ok=True, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
    )
    topology = build_topology([master, snapshot])
    assert sorted(topology.clusters) == ["127.0.0.1:63306", "127.0.0.1:63307"]
    # the detached replica is nobody's replica in the analysis either
    assert all(
        snapshot.instance_key not in a.replicas for a in analyze([master, snapshot], now=NOW)
    )


# --- Galera (wsrep) ------------------------------------------------------------------------


def recorded_variables_and_status(name: str) -> tuple[dict[str, str], dict[str, str]]:
    recorded = rows(name)
    return (
        probe_sql.name_value_rows(recorded["variables"]),
        probe_sql.name_value_rows(recorded["status"]),
    )


def test_galera_node_state_from_recorded_rows() -> None:
    galera = probe_sql.parse_galera(*recorded_variables_and_status("mariadb-10.11-galera-node"))
    assert galera is not None
    assert galera.cluster_name == "g2capture"
    assert galera.node_name == "node1"
    assert galera.cluster_state_uuid == "97b2a9a7-f292-11f1-af7b-3be523fd178b"
    assert galera.cluster_size == 3
    assert galera.is_primary and galera.cluster_status == "Primary"
    assert galera.is_synced and galera.local_state == "Synced"
    assert galera.ready and galera.connected
    assert not galera.desync and galera.desync_count == 0
    assert galera.gtid_domain_id == 7
    assert galera.member_keys == ("127.0.0.1:21089", "127.0.0.1:23443", "127.0.0.1:29011")


def test_a_mariadb_without_wsrep_has_no_galera_state() -> None:
    variables, status = recorded_variables_and_status("mariadb-10.11-no-wsrep")
    assert "wsrep_cluster_status" in status  # it answers the names, as "Disconnected"
    assert probe_sql.parse_galera(variables, status) is None


def test_mysql_has_no_galera_state() -> None:
    assert probe_sql.parse_galera(*recorded_variables_and_status("mysql-8.0-replica")) is None


def test_galera_state_with_missing_status_names_keeps_defaults() -> None:
    """A node that has just started (or a provider that does not report a name) answers
    only some names: the state is still a Galera one, with the unknowns at their defaults."""
    galera = probe_sql.parse_galera({"wsrep_on": "ON"}, {"wsrep_cluster_status": "non-Primary"})
    assert galera is not None
    assert galera.cluster_status == "non-Primary" and not galera.is_primary
    assert galera.cluster_size == 0 and galera.cluster_state_uuid == ""
    assert galera.local_state == "" and not galera.is_synced
    assert galera.gtid_domain_id is None
    assert galera.member_keys == ()


def test_desynced_donor_state() -> None:
    galera = probe_sql.parse_galera(
        {"wsrep_on": "ON", "wsrep_desync": "ON"},
        {"wsrep_local_state_comment": "Donor/Desynced", "wsrep_desync_count": "1"},
    )
    assert galera is not None
    assert galera.desync and galera.desync_count == 1
    assert not galera.is_synced


@pytest.mark.parametrize(
    ("addresses", "keys"),
    [
        ("", ()),
        ("AUTO", ()),
        (
            "10.0.0.2:3306,AUTO,,db1:3307, auto ",
            ("10.0.0.2:3306", "db1:3307"),
        ),
        ("[::1]:3306,127.0.0.1:3306,127.0.0.1:3306", ("127.0.0.1:3306", "[::1]:3306")),
        ("db1,db2:70000,bad host:1", ("db1:3306",)),
    ],
)
def test_incoming_addresses(addresses: str, keys: tuple[str, ...]) -> None:
    """AUTO and empty entries (nodes that publish no client address) and invalid ones are
    skipped; a bare host has the default port; duplicates collapse."""
    assert probe_sql.parse_incoming_addresses(addresses) == keys
    galera = probe_sql.parse_galera({"wsrep_on": "ON"}, {"wsrep_incoming_addresses": addresses})
    assert galera is not None
    assert galera.incoming_addresses == addresses
    assert galera.member_keys == keys


def test_a_snapshot_without_the_galera_field_still_parses() -> None:
    """Snapshots published before Galera support have no ``galera``: they read as None."""
    old = {
        "schema": 1,
        "key": "127.0.0.1:3306",
        "probe": {"ok": True, "checked_at": NOW.isoformat(), "attempted_at": NOW.isoformat()},
    }
    assert InstanceSnapshot.model_validate(old).galera is None
    galera = probe_sql.parse_galera(*recorded_variables_and_status("mariadb-10.11-galera-node"))
    snapshot = InstanceSnapshot.model_validate({**old, "galera": galera})
    assert InstanceSnapshot.from_json(snapshot.to_json()) == snapshot
