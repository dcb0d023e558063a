"""orchestrator's small JSON values, Go time texts and the response envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrator_api.wire import (
    LogType,
    ResponseCode,
    binlog_coordinates_json,
    cluster_name_alias_json,
    envelope,
    error_envelope,
    go_quote_ascii,
    instance_key_json,
    instance_keys_json,
    null_int64,
    ok_envelope,
)
from orchestrator_api.wire.timefmt import (
    go_datetime,
    nanoseconds,
    rfc3339,
    whole_seconds_between,
)
from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Coordinates, InstanceSnapshot, ProbeFacts
from orchestrator_shared.topology import build_topology

pytestmark = pytest.mark.unit

MOMENT = datetime(2026, 11, 25, 17, 0, 12, 987_000, tzinfo=UTC)


def test_go_datetime_and_rfc3339_in_utc_whole_seconds() -> None:
    assert go_datetime(MOMENT) == "2026-11-25 17:00:12"
    assert rfc3339(MOMENT) == "2026-11-25T17:00:12Z"
    plus_two = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert go_datetime(plus_two) == "2026-11-25 17:00:12"
    assert rfc3339(plus_two) == "2026-11-25T17:00:12Z"
    assert go_datetime(MOMENT.replace(tzinfo=None)) == "2026-11-25 17:00:12"
    assert go_datetime(None) == rfc3339(None) == ""


def test_durations_are_nanoseconds() -> None:
    assert nanoseconds(timedelta(seconds=1)) == 1_000_000_000
    assert nanoseconds(0.002460787) == 2_460_787
    assert nanoseconds(0) == 0


def test_whole_seconds_truncate_both_ends() -> None:
    assert whole_seconds_between(MOMENT, MOMENT + timedelta(milliseconds=20)) == 1
    assert whole_seconds_between(MOMENT, MOMENT + timedelta(milliseconds=10)) == 0
    assert whole_seconds_between(MOMENT, MOMENT - timedelta(seconds=3)) == -3


def test_instance_keys() -> None:
    assert instance_key_json(InstanceKey("db1", 3306)) == {"Hostname": "db1", "Port": 3306}
    assert instance_key_json(InstanceKey.parse("[::1]:3307")) == {"Hostname": "::1", "Port": 3307}
    assert instance_key_json(None) == {"Hostname": "", "Port": 0}
    keys = [InstanceKey("b", 1), InstanceKey("a", 2), InstanceKey("a", 1), InstanceKey("b", 1)]
    assert instance_keys_json(keys) == [
        {"Hostname": "a", "Port": 1},
        {"Hostname": "a", "Port": 2},
        {"Hostname": "b", "Port": 1},
    ]


def test_binlog_coordinates() -> None:
    assert binlog_coordinates_json(Coordinates(file="bin.000002", position=4)) == {
        "LogFile": "bin.000002",
        "LogPos": 4,
        "Type": 0,
    }
    relay = binlog_coordinates_json(BinlogCoordinates("relay.000003", 99), LogType.RELAY_LOG)
    assert relay == {"LogFile": "relay.000003", "LogPos": 99, "Type": 1}
    assert binlog_coordinates_json(None, LogType.RELAY_LOG) == {
        "LogFile": "",
        "LogPos": 0,
        "Type": 1,
    }


def test_null_int64() -> None:
    assert null_int64(None) == {"Int64": 0, "Valid": False}
    assert null_int64(0) == {"Int64": 0, "Valid": True}
    assert null_int64(42) == {"Int64": 42, "Valid": True}


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("", ""),
        ("plain", '"plain"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("line\nnext\ttab\x07", '"line\\nnext\\ttab\\a"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("café", '"caf\\u00e9"'),
        ("😀", '"\\U0001f600"'),
    ],
)
def test_go_quote_ascii(text: str, quoted: str) -> None:
    assert go_quote_ascii(text) == quoted


def test_envelopes() -> None:
    assert envelope("OK", "done") == {"Code": "OK", "Message": "done", "Details": None}
    assert ok_envelope("done", [1]) == {"Code": "OK", "Message": "done", "Details": [1]}
    assert error_envelope("bad") == {"Code": "ERROR", "Message": "bad", "Details": None}
    assert envelope(ResponseCode.ERROR, "x")["Code"] == "ERROR"
    assert json.dumps(envelope(ResponseCode.OK, "m")) == (
        '{"Code": "OK", "Message": "m", "Details": null}'
    )
    with pytest.raises(ValueError, match="WARNING"):
        envelope("WARNING", "no such code")


def test_cluster_name_alias() -> None:
    checked = datetime(2026, 11, 25, tzinfo=UTC)
    facts = ProbeFacts(ok=True, checked_at=checked, attempted_at=checked, last_seen_at=checked)
    snapshot = InstanceSnapshot(key="db1:3306", probe=facts, suggested_cluster_alias="main")
    cluster = build_topology([snapshot]).clusters["db1:3306"]
    assert cluster_name_alias_json(cluster) == {"ClusterName": "db1:3306", "ClusterAlias": "main"}
