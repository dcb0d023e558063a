"""orchestrator's Instance JSON: reachability, Problems, downtime, candidates, flavours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator_api.wire import (
    Candidate,
    Downtime,
    PromotionRule,
    check_state,
    instance_json,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    Flavor,
    GaleraState,
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    ThreadState,
    unknown_instance,
)
from orchestrator_shared.topology import build_topology

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
POLL = 5.0


def probe(*, age: float = 0.0, ok: bool = True) -> ProbeFacts:
    """A probe that ended ``age`` seconds before ``NOW``; a successful one saw the instance."""
    checked = NOW - timedelta(seconds=age)
    return ProbeFacts(
        ok=ok, checked_at=checked, attempted_at=checked, last_seen_at=checked if ok else None
    )


def channel(master: int, **fields: Any) -> ReplicationChannel:
    values: dict[str, Any] = {
        "master_key": f"127.0.0.1:{master}",
        "master_user": "repl",
        "io_running": "Yes",
        "sql_running": "Yes",
        "io_thread": ThreadState.RUNNING,
        "sql_thread": ThreadState.RUNNING,
        "using_gtid": "Slave_Pos",
        "seconds_behind_master": 0,
    }
    values.update(fields)
    return ReplicationChannel.model_validate(values)


def snap(port: int, master: int | None = None, **fields: Any) -> InstanceSnapshot:
    values: dict[str, Any] = {
        "key": f"127.0.0.1:{port}",
        "probe": probe(),
        "flavor": Flavor.MARIADB,
        "version": "10.11.19-MariaDB-log",
        "read_only": master is not None,
        "log_bin": True,
        "channels": (channel(master),) if master is not None else (),
        "replication_lag_seconds": 0 if master is not None else None,
    }
    values.update(fields)
    return InstanceSnapshot.model_validate(values)


def render(
    snapshots: list[InstanceSnapshot], port: int, *, now: datetime = NOW, **kwargs: Any
) -> dict[str, Any]:
    topology = build_topology(snapshots)
    key = InstanceKey("127.0.0.1", port)
    cluster = topology.cluster_of(key)
    assert cluster is not None
    return instance_json(cluster.instances[key], cluster, now=now, poll_seconds=POLL, **kwargs)


def replica(**fields: Any) -> dict[str, Any]:
    """Port 2 replicating from port 1, with ``fields`` overriding the replica's snapshot."""
    return render([snap(1), snap(2, 1, **fields)], 2)


# --- reachability ----------------------------------------------------------------------------


def test_fresh_probe_is_valid_up_to_date_and_recent() -> None:
    item = replica()
    assert item["IsLastCheckValid"] is True
    assert item["IsUpToDate"] is True
    assert item["IsRecentlyChecked"] is True
    assert item["SecondsSinceLastSeen"] == {"Int64": 0, "Valid": True}
    assert item["LastSeenTimestamp"] == "2026-11-25T12:00:00Z"
    assert item["Problems"] == []


def test_failed_probe_keeps_last_seen_and_is_invalid() -> None:
    seen = snap(2, 1, probe=probe(age=30))
    failed = seen.with_failed_probe(probe(age=1, ok=False))
    item = render([snap(1), failed], 2)
    assert item["IsLastCheckValid"] is False
    assert item["IsRecentlyChecked"] is True
    assert item["SecondsSinceLastSeen"] == {"Int64": 30, "Valid": True}
    assert item["LastSeenTimestamp"] == "2026-11-25T11:59:30Z"
    assert item["Problems"] == ["last_check_invalid"]


def test_never_seen_instance_has_no_last_seen() -> None:
    never = unknown_instance(InstanceKey("127.0.0.1", 9), probe(ok=False))
    item = render([never], 9)
    assert item["LastSeenTimestamp"] == ""
    assert item["SecondsSinceLastSeen"] == {"Int64": 0, "Valid": False}
    assert item["IsLastCheckValid"] is False
    assert item["Problems"] == ["last_check_invalid"]
    assert item["MasterKey"] == {"Hostname": "", "Port": 0}
    assert item["ClusterName"] == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("age", "up_to_date", "recent"),
    [(5.0, True, True), (6.0, False, True), (25.0, False, True), (26.0, False, False)],
)
def test_staleness_in_whole_seconds(age: float, up_to_date: bool, recent: bool) -> None:
    state = check_state(snap(1, probe=probe(age=age)), now=NOW, poll_seconds=POLL)
    assert (state.is_up_to_date, state.is_recently_checked) == (up_to_date, recent)
    assert state.is_last_check_valid is True


def test_seconds_are_counted_as_unix_timestamps_differences() -> None:
    # 0.2 s apart but across a second boundary: orchestrator's SQL says one second.
    checked = datetime(2026, 11, 25, 11, 59, 59, 900_000, tzinfo=UTC)
    facts = ProbeFacts(ok=True, checked_at=checked, attempted_at=checked, last_seen_at=checked)
    state = check_state(snap(1, probe=facts), now=NOW + timedelta(milliseconds=100), poll_seconds=1)
    assert state.seconds_since_last_seen == 1


def test_stale_instance_is_not_recently_checked() -> None:
    item = replica(probe=probe(age=60))
    assert item["Problems"] == ["not_recently_checked"]
    assert item["IsUpToDate"] is False


# --- Problems --------------------------------------------------------------------------------


def test_stopped_io_thread_is_not_replicating() -> None:
    stopped = channel(1, io_running="No", io_thread=ThreadState.STOPPED)
    item = replica(channels=(stopped,))
    assert item["Problems"] == ["not_replicating"]
    assert item["Slave_IO_Running"] is False
    assert item["ReplicationIOThreadRuning"] is False
    assert item["ReplicationIOThreadState"] == 0
    assert item["ReplicationSQLThreadState"] == 1


def test_connecting_io_thread_is_not_running() -> None:
    connecting = channel(1, io_running="Connecting", io_thread=ThreadState.OTHER)
    item = replica(channels=(connecting,))
    assert item["ReplicationIOThreadState"] == 2
    assert item["ReplicationIOThreadRuning"] is False
    assert item["Problems"] == ["not_replicating"]


def test_replication_without_threads_is_no_problem() -> None:
    idle = channel(1, io_thread=ThreadState.NOT_CONFIGURED, sql_thread=ThreadState.NOT_CONFIGURED)
    item = replica(channels=(idle,))
    assert item["ReplicationIOThreadState"] == -1
    assert item["Problems"] == []


def test_master_threads_are_not_configured() -> None:
    item = render([snap(1), snap(2, 1)], 1)
    assert item["ReplicationSQLThreadState"] == -1
    assert item["ReplicationIOThreadState"] == -1
    assert item["Slave_SQL_Running"] is False
    assert item["SecondsBehindMaster"] == {"Int64": 0, "Valid": False}
    assert item["MasterUUID"] == ""
    assert item["HasReplicationCredentials"] is False
    assert item["Problems"] == []


@pytest.mark.parametrize(
    ("lag", "delay", "problems"),
    [
        (10, 0, []),
        (11, 0, ["replication_lag"]),
        (3605, 3600, []),
        (3589, 3600, ["replication_lag"]),
        (None, 0, []),
    ],
)
def test_replication_lag_after_sql_delay(lag: int | None, delay: int, problems: list[str]) -> None:
    item = replica(replication_lag_seconds=lag, channels=(channel(1, sql_delay=delay),))
    assert item["Problems"] == problems
    assert item["SQLDelay"] == delay
    expected_lag = {"Int64": lag or 0, "Valid": lag is not None}
    assert item["ReplicationLagSeconds"] == item["SlaveLagSeconds"] == expected_lag


def test_reasonable_lag_is_configurable() -> None:
    topology_snaps = [snap(1), snap(2, 1, replication_lag_seconds=30)]
    assert render(topology_snaps, 2, reasonable_lag_seconds=60)["Problems"] == []


def test_only_the_first_reachability_problem_then_errant_gtid() -> None:
    stopped = channel(1, io_running="No", io_thread=ThreadState.STOPPED)
    failed = snap(2, 1, channels=(stopped,), probe=probe(age=10)).with_failed_probe(probe(ok=False))
    item = render([snap(1), failed], 2, gtid_errant="0-2-5")
    assert item["Problems"] == ["last_check_invalid", "errant_gtid"]
    assert item["GtidErrant"] == "0-2-5"


def test_negative_lag_is_clamped_to_zero() -> None:
    item = replica(replication_lag_seconds=-3, channels=(channel(1, seconds_behind_master=-2),))
    assert item["SecondsBehindMaster"] == {"Int64": 0, "Valid": True}
    assert item["ReplicationLagSeconds"] == {"Int64": 0, "Valid": True}


# --- downtime and promotion rules ------------------------------------------------------------


def test_active_downtime() -> None:
    downtime = Downtime(
        key=InstanceKey("127.0.0.1", 2),
        owner="ops",
        reason="upgrade",
        begins_at=NOW - timedelta(seconds=90),
        ends_at=NOW + timedelta(minutes=8, seconds=30),
    )
    item = render([snap(1), snap(2, 1)], 2, downtime=downtime)
    assert item["IsDowntimed"] is True
    assert item["DowntimeOwner"] == "ops"
    assert item["DowntimeReason"] == "upgrade"
    assert item["DowntimeEndTimestamp"] == "2026-11-25 12:08:30"
    assert item["ElapsedDowntime"] == 90_000_000_000


def test_expired_downtime_is_not_downtimed() -> None:
    downtime = Downtime(
        key=InstanceKey("127.0.0.1", 2),
        owner="ops",
        reason="upgrade",
        begins_at=NOW - timedelta(minutes=10),
        ends_at=NOW - timedelta(seconds=1),
    )
    item = render([snap(1), snap(2, 1)], 2, downtime=downtime)
    assert item["IsDowntimed"] is False
    assert item["DowntimeEndTimestamp"] == "2026-11-25 11:59:59"
    assert item["ElapsedDowntime"] == 0


def test_no_downtime() -> None:
    item = replica()
    assert (item["IsDowntimed"], item["DowntimeOwner"], item["DowntimeEndTimestamp"]) == (
        False,
        "",
        "",
    )


def candidate(rule: PromotionRule, expires: datetime | None = None) -> Candidate:
    return Candidate(
        key=InstanceKey("127.0.0.1", 2),
        rule=rule,
        registered_at=NOW - timedelta(minutes=1),
        expires_at=expires or NOW + timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("candidate", "detected", "rule", "is_candidate"),
    [
        (None, "", "neutral", False),
        (candidate(PromotionRule.PREFER), "", "prefer", True),
        (candidate(PromotionRule.MUST, NOW + timedelta(hours=1)), "", "must", True),
        (candidate(PromotionRule.PREFER, NOW - timedelta(seconds=1)), "", "neutral", False),
        (candidate(PromotionRule.MUST_NOT), "prefer", "must_not", False),
        (None, "prefer_not", "prefer_not", False),
        (candidate(PromotionRule.PREFER, NOW), "must", "must", True),
    ],
)
def test_promotion_rule(
    candidate: Candidate | None, detected: str, rule: str, is_candidate: bool
) -> None:
    snaps = [snap(1), snap(2, 1, promotion_rule=detected)]
    item = render(snaps, 2, candidate=candidate)
    assert (item["PromotionRule"], item["IsCandidate"]) == (rule, is_candidate)


# --- replication facts -----------------------------------------------------------------------


def test_mariadb_replica_fields() -> None:
    failing = channel(
        1,
        using_gtid="Current_Pos",
        gtid_io_pos="0-1-9",
        last_sql_error="Error 'Duplicate entry \"x\"' on query",
        last_io_error="",
        master_ssl_allowed=True,
        has_replication_filters=True,
    )
    item = replica(channels=(failing,), gtid_domain_id=3, gtid_strict_mode=True)
    assert item["UsingMariaDBGTID"] is True
    assert item["UsingOracleGTID"] is False
    assert item["MasterUUID"] == "No"
    assert item["ExecutedGtidSet"] == ""
    assert item["LastSQLError"] == '"Error \'Duplicate entry \\"x\\"\' on query"'
    assert item["LastIOError"] == ""
    assert item["AllowTLS"] is True
    assert item["HasReplicationFilters"] is True
    assert (item["GtidDomainId"], item["GtidStrictMode"], item["GtidIOPos"]) == (3, True, "0-1-9")
    assert item["UsingGtid"] == "Current_Pos"


def test_file_position_replica_does_not_use_gtid() -> None:
    item = replica(channels=(channel(1, using_gtid="No"),))
    assert item["UsingMariaDBGTID"] is False


def test_mysql_chain_fields_and_ancestry() -> None:
    uuids = {p: f"00000000-0000-0000-0000-00000000000{p}" for p in (1, 2, 3)}

    def mysql(port: int, master: int | None) -> InstanceSnapshot:
        channels: tuple[ReplicationChannel, ...] = ()
        if master is not None:
            channels = (
                channel(master, using_gtid="", auto_position=True, master_uuid=uuids[master]),
            )
        return snap(
            port,
            master,
            flavor=Flavor.MYSQL,
            version="8.0.36",
            server_uuid=uuids[port],
            gtid_mode="ON",
            gtid_executed=f"{uuids[1]}:1-10",
            gtid_purged=f"{uuids[1]}:1-2",
            channels=channels,
        )

    snaps = [mysql(1, None), mysql(2, 1), mysql(3, 2)]
    leaf = render(snaps, 3)
    assert leaf["ReplicationDepth"] == 2
    assert leaf["AncestryUUID"] == ",".join(uuids[p] for p in (1, 2, 3))
    assert leaf["MasterUUID"] == uuids[2]
    assert leaf["UsingOracleGTID"] is True
    assert leaf["SupportsOracleGTID"] is True
    assert leaf["GTIDMode"] == "ON"
    assert leaf["ExecutedGtidSet"] == f"{uuids[1]}:1-10"
    assert leaf["GtidPurged"] == f"{uuids[1]}:1-2"
    assert leaf["FlavorName"] == "MySQL"
    assert leaf["GtidDomainId"] is None
    assert render(snaps, 1)["AncestryUUID"] == uuids[1]
    assert render(snaps, 2)["Replicas"] == [{"Hostname": "127.0.0.1", "Port": 3}]


def test_co_masters() -> None:
    first = snap(1, 2, read_only=False, server_uuid="a")
    second = snap(2, 1, read_only=True, server_uuid="b")
    one, two = render([first, second], 1), render([first, second], 2)
    assert one["IsCoMaster"] is two["IsCoMaster"] is True
    assert (one["ReplicationDepth"], two["ReplicationDepth"]) == (0, 1)
    assert one["ClusterName"] == two["ClusterName"] == "127.0.0.1:1"
    assert one["MasterKey"] == {"Hostname": "127.0.0.1", "Port": 2}


def test_replicas_join_reported_and_placed_keys_sorted() -> None:
    master = snap(1, replica_keys=("127.0.0.1:5", "127.0.0.1:3"))
    item = render([master, snap(3, 1), snap(4, 1)], 1)
    expected = [{"Hostname": "127.0.0.1", "Port": p} for p in (3, 4, 5)]
    assert item["Replicas"] == item["SlaveHosts"] == expected


def test_alias_comes_from_the_instance_else_the_cluster() -> None:
    snaps = [snap(1, suggested_cluster_alias="main"), snap(2, 1)]
    assert render(snaps, 2)["SuggestedClusterAlias"] == "main"
    assert render([snap(1), snap(2, 1)], 2)["SuggestedClusterAlias"] == ""


def test_latency_in_nanoseconds() -> None:
    facts = probe().model_copy(update={"latency_seconds": 0.25})
    assert replica(probe=facts)["LastDiscoveryLatency"] == 250_000_000


def test_galera_is_null_for_a_server_without_wsrep() -> None:
    assert render([snap(3306)], 3306)["Galera"] is None


def test_galera_state_of_a_node() -> None:
    galera = GaleraState(
        cluster_name="prod-galera",
        node_name="node2",
        cluster_state_uuid="97b2a9a7-f292-11f1-af7b-3be523fd178b",
        cluster_size=3,
        cluster_status="Primary",
        local_state="Donor/Desynced",
        ready=True,
        connected=True,
        desync=True,
        desync_count=1,
        gtid_domain_id=7,
        incoming_addresses="127.0.0.1:3307,AUTO,127.0.0.1:3306",
        member_keys=("127.0.0.1:3306", "127.0.0.1:3307"),
    )
    answer = render([snap(3307, galera=galera)], 3307)
    assert answer["Galera"] == {
        "ClusterName": "prod-galera",
        "NodeName": "node2",
        "ClusterStateUUID": "97b2a9a7-f292-11f1-af7b-3be523fd178b",
        "ClusterSize": 3,
        "ClusterStatus": "Primary",
        "LocalStateComment": "Donor/Desynced",
        "IsSynced": False,
        "IsPrimaryComponent": True,
        "Ready": True,
        "Connected": True,
        "Desync": True,
        "DesyncCount": 1,
        "GtidDomainId": 7,
        "IncomingAddresses": "127.0.0.1:3307,AUTO,127.0.0.1:3306",
        "Members": [
            {"Hostname": "127.0.0.1", "Port": 3306},
            {"Hostname": "127.0.0.1", "Port": 3307},
        ],
    }
    assert list(answer)[-1] == "Galera"  # after every orchestrator field
