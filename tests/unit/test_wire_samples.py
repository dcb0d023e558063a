"""Our wire shapes against real orchestrator responses (``tests/fixtures/orchestrator``).

The snapshots below reproduce the captured 4-node MariaDB 10.11 cluster (ports 22306-22309,
alias ``sb``) as discovery would have published it at capture time. For every sample the test
checks the same keys in the same order (ours may add :data:`EXTRA_FIELDS`), the same JSON type
of every value, recursively, and equal values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator_api.wire import (
    EXTRA_FIELDS,
    Downtime,
    cluster_info_json,
    error_envelope,
    instance_json,
    instance_key_json,
    ok_envelope,
    topology_envelope,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    Coordinates,
    Flavor,
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    SemiSync,
    ThreadState,
)
from orchestrator_shared.topology import Cluster, build_topology

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "orchestrator"
VERSION = "10.11.19-MariaDB-0+deb12u1-log"
LAST_SEEN = datetime(2026, 11, 25, 17, 0, 12, tzinfo=UTC)
POLL_SECONDS = 5.0
MASTER = 22306


def load_sample(name: str) -> Any:
    path = SAMPLES / name
    if not path.is_file():
        pytest.fail(f"orchestrator API sample {path} is missing (tests/fixtures/orchestrator)")
    return json.loads(path.read_text())


# --- the "same shape" assertion ---------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise AssertionError(f"{value!r} is not a JSON value")


def shape_differences(
    actual: Any, expected: Any, *, extra: frozenset[str] = frozenset(), path: str = "$"
) -> list[str]:
    """Where ``actual`` differs from ``expected`` in keys (and their order) or JSON types.

    Objects may hold keys named in ``extra`` besides the expected ones. Arrays are compared
    element by element against the expected element at the same index, or its first element
    when ``actual`` is longer; an empty expected array says nothing about element types.
    """
    actual_type, expected_type = json_type(actual), json_type(expected)
    if actual_type != expected_type:
        return [f"{path}: {actual_type} where orchestrator has {expected_type}"]
    problems: list[str] = []
    if isinstance(actual, dict):
        ours = [key for key in actual if key not in extra or key in expected]
        if ours != list(expected):
            missing = [key for key in expected if key not in actual]
            unexpected = [key for key in ours if key not in expected]
            problems.append(
                f"{path}: keys differ (missing {missing}, unexpected {unexpected}, "
                "or another order)"
            )
        for key in expected:
            if key in actual:
                problems += shape_differences(
                    actual[key], expected[key], extra=extra, path=f"{path}.{key}"
                )
    elif isinstance(actual, list) and expected:
        for index, item in enumerate(actual):
            model = expected[index] if index < len(expected) else expected[0]
            problems += shape_differences(item, model, extra=extra, path=f"{path}[{index}]")
    return problems


def assert_same_shape(actual: Any, expected: Any, *, extra: frozenset[str] = frozenset()) -> None:
    problems = shape_differences(as_json(actual), expected, extra=extra)
    assert not problems, "\n".join(problems)


def as_json(value: Any) -> Any:
    """What a client receives: the value through ``json.dumps``/``json.loads``."""
    return json.loads(json.dumps(value))


def without_extras(instance: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in instance.items() if key not in EXTRA_FIELDS}


def test_shape_helper_finds_type_key_and_order_differences() -> None:
    expected = {"A": 1, "B": {"Int64": 0, "Valid": False}, "C": [{"Port": 1}]}
    assert shape_differences({"A": 2, "B": {"Int64": 5, "Valid": True}, "C": []}, expected) == []
    assert shape_differences({"A": True, "B": {"Int64": 0, "Valid": 0}, "C": []}, expected) == [
        "$.A: bool where orchestrator has int",
        "$.B.Valid: int where orchestrator has bool",
    ]
    assert shape_differences({"B": {"Int64": 0, "Valid": False}, "A": 1, "C": []}, expected)
    assert shape_differences({"A": 1, "C": []}, expected)
    assert shape_differences({**expected, "X": 1}, expected)
    assert shape_differences({**expected, "X": 1}, expected, extra=frozenset({"X"})) == []
    assert shape_differences({**expected, "C": [{"Port": "1"}]}, expected) == [
        "$.C[0].Port: string where orchestrator has int"
    ]


# --- the sampled cluster -------------------------------------------------------------------------

_UPTIME = {22306: 23, 22307: 23, 22308: 22, 22309: 22}
_LATENCY = {22306: 0.011216498, 22307: 0.002460787, 22308: 0.010866901, 22309: 0.003771660}


def sampled_snapshot(port: int) -> InstanceSnapshot:
    is_master = port == MASTER
    channels: tuple[ReplicationChannel, ...] = ()
    if not is_master:
        channels = (
            ReplicationChannel(
                master_key=f"127.0.0.1:{MASTER}",
                master_user="repl",
                io_running="Yes",
                sql_running="Yes",
                io_thread=ThreadState.RUNNING,
                sql_thread=ThreadState.RUNNING,
                read_coordinates=Coordinates(file="bin.000001", position=977),
                exec_coordinates=Coordinates(file="bin.000001", position=977),
                relay_coordinates=Coordinates(file="pid-relay-bin.000002", position=1270),
                seconds_behind_master=0,
                master_server_id=100,
                using_gtid="Slave_Pos",
                gtid_io_pos="0-100-3",
            ),
        )
    return InstanceSnapshot(
        key=f"127.0.0.1:{port}",
        probe=ProbeFacts(
            ok=True,
            checked_at=LAST_SEEN,
            attempted_at=LAST_SEEN - timedelta(milliseconds=20),
            last_seen_at=LAST_SEEN,
            latency_seconds=_LATENCY[port],
        ),
        server_id=port - 22306 + 100,
        hostname="vm",
        version=VERSION,
        version_comment="Debian 12",
        flavor=Flavor.MARIADB,
        read_only=not is_master,
        log_bin=True,
        log_slave_updates=True,
        binlog_format="ROW",
        uptime_seconds=_UPTIME[port],
        self_coordinates=Coordinates(file="bin.000001", position=977),
        gtid_domain_id=0,
        gtid_binlog_pos="0-100-3",
        gtid_current_pos="0-100-3",
        gtid_slave_pos="" if is_master else "0-100-3",
        semi_sync=SemiSync(
            available=True, master_timeout_ms=10000, master_wait_for_replica_count=0
        ),
        channels=channels,
        replica_keys=tuple(f"127.0.0.1:{p}" for p in (22307, 22308, 22309)) if is_master else (),
        suggested_cluster_alias="sb",
        replication_lag_seconds=None if is_master else 0,
    )


def sampled_cluster() -> Cluster:
    topology = build_topology(sampled_snapshot(port) for port in (22306, 22307, 22308, 22309))
    return topology.clusters[f"127.0.0.1:{MASTER}"]


def instances_json(cluster: Cluster, *, now: datetime, **kwargs: Any) -> list[dict[str, Any]]:
    return [
        instance_json(node, cluster, now=now, poll_seconds=POLL_SECONDS, **kwargs)
        for node in sorted(cluster.instances.values(), key=lambda node: node.key)
    ]


ONE_SECOND_LATER = LAST_SEEN + timedelta(seconds=1, milliseconds=400)


@pytest.mark.parametrize("sample", ["all-instances.json", "cluster.json"])
def test_all_instances_field_for_field(sample: str) -> None:
    expected = load_sample(sample)
    ours = instances_json(sampled_cluster(), now=ONE_SECOND_LATER)
    assert_same_shape(ours, expected, extra=EXTRA_FIELDS)
    assert [without_extras(item) for item in as_json(ours)] == expected


def test_instance_field_for_field() -> None:
    cluster = sampled_cluster()
    node = cluster.instances[InstanceKey("127.0.0.1", 22307)]
    ours = instance_json(node, cluster, now=ONE_SECOND_LATER, poll_seconds=POLL_SECONDS)
    expected = load_sample("instance.json")
    assert_same_shape(ours, expected, extra=EXTRA_FIELDS)
    assert without_extras(as_json(ours)) == expected
    assert ours["GtidSlavePos"] == "0-100-3"
    assert ours["UsingGtid"] == "Slave_Pos"


def test_master_and_replicas_samples() -> None:
    cluster = sampled_cluster()
    ours = instances_json(cluster, now=ONE_SECOND_LATER)
    assert without_extras(as_json(ours[0])) == load_sample("master.json")
    assert [without_extras(item) for item in as_json(ours[1:])] == load_sample(
        "instance-replicas.json"
    )
    # masters and search were answered a second later
    two_seconds_later = LAST_SEEN + timedelta(seconds=2)
    later = [
        without_extras(item) for item in as_json(instances_json(cluster, now=two_seconds_later))
    ]
    assert [later[0]] == load_sample("masters.json")
    assert [later[2]] == load_sample("search.json")


def test_downtimed_sample_shape_and_downtime_fields() -> None:
    expected = load_sample("downtimed.json")
    begun = datetime(2026, 11, 25, 17, 0, 17, tzinfo=UTC)
    downtime = Downtime(
        key=InstanceKey("127.0.0.1", 22309),
        owner="ceo",
        reason="testing",
        begins_at=begun,
        ends_at=begun + timedelta(minutes=10),
    )
    cluster = sampled_cluster()
    node = cluster.instances[InstanceKey("127.0.0.1", 22309)]
    ours = instance_json(
        node, cluster, now=begun + timedelta(seconds=1), poll_seconds=600, downtime=downtime
    )
    assert_same_shape([ours], expected, extra=EXTRA_FIELDS)
    fields = [
        *("IsDowntimed", "DowntimeReason", "DowntimeOwner", "DowntimeEndTimestamp"),
        *("ElapsedDowntime", "PromotionRule", "IsCandidate", "Key", "Problems"),
    ]
    assert {name: ours[name] for name in fields} == {name: expected[0][name] for name in fields}


# --- clusters ------------------------------------------------------------------------------------


def test_cluster_info_samples() -> None:
    info = cluster_info_json(
        sampled_cluster(),
        has_automated_master_recovery=True,
        has_automated_intermediate_master_recovery=True,
    )
    assert_same_shape(info, load_sample("cluster-info.json"))
    assert info == load_sample("cluster-info.json")
    assert [info] == load_sample("clusters-info.json")


@pytest.mark.parametrize(
    ("sample", "tabulated"), [("topology.json", False), ("topology-tabulated.json", True)]
)
def test_topology_envelope_samples(sample: str, tabulated: bool) -> None:
    ours = topology_envelope(
        sampled_cluster(), now=ONE_SECOND_LATER, poll_seconds=POLL_SECONDS, tabulated=tabulated
    )
    assert ours == load_sample(sample)


# --- envelopes ---------------------------------------------------------------------------------


def test_error_envelope_samples() -> None:
    assert error_envelope("Cannot read instance: 127.0.0.1:99999") == load_sample(
        "error-bad-instance.json"
    )
    sample = load_sample("error-unknown-cluster.json")
    assert_same_shape(
        error_envelope("Unable to determine cluster name. clusterHint=nosuch"), sample
    )


@pytest.mark.parametrize(
    ("sample", "message", "port"),
    [
        ("begin-downtime.json", "Downtime begun: 127.0.0.1:22309", 22309),
        ("end-downtime.json", "Downtime ended: 127.0.0.1:22309", 22309),
        ("register-candidate.json", "Registered candidate", 22308),
    ],
)
def test_ok_envelope_samples(sample: str, message: str, port: int) -> None:
    details = instance_key_json(InstanceKey("127.0.0.1", port))
    assert ok_envelope(message, details) == load_sample(sample)
