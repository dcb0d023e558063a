"""Pure parts of the coordinator: keys, status from keys, metrics, events, the fencing check."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrator_adapters.etcd import KeyValue, prefix_range_end
from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_coordinator.observer import ElectionStatus, status_from_keys
from orchestrator_coordinator.publisher import leader_event
from orchestrator_coordinator.web import why_not_ready
from orchestrator_shared.bus import LeaderEvent, LeaderIdentity, Subjects
from orchestrator_shared.etcd.leadership import (
    LeadershipKeys,
    decode_elected_at,
    decode_identity,
    encode_leader,
    encode_member,
)
from tests.integration.coordinator_support import check_fencing

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = LeaderIdentity(id="alice", host="db-ops-1", pid=101, started_at=NOW)
BOB = LeaderIdentity(id="bob", host="db-ops-2", pid=202, started_at=NOW)
KEYS = LeadershipKeys("/orchestrator")


def kv(key: bytes, value: bytes, create_revision: int) -> KeyValue:
    return KeyValue(key, value, create_revision, create_revision, lease=7)


def test_keys_follow_the_design() -> None:
    assert KEYS.leader == b"/orchestrator/recovery/leader"
    assert KEYS.member("alice") == b"/orchestrator/recovery/members/alice"
    assert LeadershipKeys("/ha/prod").root == b"/ha/prod/recovery/"


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/orchestrator/recovery/") == b"/orchestrator/recovery0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


def test_leader_value_is_the_identity_plus_election_time() -> None:
    elected = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
    value = encode_leader(ALICE, elected)
    assert set(json.loads(value)) == {"id", "host", "pid", "started_at", "elected_at"}
    assert decode_identity(value) == ALICE
    assert decode_elected_at(value) == elected
    assert decode_identity(b"written by hand") is None
    assert decode_elected_at(encode_member(ALICE)) is None


def test_ready_needs_etcd_first_then_nats() -> None:
    reachable = status_from_keys(KEYS, [], endpoint="http://etcd:2379", now=NOW)
    down = ElectionStatus(
        leader=None,
        fencing_token=0,
        since=None,
        members=(),
        etcd_reachable=False,
        etcd_endpoint="http://etcd:2379",
        checked_at=None,
        etcd_error="connection refused",
    )
    assert why_not_ready(reachable, nats_connected=True) == ""
    assert why_not_ready(reachable, nats_connected=False) == "not connected to NATS"
    assert why_not_ready(down, nats_connected=False) == "etcd unreachable"  # no error text


def test_status_from_keys() -> None:
    elected = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
    status = status_from_keys(
        KEYS,
        [
            kv(KEYS.leader, encode_leader(BOB, elected), 41),
            kv(KEYS.member("bob"), encode_member(BOB), 40),
            kv(KEYS.member("alice"), encode_member(ALICE), 39),
            kv(KEYS.member("junk"), b"{", 38),
        ],
        endpoint="http://e1:2379",
        now=NOW,
    )
    assert status.leader == BOB
    assert status.fencing_token == 41
    assert status.since == elected
    assert [member.id for member in status.members] == ["alice", "bob"]
    assert status.members_unparsable == ("/orchestrator/recovery/members/junk",)
    document = status.to_json()
    assert document["leader"]["id"] == "bob"
    assert document["fencing_token"] == 41
    assert document["etcd"] == {"reachable": True, "endpoint": "http://e1:2379", "error": ""}


def test_status_without_a_leader() -> None:
    status = status_from_keys(
        KEYS, [kv(KEYS.member("alice"), encode_member(ALICE), 3)], endpoint="e", now=NOW
    )
    assert status.leader is None
    assert status.fencing_token == 0
    assert status.to_json()["leader"] is None


def test_metrics_count_leader_changes() -> None:
    metrics = CoordinatorMetrics()
    nobody = ElectionStatus(None, 0, None, (), False, "e", None, "not checked yet")
    first = status_from_keys(
        KEYS, [kv(KEYS.leader, encode_member(ALICE), 5)], endpoint="e", now=NOW
    )
    second = status_from_keys(KEYS, [kv(KEYS.leader, encode_member(BOB), 9)], endpoint="e", now=NOW)
    metrics.observe(nobody, first)  # the first observation is not a change
    metrics.observe(first, first)
    metrics.observe(first, second)

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert value("orchestrator_coordinator_leader_changes_total") == 1
    assert value("orchestrator_coordinator_fencing_token") == 9
    assert value("orchestrator_coordinator_leader_present") == 1
    assert value("orchestrator_coordinator_etcd_reachable") == 1


def test_leader_event_round_trip() -> None:
    elected = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
    status = status_from_keys(
        KEYS, [kv(KEYS.leader, encode_leader(ALICE, elected), 12)], endpoint="e", now=NOW
    )
    event = leader_event(status, reporter="coord:1")
    document = json.loads(event.to_json())
    assert document["schema"] == 1
    assert document["fencing_token"] == 12
    assert document["leader"]["id"] == "alice"
    assert LeaderEvent.model_validate_json(event.to_json()) == event
    assert Subjects().leader == "orchestrator.v1.leader"
    assert Subjects().leader in Subjects().events


def action(worker: str, token: int, start: float, end: float) -> dict[str, object]:
    return {
        "kind": "action",
        "worker": worker,
        "token": token,
        "guard_started": start,
        "acted_at": end,
    }


def test_fencing_check_accepts_handovers_and_rejects_overlaps() -> None:
    fine = [action("a", 5, 1.0, 1.1), action("a", 5, 1.2, 1.3), action("b", 9, 2.0, 2.1)]
    report = check_fencing(fine)
    assert (report.actions, report.tokens, report.leaders) == (3, 2, 2)
    with pytest.raises(AssertionError, match="overlapped"):
        check_fencing([action("a", 5, 1.0, 2.5), action("b", 9, 2.0, 2.1)])
    with pytest.raises(AssertionError, match="overlapped"):  # an older token acting later
        check_fencing([action("b", 9, 1.0, 1.1), action("a", 5, 2.0, 2.1)])
    with pytest.raises(AssertionError, match="several workers"):
        check_fencing([action("a", 5, 1.0, 1.1), action("b", 5, 2.0, 2.1)])
