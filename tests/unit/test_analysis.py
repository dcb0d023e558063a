"""The tricky rules of failure analysis, one behaviour per test (the golden scenarios are in
``test_analysis_scenarios.py``)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_shared.analysis import (
    Analysis,
    AnalysisCode,
    AnalysisOptions,
    CoordinatesSeen,
    StructureWarning,
    analyze,
    check_validity,
    find_errant,
    track_binlog_coordinates,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.gtid import GtidSet
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Coordinates, InstanceSnapshot
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot

pytestmark = pytest.mark.unit

# Field -> JSON type in orchestrator's /api/replication-analysis (captured from orchestrator).
SAMPLE_FIELDS: dict[str, type] = {
    "AnalyzedInstanceKey": dict,
    "AnalyzedInstanceMasterKey": dict,
    "ClusterDetails": dict,
    "AnalyzedInstanceDataCenter": str,
    "AnalyzedInstanceRegion": str,
    "AnalyzedInstancePhysicalEnvironment": str,
    "AnalyzedInstanceBinlogCoordinates": dict,
    "IsMaster": bool,
    "IsReplicationGroupMember": bool,
    "IsCoMaster": bool,
    "LastCheckValid": bool,
    "LastCheckPartialSuccess": bool,
    "CountReplicas": int,
    "CountValidReplicas": int,
    "CountValidReplicatingReplicas": int,
    "CountReplicasFailingToConnectToMaster": int,
    "CountDowntimedReplicas": int,
    "ReplicationDepth": int,
    "Replicas": list,
    "SlaveHosts": list,
    "IsFailingToConnectToMaster": bool,
    "Analysis": str,
    "Description": str,
    "IsDowntimed": bool,
    "IsReplicasDowntimed": bool,
    "DowntimeEndTimestamp": str,
    "DowntimeRemainingSeconds": int,
    "IsBinlogServer": bool,
    "PseudoGTIDImmediateTopology": bool,
    "OracleGTIDImmediateTopology": bool,
    "MariaDBGTIDImmediateTopology": bool,
    "BinlogServerImmediateTopology": bool,
    "SemiSyncMasterEnabled": bool,
    "SemiSyncMasterStatus": bool,
    "SemiSyncMasterWaitForReplicaCount": int,
    "SemiSyncMasterClients": int,
    "CountSemiSyncReplicasEnabled": int,
    "CountLoggingReplicas": int,
    "CountStatementBasedLoggingReplicas": int,
    "CountMixedBasedLoggingReplicas": int,
    "CountRowBasedLoggingReplicas": int,
    "CountDistinctMajorVersionsLoggingReplicas": int,
    "CountDelayedReplicas": int,
    "CountLaggingReplicas": int,
    "IsActionableRecovery": bool,
    "ProcessingNodeHostname": str,
    "ProcessingNodeToken": str,
    "CountAdditionalAgreeingNodes": int,
    "StartActivePeriod": str,
    "SkippableDueToDowntime": bool,
    "GTIDMode": str,
    "MinReplicaGTIDMode": str,
    "MaxReplicaGTIDMode": str,
    "MaxReplicaGTIDErrant": str,
    "CommandHint": str,
    "IsReadOnly": bool,
}
SAMPLE_CLUSTER_FIELDS = {
    "ClusterName",
    "ClusterAlias",
    "ClusterDomain",
    "CountInstances",
    "HeuristicLag",
    "HasAutomatedMasterRecovery",
    "HasAutomatedIntermediateMasterRecovery",
}
MASTER = "db:1"
UUID_M = "00000000-0000-0000-0000-000000000001"
UUID_R = "00000000-0000-0000-0000-000000000002"


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def star(master: dict[str, Any], *replicas: dict[str, Any]) -> list[InstanceSnapshot]:
    """A master ``db:1`` and replicas ``db:2``, ``db:3``... with the given fields."""
    snaps = [instance_snapshot(MASTER, {"auto_position": True, **master})]
    for index, fields in enumerate(replicas, start=2):
        snaps.append(
            instance_snapshot(f"db:{index}", {"master": MASTER, "auto_position": True, **fields})
        )
    return snaps


def verdict(snaps: list[InstanceSnapshot], target: str = MASTER, **kwargs: Any) -> Analysis:
    found = {str(a.key): a for a in analyze(snaps, now=NOW, include_no_problem=True, **kwargs)}
    return found[target]


# --- the holistic dead-master rule ------------------------------------------------------------

replica_state = st.fixed_dictionaries(
    {
        "ok": st.booleans(),
        "io": st.sampled_from(["Yes", "No", "Connecting"]),
        "sql": st.sampled_from(["Yes", "No"]),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(replica_state, min_size=1, max_size=4), st.booleans())
def test_dead_master_needs_every_reachable_replica_to_confirm(
    replicas: list[dict[str, Any]], partial: bool
) -> None:
    result = verdict(star({"ok": False, "partial": partial}, *replicas))
    reachable = [r for r in replicas if r["ok"]]
    some_still_connected = any(r["io"] == "Yes" for r in reachable)
    if result.code in (AnalysisCode.DEAD_MASTER, AnalysisCode.DEAD_MASTER_AND_SOME_REPLICAS):
        assert reachable
        assert not some_still_connected
    if result.code is AnalysisCode.DEAD_MASTER:
        assert len(reachable) == len(replicas)
    if some_still_connected:
        assert not result.is_actionable
    if not reachable:
        assert result.code is AnalysisCode.DEAD_MASTER_AND_REPLICAS
        assert not result.is_actionable


def test_dead_master_is_actionable_and_explains_itself() -> None:
    result = verdict(star({"ok": False, "error": "connection refused"}, {"io": "No"}, {"io": "No"}))
    assert result.code is AnalysisCode.DEAD_MASTER
    assert result.is_actionable
    assert result.count_valid_replicas == 2
    assert result.count_valid_replicating_replicas == 0
    assert any("connection refused" in line for line in result.evidence)
    assert any("2 of 2 replicas reachable" in line for line in result.evidence)


def test_a_replica_still_connected_makes_the_master_only_unreachable() -> None:
    # SQL thread stopped by hand, IO thread still connected: it can see the master.
    result = verdict(star({"ok": False}, {"io": "Yes", "sql": "No"}, {"io": "No"}))
    assert result.code is AnalysisCode.UNREACHABLE_MASTER
    assert result.count_valid_replicating_replicas == 0
    assert result.count_valid_replicas_connected_to_master == 1


def test_partial_success_silences_unreachable_master_unless_a_replica_fails_to_connect() -> None:
    fine = star({"ok": False, "partial": True}, {}, {})
    assert verdict(fine).code is AnalysisCode.NO_PROBLEM
    failing = {"io": "Connecting", "io_error": "error connecting to master 'r@db:1' - retry"}
    broken = star({"ok": False, "partial": True}, {}, failing)
    assert verdict(broken).code is AnalysisCode.UNREACHABLE_MASTER
    assert verdict(broken).count_replicas_failing_to_connect_to_master == 1


# --- validity: failed, hung and stale probes --------------------------------------------------

OPTIONS = AnalysisOptions()


@pytest.mark.parametrize(
    ("fields", "is_valid"),
    [
        ({}, True),
        ({"ok": False}, False),
        ({"ok": False, "partial": True}, False),
        ({"ok": False, "timed_out": True}, False),
        ({"checked": -4}, True),
        ({"checked": -26}, False),  # older than 5 x InstancePollSeconds: a probe hangs
        ({"checked": -10, "attempted": 0}, False),  # attempted long after the last sighting
        ({"checked": -3, "attempted": 0}, True),
        ({"seen": -5}, False),  # checked after it was last seen
    ],
)
def test_last_check_validity(fields: dict[str, Any], is_valid: bool) -> None:
    snap = instance_snapshot("db:1", fields)
    assert check_validity(snap, now=NOW, options=OPTIONS).is_valid is is_valid


def test_hung_master_probe_counts_as_dead() -> None:
    snaps = star({"ok": False, "timed_out": True, "seen": -12}, {"io": "No"}, {"io": "No"})
    assert verdict(snaps).code is AnalysisCode.DEAD_MASTER


def test_thresholds_follow_instance_poll_seconds() -> None:
    options = AnalysisOptions.from_settings(Settings(InstancePollSeconds=2))
    assert options.hung_probe_seconds == 3
    assert options.recently_checked_seconds == 10
    snap = instance_snapshot("db:1", {"checked": -12})
    assert not check_validity(snap, now=NOW, options=options).is_valid
    assert check_validity(snap, now=NOW, options=AnalysisOptions()).is_valid


# --- downtime -----------------------------------------------------------------------------------


def test_downtimed_master_is_skippable_but_still_analysed() -> None:
    snaps = star({"ok": False}, {"io": "No"})
    until = NOW + timedelta(minutes=10)
    result = verdict(snaps, downtimed={key(MASTER): until})
    assert result.code is AnalysisCode.DEAD_MASTER
    assert result.is_downtimed
    assert result.skippable_due_to_downtime
    assert result.downtime_remaining_seconds == 600
    hidden = analyze(snaps, now=NOW, downtimed={key(MASTER): until}, include_downtimed=False)
    assert hidden == []


def test_replica_side_codes_are_skippable_when_every_replica_is_downtimed() -> None:
    snaps = star({}, {"io": "No", "sql": "No"}, {"io": "No", "sql": "No"})
    until = NOW + timedelta(hours=1)
    one = verdict(snaps, downtimed={key("db:2"): until})
    assert one.code is AnalysisCode.ALL_MASTER_REPLICAS_NOT_REPLICATING
    assert not one.skippable_due_to_downtime
    both = verdict(snaps, downtimed={key("db:2"): until, key("db:3"): until})
    assert both.is_replicas_downtimed
    assert both.skippable_due_to_downtime
    assert both.count_downtimed_replicas == 2


def test_replicas_downtimed_do_not_make_a_dead_master_skippable() -> None:
    snaps = star({"ok": False}, {"io": "No"})
    result = verdict(snaps, downtimed={key("db:2"): NOW + timedelta(hours=1)})
    assert result.code is AnalysisCode.DEAD_MASTER
    assert not result.skippable_due_to_downtime


# --- co-masters and multi-source ----------------------------------------------------------------


def test_co_masters_are_both_flagged_and_analysed_as_co_masters() -> None:
    snaps = [
        instance_snapshot("db:1", {"master": "db:2", "io": "No"}),
        instance_snapshot("db:2", {"master": "db:1", "read_only": True, "ok": False}),
        instance_snapshot("db:3", {"master": "db:2", "io": "No"}),
    ]
    results = {str(a.key): a for a in analyze(snaps, now=NOW, include_no_problem=True)}
    assert results["db:1"].is_co_master
    assert results["db:2"].is_co_master
    assert not results["db:1"].is_master
    assert results["db:2"].code is AnalysisCode.DEAD_CO_MASTER
    assert results["db:2"].is_actionable
    assert results["db:2"].replicas == (key("db:1"), key("db:3"))


def test_a_multi_source_replica_counts_under_each_master_by_its_channel() -> None:
    replica = instance_snapshot(
        "db:3",
        {
            "channels": [
                {"master": "db:1"},
                {"name": "s2", "master": "db:2", "io": "Connecting"},
            ]
        },
    )
    snaps = [instance_snapshot("db:1", {}), instance_snapshot("db:2", {"ok": False}), replica]
    results = {str(a.key): a for a in analyze(snaps, now=NOW, include_no_problem=True)}
    assert results["db:1"].count_valid_replicating_replicas == 1
    assert results["db:2"].code is AnalysisCode.DEAD_MASTER
    assert results["db:2"].replicas == (key("db:3"),)


# --- errant GTIDs: MySQL ------------------------------------------------------------------------

intervals = st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=4)


def _gtid_text(uuid: str, ranges: list[tuple[int, int]]) -> str:
    return uuid + "".join(f":{start}-{start + length}" for start, length in ranges)


@settings(max_examples=100, deadline=None)
@given(intervals, st.integers(0, 100))
def test_mysql_replica_behind_its_master_is_never_errant(
    ranges: list[tuple[int, int]], cut: int
) -> None:
    master_text = _gtid_text(UUID_M, ranges)
    end = min(start + length for start, length in ranges)
    replica_text = f"{UUID_M}:1-{max(1, min(cut, end))}" if cut else ""
    master = instance_snapshot("db:1", {"gtid_executed": master_text, "server_uuid": UUID_M})
    replica = instance_snapshot(
        "db:2", {"master": "db:1", "gtid_executed": replica_text or master_text}
    )
    assert find_errant(replica, [master]) is None


@settings(max_examples=100, deadline=None)
@given(intervals, intervals)
def test_mysql_replica_own_transactions_are_errant(
    master_ranges: list[tuple[int, int]], own_ranges: list[tuple[int, int]]
) -> None:
    master_text = _gtid_text(UUID_M, master_ranges)
    own_text = _gtid_text(UUID_R, own_ranges)
    master = instance_snapshot("db:1", {"gtid_executed": master_text, "server_uuid": UUID_M})
    replica = instance_snapshot(
        "db:2", {"master": "db:1", "gtid_executed": f"{master_text},{own_text}"}
    )
    found = find_errant(replica, [master])
    assert found is not None
    assert GtidSet.parse(found.gtids) == GtidSet.parse(own_text)


def test_mysql_transactions_the_master_purged_are_not_errant() -> None:
    # gtid_purged is part of gtid_executed: the master still "had" them.
    master = instance_snapshot("db:1", {"gtid_executed": f"{UUID_M}:1-100", "server_uuid": UUID_M})
    replica = instance_snapshot("db:2", {"master": "db:1", "gtid_executed": f"{UUID_M}:1-40"})
    assert find_errant(replica, [master]) is None


def test_mysql_skew_from_an_upstream_server_is_not_errant() -> None:
    third = "00000000-0000-0000-0000-000000000003"
    top = instance_snapshot("db:9", {"gtid_executed": f"{third}:1-10", "server_uuid": third})
    middle = instance_snapshot(
        "db:1", {"master": "db:9", "gtid_executed": f"{third}:1-10", "server_uuid": UUID_M}
    )
    replica = instance_snapshot("db:2", {"master": "db:1", "gtid_executed": f"{third}:1-12"})
    assert find_errant(replica, [middle], upstream=[top]) is None
    assert find_errant(replica, [middle]) is not None


# --- errant GTIDs: MariaDB ----------------------------------------------------------------------

MARIA = "10.11.6-MariaDB-log"
domains = st.dictionaries(st.integers(0, 3), st.integers(1, 1000), min_size=1, max_size=4)


def _maria(key_text: str, position: str, **fields: Any) -> InstanceSnapshot:
    return instance_snapshot(key_text, {"version": MARIA, "gtid_binlog_pos": position, **fields})


@settings(max_examples=100, deadline=None)
@given(domains, st.data())
def test_mariadb_replica_behind_or_equal_is_never_errant(
    master_seqs: dict[int, int], data: st.DataObject
) -> None:
    master_pos = ",".join(f"{d}-1-{seq}" for d, seq in sorted(master_seqs.items()))
    replica_seqs = {d: data.draw(st.integers(1, seq)) for d, seq in master_seqs.items()}
    # The replica's last GTIDs in each domain come from the master (server 1) or a local write.
    servers = {d: data.draw(st.sampled_from([1, 2])) for d in replica_seqs}
    replica_pos = ",".join(
        f"{d}-{servers[d]}-{seq}"
        for d, seq in sorted(replica_seqs.items())
        if not (servers[d] == 2 and seq == master_seqs[d])
    )
    master = _maria("db:1", master_pos, server_id=1)
    replica = _maria("db:2", replica_pos, master="db:1", server_id=2)
    assert find_errant(replica, [master]) is None


@settings(max_examples=100, deadline=None)
@given(domains, st.integers(0, 5), st.integers(1, 50))
def test_mariadb_replica_ahead_with_its_own_writes_is_errant(
    master_seqs: dict[int, int], domain: int, extra: int
) -> None:
    master_pos = ",".join(f"{d}-1-{seq}" for d, seq in sorted(master_seqs.items()))
    replica_seqs = {**master_seqs, domain: master_seqs.get(domain, 0) + extra}
    replica_pos = ",".join(
        f"{d}-{2 if d == domain else 1}-{seq}" for d, seq in sorted(replica_seqs.items())
    )
    master = _maria("db:1", master_pos, server_id=1)
    replica = _maria("db:2", replica_pos, master="db:1", server_id=2)
    found = find_errant(replica, [master])
    assert found is not None
    assert found.gtids == f"{domain}-2-{replica_seqs[domain]}"


def test_mariadb_ahead_with_the_masters_own_gtids_is_not_errant() -> None:
    master = _maria("db:1", "0-1-100", server_id=1)
    replica = _maria("db:2", "0-1-103", master="db:1", server_id=2)
    assert find_errant(replica, [master]) is None


def test_mariadb_same_sequence_from_another_server_is_errant() -> None:
    master = _maria("db:1", "0-1-100", server_id=1)
    replica = _maria("db:2", "0-2-100", master="db:1", server_id=2)
    found = find_errant(replica, [master])
    assert found is not None
    assert found.gtids == "0-2-100"


def test_mariadb_replica_without_binlog_uses_its_current_pos() -> None:
    master = _maria("db:1", "0-1-100", server_id=1)
    replica = instance_snapshot(
        "db:2",
        {"version": MARIA, "master": "db:1", "log_bin": False, "gtid_current_pos": "0-1-99"},
    )
    assert find_errant(replica, [master]) is None


def test_errant_gtids_are_recorded_in_the_analysis() -> None:
    snaps = [
        _maria("db:1", "0-1-100", server_id=1, using_gtid="Slave_Pos"),
        _maria("db:2", "0-1-100,5-2-7", master="db:1", server_id=2, using_gtid="Slave_Pos"),
    ]
    result = verdict(snaps)
    assert StructureWarning.ERRANT_GTID in result.structure
    assert result.errant_gtids == {key("db:2"): "5-2-7"}
    assert result.max_replica_gtid_errant == "5-2-7"
    assert any("5-2-7" in line for line in result.evidence)


# --- semi-sync history ---------------------------------------------------------------------------


def test_track_binlog_coordinates_keeps_the_first_time_it_saw_them() -> None:
    first = instance_snapshot("db:1", {"coordinates": "bin.000001:100", "checked": -30})
    moved = instance_snapshot("db:1", {"coordinates": "bin.000001:200", "checked": -10})
    same = instance_snapshot("db:1", {"coordinates": "bin.000001:200"})
    failed = instance_snapshot("db:1", {"coordinates": "bin.000001:300", "ok": False})
    history = track_binlog_coordinates({}, [first])
    history = track_binlog_coordinates(history, [moved])
    history = track_binlog_coordinates(history, [same])
    history = track_binlog_coordinates(history, [failed])
    assert history == {
        key("db:1"): CoordinatesSeen(
            coordinates=Coordinates(file="bin.000001", position=200),
            since=NOW - timedelta(seconds=10),
        )
    }


def test_locked_semi_sync_master_needs_coordinates_stuck_long_enough() -> None:
    semi = {
        "master_enabled": True,
        "master_status": True,
        "master_wait_for_replica_count": 1,
        "master_clients": 0,
    }
    snaps = star({"semi_sync": semi, "coordinates": "bin.000001:100"}, {})
    stuck = {
        key(MASTER): CoordinatesSeen(
            coordinates=Coordinates(file="bin.000001", position=100),
            since=NOW - timedelta(seconds=11),
        )
    }
    assert verdict(snaps).code is AnalysisCode.LOCKED_SEMI_SYNC_MASTER_HYPOTHESIS
    locked = verdict(snaps, binlog_history=stuck)
    assert locked.code is AnalysisCode.LOCKED_SEMI_SYNC_MASTER
    assert locked.is_actionable


# --- orchestrator's JSON -------------------------------------------------------------------------


def test_orchestrator_json_has_the_fields_and_types_of_the_sample() -> None:
    result = verdict(star({}, {}, {"auto_position": False}))
    produced = result.to_orchestrator_json()
    assert set(produced) == {*SAMPLE_FIELDS, "StructureAnalysis"}
    assert set(produced["ClusterDetails"]) == SAMPLE_CLUSTER_FIELDS
    for name, kind in SAMPLE_FIELDS.items():
        assert type(produced[name]) is kind, name
    assert produced["Analysis"] == "NoProblem"
    assert produced["StructureAnalysis"] == ["NoFailoverSupportStructureWarning"]
    assert produced["AnalyzedInstanceKey"] == {"Hostname": "db", "Port": 1}
    assert [r["Port"] for r in produced["Replicas"]] == [2, 3]
    json.dumps(produced)


def test_no_problem_rows_are_left_out_unless_asked_for() -> None:
    snaps = star({}, {}, {})
    assert analyze(snaps, now=NOW) == []
    every = analyze(snaps, now=NOW, include_no_problem=True)
    assert [str(a.key) for a in every] == ["db:1", "db:2", "db:3"]
    assert all(a.code is AnalysisCode.NO_PROBLEM and a.description == "" for a in every)


def test_every_code_has_a_description() -> None:
    for code in AnalysisCode:
        if code is not AnalysisCode.NO_PROBLEM:
            assert code.description


def test_nothing_is_errant_when_a_master_state_is_unknown() -> None:
    mysql_master = instance_snapshot("db:1", {"server_uuid": UUID_M})  # no gtid_executed
    mysql_replica = instance_snapshot("db:2", {"master": "db:1", "gtid_executed": f"{UUID_R}:1-5"})
    assert find_errant(mysql_replica, [mysql_master]) is None
    known = _maria("db:1", "0-1-100", server_id=1)
    unknown = instance_snapshot("db:3", {"version": MARIA, "ok": False})
    replica = _maria("db:2", "0-1-100,1-3-7", master="db:1", server_id=2)
    assert find_errant(replica, [known, unknown]) is None


def test_a_multi_source_replica_of_an_undiscovered_master_is_not_judged() -> None:
    replica = _maria(
        "db:2",
        "0-1-100,1-7-40",
        server_id=2,
        channels=[{"master": "db:1"}, {"name": "s2", "master": "db:7"}],
        using_gtid="Slave_Pos",
    )
    snaps = [_maria("db:1", "0-1-100", server_id=1, using_gtid="Slave_Pos"), replica]
    assert StructureWarning.ERRANT_GTID not in verdict(snaps).structure
    assert verdict(snaps).errant_gtids == {}


DEADISH = {code for code in AnalysisCode if code.value.startswith(("Dead", "Unreachable"))}


@settings(max_examples=150, deadline=None)
@given(st.lists(replica_state, min_size=0, max_size=4), replica_state)
def test_a_reachable_instance_is_never_called_dead_or_unreachable(
    replicas: list[dict[str, Any]], master: dict[str, Any]
) -> None:
    result = verdict(star({"ok": master["ok"]}, *replicas))
    if master["ok"]:
        assert result.code not in DEADISH
        assert result.last_check_valid
    else:
        assert not result.last_check_valid


def test_an_analysis_is_immutable() -> None:
    result = verdict(star({}, {}))
    with pytest.raises(AttributeError):
        result.code = AnalysisCode.DEAD_MASTER  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.errant_gtids[key("db:2")] = "x"  # type: ignore[index]
