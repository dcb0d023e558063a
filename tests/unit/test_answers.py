"""Encoded instance and cluster answers: reused while nothing they show changes, and exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_api.http.payloads import InstanceAnswers, instance_payload
from orchestrator_api.store.view import FleetView
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Downtime
from orchestrator_shared.snapshot import InstanceSnapshot, ProbeFacts, ReplicationChannel
from orchestrator_shared.topology import update_topology

pytestmark = pytest.mark.unit

SEEN = datetime(2026, 11, 25, 12, 0, 0, 300_000, tzinfo=UTC)  # .3 s into a second
POLL = 5.0


def snap(port: int, master: int | None = None, *, seen: datetime = SEEN) -> InstanceSnapshot:
    channels = (ReplicationChannel(master_key=f"db:{master}"),) if master else ()
    return InstanceSnapshot(
        key=f"db:{port}",
        server_uuid=f"uuid-{port}",
        probe=ProbeFacts(ok=True, checked_at=seen, attempted_at=seen, last_seen_at=seen),
        read_only=master is not None,
        channels=channels,
    )


def fleet() -> FleetView:
    snapshots = [snap(1), snap(2, 1), snap(3, 2)]
    return FleetView({s.instance_key: s for s in snapshots}, {})


def decoded(body: bytes) -> object:
    return json.loads(body)


def test_an_instance_answer_is_what_the_route_builds_and_is_reused() -> None:
    view, answers = fleet(), InstanceAnswers()
    node = view.instance(InstanceKey("db", 3))
    assert node is not None
    now = SEEN + timedelta(seconds=2.5)
    first = answers.instance(view, node, now=now, poll=POLL)
    assert decoded(first) == instance_payload(view, node, now=now, poll=POLL)
    assert answers.instance(view, node, now=now + timedelta(seconds=0.4), poll=POLL) is first


def test_seconds_since_last_seen_ticks_at_the_instance_own_moment() -> None:
    view, answers = fleet(), InstanceAnswers()
    node = view.instance(InstanceKey("db", 1))
    assert node is not None

    def seen_ago(now: datetime) -> object:
        body = decoded(answers.instance(view, node, now=now, poll=POLL))
        assert isinstance(body, dict)
        return body["SecondsSinceLastSeen"]

    # exact at any moment: whole seconds since last seen, not since the wall clock's second
    assert seen_ago(SEEN + timedelta(seconds=2.99)) == {"Int64": 2, "Valid": True}
    assert seen_ago(SEEN + timedelta(seconds=3.0)) == {"Int64": 3, "Valid": True}
    assert seen_ago(SEEN + timedelta(seconds=3.69)) == {"Int64": 3, "Valid": True}
    # validity follows the clock too: 6 s without a check is past the poll of 5 s
    body = decoded(answers.instance(view, node, now=SEEN + timedelta(seconds=6), poll=POLL))
    assert isinstance(body, dict) and body["IsUpToDate"] is False


def test_a_cluster_answer_changes_with_a_member_and_keeps_the_rest() -> None:
    view, answers = fleet(), InstanceAnswers()
    now = SEEN + timedelta(seconds=1)
    before = answers.cluster(view, "db:1", now=now, poll=POLL)
    assert [i["Key"]["Port"] for i in decoded(before)] == [1, 2, 3]  # type: ignore[index,union-attr]
    assert answers.cluster(view, "db:1", now=now, poll=POLL) is before
    # a new snapshot of one member (same shape): a new cluster answer with its new facts
    newer = snap(3, 2, seen=SEEN + timedelta(milliseconds=200)).model_copy(
        update={"server_uuid": "uuid-3-restarted"}
    )
    snapshots = {**view.snapshots, newer.instance_key: newer}
    after_view = view.with_snapshots(
        snapshots, update_topology(view.topology, snapshots, [newer.instance_key])
    )
    after = answers.cluster(after_view, "db:1", now=now, poll=POLL)
    members = decoded(after)
    assert isinstance(members, list)
    assert members[2]["ServerUUID"] == "uuid-3-restarted"
    assert members[:2] == decoded(before)[:2]  # type: ignore[index]
    # and it is what encoding each member afresh gives
    fresh = [
        instance_payload(after_view, after_view.cluster_instances("db:1")[i], now=now, poll=POLL)
        for i in range(2)
    ]
    assert members[:2] == fresh


def test_downtime_shows_at_once() -> None:
    view, answers = fleet(), InstanceAnswers()
    now = SEEN + timedelta(seconds=1)
    before = answers.cluster(view, "db:1", now=now, poll=POLL)
    downtime = Downtime(
        key=InstanceKey("db", 2),
        owner="ops",
        reason="disk",
        begins_at=SEEN,
        ends_at=SEEN + timedelta(hours=1),
    )
    downtimed = FleetView(view.snapshots, {}, downtime=[downtime], topology=view.topology)
    after = decoded(answers.cluster(downtimed, "db:1", now=now, poll=POLL))
    assert isinstance(after, list)
    assert [i["IsDowntimed"] for i in after] == [False, True, False]
    assert decoded(before) != after
