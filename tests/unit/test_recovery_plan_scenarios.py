"""Golden recovery-planning scenarios: every ``tests/scenarios/plan/*.json`` through the planner.

A scenario, in a terse form (every key optional except ``failed``, ``replicas`` and
``expect``)::

    {
      "description": "what happens",
      "kind": "master" | "intermediate",          # default "master"
      "defaults": {...},                          # server fields for every server
      "failed": {"key": "db1:3306", ...},         # the dead master / intermediate master
      "replicas": {"db2:3306": {...}},            # its replicas; "master" defaults to failed
      "master": {"key": "db0:3306", ...},         # intermediate: the failed one's master
      "siblings": {"db5:3306": {...}},            # intermediate: "master" defaults to master
      "candidates": {"db3:3306": "prefer"},       # registered promotion rules
      "options": {...},                           # PlanOptions fields; filters default ["*"]
      "cluster": "...", "cluster_alias": "...",   # cluster defaults to the failed key
      "requested": "db3:3306", "forced": false,
      "expect": {
        "successor": "db3:3306", "repoint": [...], "must_catch_up": true,
        "moves": {"db2:3306": "db5:3306"},        # intermediate
        "refusal": "substring of the reason", "code": "data-loss",
        "lost": [...], "rejected": [...],         # exact sets of keys
        "reasons": {"db2:3306": "substring"}      # of the key's rejected or lost reason
      }
    }

Server fields: ``ok``, ``error``, ``master`` (key or null), ``io``/``sql`` (``Yes``, ``No``,
``Connecting``), ``sql_delay``, ``lag``, ``using_gtid``, ``auto_position``, ``gtid_io_pos``,
``retrieved``, ``read``/``exec`` (``file:pos`` of the master's binlog), ``version``,
``log_bin``, ``log_slave_updates``, ``server_id`` (default: the port), ``server_uuid``, ``gtid``
(MariaDB: both ``gtid_binlog_pos`` and ``gtid_current_pos``), ``gtid_binlog_pos``,
``gtid_current_pos``, ``gtid_slave_pos``, ``gtid_executed``, ``dc``, ``region``,
``promotion_rule``, ``semi_sync_master``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    MasterPlan,
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
    plan_intermediate_master_recovery,
    plan_master_recovery,
)
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

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "plan"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MARIADB = "10.11.6-MariaDB-log"


def _coordinates(text: object) -> Coordinates | None:
    if not text:
        return None
    log_file, position = str(text).rsplit(":", 1)
    return Coordinates(file=log_file, position=int(position))


def server(key: str, fields: Mapping[str, Any] | None = None, **more: Any) -> InstanceSnapshot:
    """An ``InstanceSnapshot`` from the terse scenario form (see the module docstring)."""
    data = {**(fields or {}), **more}
    ok = bool(data.get("ok", True))
    probe = ProbeFacts(
        ok=ok,
        error=str(data.get("error", "" if ok else "Can't connect to MySQL server")),
        checked_at=NOW,
        attempted_at=NOW,
        last_seen_at=NOW if ok else None,
    )
    version = str(data.get("version", MARIADB))
    is_maria = "mariadb" in version.lower()
    channels: tuple[ReplicationChannel, ...] = ()
    if data.get("master"):
        io = str(data.get("io", "Yes"))
        sql = str(data.get("sql", "Yes"))
        lag = data.get("lag")
        channels = (
            ReplicationChannel(
                master_key=str(data["master"]),
                io_running=io,
                sql_running=sql,
                io_thread=ThreadState.from_status(io),
                sql_thread=ThreadState.from_status(sql),
                seconds_behind_master=lag,
                sql_delay=int(data.get("sql_delay", 0)),
                using_gtid=str(data.get("using_gtid", "Slave_Pos" if is_maria else "")),
                auto_position=bool(data.get("auto_position", not is_maria)),
                gtid_io_pos=str(data.get("gtid_io_pos", "")),
                retrieved_gtid_set=str(data.get("retrieved", "")),
                read_coordinates=_coordinates(data.get("read")),
                exec_coordinates=_coordinates(data.get("exec", data.get("read"))),
            ),
        )
    gtid = str(data.get("gtid", ""))
    return InstanceSnapshot(
        key=key,
        probe=probe,
        server_id=int(data.get("server_id", InstanceKey.parse(key).port)),
        server_uuid=str(data.get("server_uuid", "")),
        version=version,
        flavor=Flavor.MARIADB if is_maria else Flavor.MYSQL,
        log_bin=bool(data.get("log_bin", True)),
        log_slave_updates=bool(data.get("log_slave_updates", True)),
        binlog_format="ROW",
        gtid_binlog_pos=str(data.get("gtid_binlog_pos", gtid)),
        gtid_current_pos=str(data.get("gtid_current_pos", gtid)),
        gtid_slave_pos=str(data.get("gtid_slave_pos", "")),
        gtid_mode="ON" if not is_maria else "",
        gtid_executed=str(data.get("gtid_executed", "")),
        semi_sync=SemiSync(master_enabled=bool(data.get("semi_sync_master", False))),
        channels=channels,
        data_center=str(data.get("dc", "")),
        region=str(data.get("region", "")),
        promotion_rule=str(data.get("promotion_rule", "")),
        replication_lag_seconds=data.get("lag"),
    )


def _servers(
    group: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any], master: str | None
) -> list[InstanceSnapshot]:
    return [server(key, {**defaults, "master": master, **fields}) for key, fields in group.items()]


def run_scenario(scenario: Mapping[str, Any]) -> MasterPlan | RelocationPlan | Refusal:
    defaults = dict(scenario.get("defaults", {}))
    failed_fields = dict(scenario["failed"])
    failed_key = str(failed_fields.pop("key"))
    option_fields: dict[str, Any] = {
        "recover_master_cluster_filters": ["*"],
        "recover_intermediate_master_cluster_filters": ["*"],
        **scenario.get("options", {}),
    }
    for name, value in option_fields.items():
        if isinstance(value, list):
            option_fields[name] = tuple(value)
    options = PlanOptions(**option_fields)
    candidates = {
        InstanceKey.parse(key): PromotionRule(rule)
        for key, rule in scenario.get("candidates", {}).items()
    }
    cluster = str(scenario.get("cluster", failed_key))
    forced = bool(scenario.get("forced", False))
    replicas = _servers(scenario["replicas"], defaults, failed_key)
    if scenario.get("kind", "master") == "intermediate":
        master_fields = dict(scenario.get("master", {}))
        master_key = master_fields.pop("key", None)
        master = server(str(master_key), {**defaults, **master_fields}) if master_key else None
        failed = server(failed_key, {**defaults, "master": master_key, **failed_fields})
        return plan_intermediate_master_recovery(
            failed,
            replicas,
            siblings=_servers(scenario.get("siblings", {}), defaults, master_key),
            master=master,
            cluster=cluster,
            cluster_alias=str(scenario.get("cluster_alias", "")),
            candidates=candidates,
            options=options,
            forced=forced,
        )
    failed = server(failed_key, {**defaults, **failed_fields})
    requested = scenario.get("requested")
    return plan_master_recovery(
        failed,
        replicas,
        cluster=cluster,
        cluster_alias=str(scenario.get("cluster_alias", "")),
        candidates=candidates,
        options=options,
        requested=InstanceKey.parse(requested) if requested else None,
        forced=forced,
    )


def check_expectations(
    result: MasterPlan | RelocationPlan | Refusal, expect: Mapping[str, Any]
) -> None:
    shown = result.describe()
    if "refusal" in expect:
        assert isinstance(result, Refusal), shown
        assert expect["refusal"] in result.reason, shown
        if "code" in expect:
            assert result.code is RefusalCode(expect["code"])
    elif "moves" in expect:
        assert isinstance(result, RelocationPlan), shown
        got = {str(replica): str(target) for replica, target in result.moves}
        assert got == expect["moves"], shown
    else:
        assert isinstance(result, MasterPlan), shown
        assert str(result.successor) == expect["successor"], (shown, dict(result.rejected))
        if "repoint" in expect:
            assert sorted(str(key) for key in result.repoint) == sorted(expect["repoint"])
        if "must_catch_up" in expect:
            assert result.successor_must_catch_up is expect["must_catch_up"]
        if "postponed" in expect:
            postponed = {str(key): why for key, why in result.postponed.items()}
            assert sorted(postponed) == sorted(expect["postponed"]), shown
            for key, text in expect["postponed"].items():
                assert text in postponed[key], (key, postponed[key])
    if "lost" in expect:
        assert not isinstance(result, Refusal)
        assert sorted(str(key) for key in result.lost) == sorted(expect["lost"]), shown
    if "rejected" in expect:
        assert sorted(str(key) for key in result.rejected) == sorted(expect["rejected"]), shown
    lost: Mapping[InstanceKey, str] = {} if isinstance(result, Refusal) else result.lost
    for key, text in expect.get("reasons", {}).items():
        instance = InstanceKey.parse(key)
        reasons = [result.rejected.get(instance, ""), lost.get(instance, "")]
        assert any(text in reason for reason in reasons), (key, reasons)
    json.dumps(result.to_dict())  # JSON-able for events and audit


def _scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def test_there_are_scenarios() -> None:
    assert len(_scenario_files()) >= 16


@pytest.mark.parametrize("path", _scenario_files(), ids=lambda path: path.stem)
def test_scenario(path: Path) -> None:
    scenario = json.loads(path.read_text(encoding="utf-8"))
    check_expectations(run_scenario(scenario), scenario["expect"])
