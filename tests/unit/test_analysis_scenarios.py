"""Golden analysis scenarios: every ``tests/scenarios/analysis/*.json`` run through ``analyze``.

Most scenarios port orchestrator's integration cases (``tests/integration/analysis-*``) onto the
same fixture, ``_orchestrator-fixture.json``: master ``testhost:22293`` with replicas ``22294``
(itself the master of ``22295``), ``22296`` (no binary log) and ``22297``. The rest are cases
orchestrator never had (MariaDB GTID, multi-source, hung probes).

A scenario file, in a terse form (every key optional except ``expect``)::

    {
      "description": "what happens",
      "origin": "orchestrator analysis-dead-master" | "new",
      "base": "orchestrator-fixture",          # start from _<base>.json's instances
      "defaults": {...},                       # instance fields for every instance
      "instances": {"testhost:22293": {...}},  # merged over the base, field by field
      "remove": ["testhost:22296"],
      "downtimed": {"testhost:22295": 3600},   # seconds from now until the downtime ends
      "maintenance": ["testhost:22297"],
      "binlog_unchanged": {"testhost:22293": 20},  # seconds the coordinates have not moved
      "options": {"recover_non_writeable_master": true, "include_downtimed": false,
                  "recovery_ignore_hostname_filters": ["^backup-"]},
      "expect": [{"key": "...", "code": "DeadMaster", "structure": [...],
                  "skippable": true, "errant": {"testhost:22297": "..."}}]
    }

Instance fields: ``master`` (key or null), ``io``/``sql`` (``Yes``, ``No``, ``Connecting``),
``io_error``, ``lag``, ``sql_delay``, ``using_gtid``, ``auto_position``, or ``channels`` (a list
of those plus ``name``, for multi-source); ``ok``, ``partial``, ``timed_out``, ``error``,
``checked``/``seen``/``attempted`` (seconds relative to now; ``seen`` defaults to ``checked``
when ``ok``, else a minute earlier); ``version``, ``log_bin``, ``log_slave_updates``,
``binlog_format``, ``read_only``, ``server_id``, ``server_uuid``, ``gtid_mode``,
``gtid_executed``, ``gtid_binlog_pos``, ``gtid_current_pos``, ``semi_sync`` (``SemiSync``
fields), ``coordinates`` (``file:pos``), ``dc``.

Expectations are exact: the set of (key, code, structure warnings) returned must equal the
``expect`` list, and ``skippable``/``errant`` are checked where given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator_shared.analysis import (
    AnalysisCode,
    AnalysisOptions,
    CoordinatesSeen,
    StructureWarning,
    analyze,
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

pytestmark = pytest.mark.unit

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "analysis"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

_CHANNEL_FIELDS = frozenset(
    {"name", "master", "io", "sql", "io_error", "lag", "sql_delay", "using_gtid", "auto_position"}
)


def _at(offset: float) -> datetime:
    return NOW + timedelta(seconds=offset)


def _channel(fields: Mapping[str, Any]) -> ReplicationChannel:
    io = str(fields.get("io", "Yes"))
    sql = str(fields.get("sql", "Yes"))
    lag = fields.get("lag", 0)
    running = io == "Yes" and sql == "Yes"
    return ReplicationChannel(
        name=str(fields.get("name", "")),
        master_key=str(fields["master"]),
        io_running=io,
        sql_running=sql,
        io_thread=ThreadState.from_status(io),
        sql_thread=ThreadState.from_status(sql),
        last_io_error=str(fields.get("io_error", "")),
        seconds_behind_master=lag if running else None,
        sql_delay=int(fields.get("sql_delay", 0)),
        using_gtid=str(fields.get("using_gtid", "")),
        auto_position=bool(fields.get("auto_position", False)),
    )


def instance_snapshot(key: str, fields: Mapping[str, Any]) -> InstanceSnapshot:
    """An ``InstanceSnapshot`` from the terse scenario form (see the module docstring)."""
    ok = bool(fields.get("ok", True))
    checked = float(fields.get("checked", 0))
    default_seen = checked if ok else checked - 60
    seen = fields.get("seen", default_seen)
    probe = ProbeFacts(
        ok=ok,
        partial=bool(fields.get("partial", False)),
        timed_out=bool(fields.get("timed_out", False)),
        error=str(fields.get("error", "" if ok else "Can't connect to MySQL server")),
        checked_at=_at(checked),
        attempted_at=_at(float(fields.get("attempted", checked))),
        last_seen_at=None if seen is None else _at(float(seen)),
    )
    if "channels" in fields:
        inherited = {k: fields[k] for k in ("using_gtid", "auto_position") if k in fields}
        channels = tuple(_channel({**inherited, **channel}) for channel in fields["channels"])
    elif fields.get("master"):
        channels = (_channel({k: v for k, v in fields.items() if k in _CHANNEL_FIELDS}),)
    else:
        channels = ()
    version = str(fields.get("version", ""))
    primary_lag = channels[0].seconds_behind_master if channels else None
    coordinates = fields.get("coordinates")
    self_coordinates = None
    if coordinates:
        log_file, position = str(coordinates).rsplit(":", 1)
        self_coordinates = Coordinates(file=log_file, position=int(position))
    return InstanceSnapshot(
        key=key,
        probe=probe,
        server_id=int(fields.get("server_id", InstanceKey.parse(key).port)),
        server_uuid=str(fields.get("server_uuid", "")),
        version=version,
        flavor=Flavor.MARIADB if "mariadb" in version.lower() else Flavor.MYSQL,
        read_only=bool(fields.get("read_only", False)),
        log_bin=bool(fields.get("log_bin", True)),
        log_slave_updates=bool(fields.get("log_slave_updates", True)),
        binlog_format=str(fields.get("binlog_format", "ROW")),
        self_coordinates=self_coordinates,
        gtid_binlog_pos=str(fields.get("gtid_binlog_pos", "")),
        gtid_current_pos=str(fields.get("gtid_current_pos", "")),
        gtid_mode=str(fields.get("gtid_mode", "")),
        gtid_executed=str(fields.get("gtid_executed", "")),
        semi_sync=SemiSync(**fields.get("semi_sync", {})),
        channels=channels,
        data_center=str(fields.get("dc", "")),
        replication_lag_seconds=primary_lag,
    )


def load_scenario(path: Path) -> dict[str, Any]:
    scenario: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    instances: dict[str, dict[str, Any]] = {}
    defaults: dict[str, Any] = {}
    if "base" in scenario:
        base = json.loads((path.parent / f"_{scenario['base']}.json").read_text(encoding="utf-8"))
        defaults.update(base.get("defaults", {}))
        instances.update({key: dict(fields) for key, fields in base["instances"].items()})
    defaults.update(scenario.get("defaults", {}))
    for key, fields in scenario.get("instances", {}).items():
        instances.setdefault(key, {}).update(fields)
    for key in scenario.get("remove", []):
        instances.pop(key)
    scenario["snapshots"] = [
        instance_snapshot(key, {**defaults, **fields}) for key, fields in instances.items()
    ]
    return scenario


def run_scenario(scenario: Mapping[str, Any]) -> list[dict[str, Any]]:
    option_fields = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in scenario.get("options", {}).items()
    }
    include_downtimed = bool(option_fields.pop("include_downtimed", True))
    options = AnalysisOptions(**option_fields)
    results = analyze(
        scenario["snapshots"],
        now=NOW,
        downtimed={
            InstanceKey.parse(key): _at(seconds)
            for key, seconds in scenario.get("downtimed", {}).items()
        },
        maintenance=frozenset(InstanceKey.parse(key) for key in scenario.get("maintenance", [])),
        binlog_history={
            InstanceKey.parse(key): CoordinatesSeen(
                coordinates=snap.self_coordinates or Coordinates(), since=_at(-seconds)
            )
            for key, seconds in scenario.get("binlog_unchanged", {}).items()
            for snap in scenario["snapshots"]
            if snap.key == key
        },
        options=options,
        include_downtimed=include_downtimed,
    )
    return [
        {
            "key": str(result.key),
            "code": result.code.value,
            "structure": [warning.value for warning in result.structure],
            "skippable": result.skippable_due_to_downtime,
            "errant": {str(key): gtids for key, gtids in result.errant_gtids.items()},
        }
        for result in results
    ]


def _scenario_files() -> list[Path]:
    return sorted(path for path in SCENARIOS.glob("*.json") if not path.name.startswith("_"))


def test_there_are_scenarios() -> None:
    assert len(_scenario_files()) >= 40


@pytest.mark.parametrize("path", _scenario_files(), ids=lambda path: path.stem)
def test_scenario(path: Path) -> None:
    scenario = load_scenario(path)
    got = run_scenario(scenario)
    expected = scenario["expect"]
    for item in expected:  # the files name real codes and warnings
        AnalysisCode(item["code"])
        for warning in item.get("structure", []):
            StructureWarning(warning)

    def summary(items: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
        return {(item["key"], item["code"], frozenset(item.get("structure", []))) for item in items}

    assert summary(got) == summary(expected), scenario.get("description", "")
    by_key = {item["key"]: item for item in got}
    for item in expected:
        actual = by_key[item["key"]]
        if "skippable" in item:
            assert actual["skippable"] is item["skippable"]
        if "errant" in item:
            assert actual["errant"] == item["errant"]
