"""The pure parts of maintenance locks and tags: who a lock keeps out, the lock's JSON and
orchestrator's answer, durations, the instances an operation touches; tag strings and
searches (orchestrator's tagged-00..09 and untag rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_adapters.etcd import KeyValue
from orchestrator_api.store.tags import (
    Tag,
    TagError,
    parse_tag,
    parse_tags,
    tagged,
    untag_scope,
)
from orchestrator_recovery.operations.maintenance import (
    Lock,
    blocking,
    parse_duration,
    request_keys,
)
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)
KEY = InstanceKey.parse("db1:3306")


def lock(owner: str = "alice", *, ends_in: float | None = 600, lock_id: int = 7) -> Lock:
    ends_at = None if ends_in is None else NOW + timedelta(seconds=ends_in)
    return Lock(KEY, owner, "disk swap", begins_at=NOW, ends_at=ends_at, lock_id=lock_id)


def test_an_active_lock_keeps_out_everyone_but_its_owner() -> None:
    assert blocking([lock()], "bob", NOW) == lock()
    assert blocking([lock()], "alice", NOW) is None
    assert blocking([lock(ends_in=-1)], "bob", NOW) is None  # expired counts as absent
    assert blocking([lock(ends_in=None)], "bob", NOW) is None  # an operation's: not here
    assert blocking([], "bob", NOW) is None


def test_refusal_names_owner_reason_and_end() -> None:
    assert lock().describe() == (
        "db1:3306 is in maintenance (alice, disk swap, until 2026-11-25 17:10:00 UTC)"
    )
    busy = Lock(KEY, "bob", "relocate", begins_at=NOW)
    assert busy.transient
    assert busy.describe() == (
        "db1:3306 is busy: relocate requested by bob is running (since 2026-11-25 17:00:00 UTC)"
    )


def test_lock_round_trips_through_etcd_json_and_answers_as_orchestrator() -> None:
    entry = KeyValue(b"/x/db1:3306", lock().to_json(), 42, 42, 0)
    read = Lock.from_entry(KEY, entry)
    assert read == lock(lock_id=42)
    transient = Lock(KEY, "bob", "relocate", begins_at=NOW)
    assert Lock.from_entry(KEY, KeyValue(b"k", transient.to_json(), 5, 5, 0)).ends_at is None
    assert read.answer(NOW + timedelta(seconds=90)) == {
        "MaintenanceId": 42,
        "Key": {"Hostname": "db1", "Port": 3306},
        "BeginTimestamp": "2026-11-25 17:00:00",
        "SecondsElapsed": 90,
        "IsActive": True,
        "Owner": "alice",
        "Reason": "disk swap",
    }
    assert read.answer(NOW + timedelta(hours=1))["IsActive"] is False
    with pytest.raises(ValueError, match="not a JSON object"):
        Lock.from_entry(KEY, KeyValue(b"k", b"[1]", 1, 1, 0))


def test_duration_argument() -> None:
    default = timedelta(minutes=10)
    assert parse_duration({}, default) == default
    assert parse_duration({"duration": " "}, default) == default
    assert parse_duration({"duration": "90"}, default) == timedelta(seconds=90)
    for bad in ("0", "-5", "10m", "x"):
        with pytest.raises(OperationRefused, match="bad duration"):
            parse_duration({"duration": bad}, default)


def test_maintenance_expire_minutes_setting() -> None:
    assert Settings().MaintenanceExpireMinutes == 10
    assert Settings(MaintenanceExpireMinutes=60).MaintenanceExpireMinutes == 60
    for bad in (0, -1, 43201):
        with pytest.raises(ValueError, match="MaintenanceExpireMinutes"):
            Settings(MaintenanceExpireMinutes=bad)


def test_an_operation_touches_its_instance_and_destination_once() -> None:
    both = CommandRequest(operation="relocate", instance="b:1", destination="a:1")
    assert request_keys(both) == [InstanceKey.parse("a:1"), InstanceKey.parse("b:1")]
    same = CommandRequest(operation="relocate", instance="a:1", destination="a:1")
    assert request_keys(same) == [InstanceKey.parse("a:1")]
    assert request_keys(CommandRequest(operation="x", instance="a:b:c")) == []
    assert request_keys(CommandRequest(operation="x")) == []


# --- tags -----------------------------------------------------------------------------------


def test_tag_strings() -> None:
    assert parse_tag("role") == Tag("role")
    assert parse_tag(" role=backup ") == Tag("role", "backup", has_value=True)
    assert parse_tag("role=") == Tag("role", "", has_value=True)
    assert parse_tag("~role") == Tag("role", negate=True)
    assert parse_tag("!role=backup") == Tag("role", "backup", has_value=True, negate=True)
    assert parse_tag("url=a=b") == Tag("url", "a=b", has_value=True)
    assert str(Tag("candidate")) == "candidate="
    assert (Tag("candidate").display, Tag("role", "backup").display) == ("candidate", "role=backup")
    for bad in ("", "=x", "~", "~~role", "  "):
        with pytest.raises(TagError):
            parse_tag(bad)
    with pytest.raises(TagError, match="no tag given"):
        parse_tags("")


FLEET = {
    InstanceKey.parse(f"testhost:{port}"): tags
    for port, tags in {
        22293: {"role": "backup"},
        22294: {"role": "delayed"},
        22295: {"role": ""},
        22296: {"role": "backup", "candidate": ""},
        22297: {"candidate": ""},
    }.items()
}


@pytest.mark.parametrize(
    ("search", "ports"),
    [
        ("role", [22293, 22294, 22295, 22296]),
        ("role=backup", [22293, 22296]),
        ("candidate", [22296, 22297]),
        ("role=", [22295]),
        ("~role", [22297]),
        ("role,candidate", [22296]),
        ("role,~candidate", [22293, 22294, 22295]),
        ("role=backup,candidate", [22296]),
        ("role=delayed,candidate", []),
        ("~role=backup", [22294, 22295]),
    ],
)
def test_tagged_searches_as_orchestrator(search: str, ports: list[int]) -> None:
    assert [key.port for key in tagged(FLEET, parse_tags(search))] == ports


def test_untag_rules() -> None:
    untag_scope(KEY, Tag("role"))
    untag_scope(None, Tag("role", "backup", has_value=True))
    with pytest.raises(TagError, match="negation"):
        untag_scope(KEY, Tag("role", negate=True))
    with pytest.raises(TagError, match="either indicate an instance or a tag value"):
        untag_scope(None, Tag("role"))
