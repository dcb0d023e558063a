"""orchestrator's recovery settings (issue 10), their pure side: how each is read from a
configuration, and the decisions it changes (semi-sync replicas, the catch-up rule, the
takeover's choice, what the worker is configured with). The planner's side is in the golden
scenarios (``tests/scenarios/plan/promotion-ignore-*``, ``postponed-*``), the analysis' in
``tests/scenarios/analysis/recovery-ignore-*``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator_recovery import sql
from orchestrator_recovery.failover.catch_up import ApplyWatch, CatchUpMode, CatchUpPolicy
from orchestrator_recovery.hooks import (
    HookContext,
    HookStage,
    hook_environment,
    substitute_placeholders,
)
from orchestrator_recovery.wiring import plan_options, semi_sync_mode
from orchestrator_shared.analysis import AnalysisOptions
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    PlanOptions,
    Refusal,
    RefusalCode,
    SemiSyncMode,
    SemiSyncPlan,
    matching_hostname_filter,
    plan_semi_sync_replicas,
)
from orchestrator_shared.recovery.takeover import choose_takeover_successor
from orchestrator_shared.snapshot import InstanceSnapshot, SemiSync
from tests.unit.test_config_orchestrator_keys import load
from tests.unit.test_recovery_plan_scenarios import server
from tests.unit.test_recovery_sql import MARIADB, MYSQL, status

pytestmark = pytest.mark.unit


def key(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


# --- configuration -----------------------------------------------------------------------------


def test_the_settings_have_orchestrators_defaults() -> None:
    settings = Settings()
    assert settings.RecoveryIgnoreHostnameFilters == ()
    assert settings.PromotionIgnoreHostnameFilters == ()
    assert settings.PostponeReplicaRecoveryOnLagMinutes == 0
    assert settings.DelayMasterPromotionIfSQLThreadNotUpToDate is False
    assert settings.FailMasterPromotionIfSQLThreadNotUpToDate is False
    assert settings.ReasonableReplicationLagSeconds == 10
    assert settings.ApplyMySQLPromotionAfterMasterFailover is True
    assert settings.DetachLostReplicasAfterMasterFailover is True
    assert settings.EnforceExactSemiSyncReplicas is False
    assert settings.RecoverLockedSemiSyncMaster is False
    assert settings.PostTakeMasterProcesses == ()


def test_an_orchestrator_file_sets_them_legacy_names_included(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            "RecoveryIgnoreHostnameFilters": ["^test-"],
            "PromotionIgnoreHostnameFilters": ["backup"],
            "PostponeSlaveRecoveryOnLagMinutes": 5,
            "DelayMasterPromotionIfSQLThreadNotUpToDate": True,
            "ApplyMySQLPromotionAfterMasterFailover": False,
            "DetachLostSlavesAfterMasterFailover": False,
            "EnforceExactSemiSyncReplicas": True,
            "PostTakeMasterProcesses": ["echo took"],
        },
    ).settings
    assert settings.RecoveryIgnoreHostnameFilters == ("^test-",)
    assert settings.PostponeReplicaRecoveryOnLagMinutes == 5
    assert settings.DetachLostReplicasAfterMasterFailover is False
    assert settings.PostTakeMasterProcesses == ("echo took",)
    # what the recovery worker is given
    options = plan_options(settings)
    assert options.promotion_ignore_hostname_filters == ("backup",)
    assert options.postpone_limit_seconds == 300
    assert semi_sync_mode(settings) is SemiSyncMode.EXACT
    assert CatchUpPolicy.from_settings(settings) == CatchUpPolicy(
        mode=CatchUpMode.DELAY, timeout=10.0, stall=10.0
    )
    analysis = AnalysisOptions.from_settings(settings)
    assert analysis.recovery_ignore_hostname_filters == ("^test-",)
    assert analysis.enforce_exact_semi_sync_replicas is True


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {
                "DelayMasterPromotionIfSQLThreadNotUpToDate": True,
                "FailMasterPromotionIfSQLThreadNotUpToDate": True,
            },
            "DelayMasterPromotionIfSQLThreadNotUpToDate: cannot be true together with "
            "FailMasterPromotionIfSQLThreadNotUpToDate",
        ),
        (
            {"PromotionIgnoreHostnameFilters": ["db[1-"]},
            "PromotionIgnoreHostnameFilters: expected a regular expression, 'db[1-' is not one",
        ),
        (
            {"RecoveryIgnoreHostnameFilters": "^db"},
            "RecoveryIgnoreHostnameFilters: expected a JSON list",
        ),
        ({"PostponeReplicaRecoveryOnLagMinutes": -1}, "PostponeReplicaRecoveryOnLagMinutes"),
        ({"ReasonableReplicationLagSeconds": -1}, "ReasonableReplicationLagSeconds"),
        ({"RecoverLockedSemiSyncMaster": "maybe"}, "RecoverLockedSemiSyncMaster"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, document)
    text = str(raised.value)
    assert text.startswith(message.split(":", maxsplit=1)[0]) and message in text
    assert "\n" not in text


def test_the_modes_follow_orchestrators_precedence(tmp_path: Path) -> None:
    assert semi_sync_mode(Settings()) is None
    assert semi_sync_mode(Settings(RecoverLockedSemiSyncMaster=True)) is SemiSyncMode.AT_LEAST
    both = Settings(RecoverLockedSemiSyncMaster=True, EnforceExactSemiSyncReplicas=True)
    assert semi_sync_mode(both) is SemiSyncMode.EXACT
    assert CatchUpPolicy.from_settings(Settings()).mode is CatchUpMode.BOUNDED
    failing = Settings(FailMasterPromotionIfSQLThreadNotUpToDate=True)
    assert CatchUpPolicy.from_settings(failing).mode is CatchUpMode.FAIL


def test_host_name_filters_search_the_host_only() -> None:
    assert matching_hostname_filter(["^db", "backup"], "db-7.example") == "^db"
    assert matching_hostname_filter(["backup"], "east-backup-1") == "backup"
    assert matching_hostname_filter(["3306"], "db1") is None  # the port is not matched
    assert matching_hostname_filter(["", "(bad"], "db1") is None
    assert matching_hostname_filter([], "db1") is None


# --- the takeover's successor ------------------------------------------------------------------


def test_a_graceful_takeover_never_picks_or_accepts_a_promotion_ignored_replica() -> None:
    master = server("db1:3301", {"gtid": "0-3301-100"})
    replicas = [
        server("backup-db2:3302", {"master": "db1:3301", "gtid": "0-3301-100"}),
        server("db3:3303", {"master": "db1:3301", "gtid": "0-3301-100"}),
    ]
    options = PlanOptions(promotion_ignore_hostname_filters=("^backup-",))
    auto = choose_takeover_successor(master, replicas, options=options, candidates={})
    assert auto.successor == key("db3:3303")  # the smaller key would have won otherwise
    assert "PromotionIgnoreHostnameFilters ('^backup-')" in auto.rejected[key("backup-db2:3302")]
    designated = choose_takeover_successor(
        master, replicas, options=options, candidates={}, requested=key("backup-db2:3302")
    )
    assert designated.successor is None
    assert designated.reason == (
        "backup-db2:3302 cannot be promoted: host name matches PromotionIgnoreHostnameFilters "
        "('^backup-')"
    )


# --- semi-sync replicas ------------------------------------------------------------------------

MASTER = "db1:3301"


def semi_master(*, clients: int, wait: int = 1) -> InstanceSnapshot:
    semi = SemiSync(
        available=True,
        master_enabled=True,
        master_status=True,
        master_clients=clients,
        master_wait_for_replica_count=wait,
    )
    return server(MASTER, {"gtid": "0-3301-100"}).model_copy(update={"semi_sync": semi})


def semi_replica(name: str, *, on: bool = False, running: bool | None = None, **fields: Any) -> Any:
    semi = SemiSync(
        available=True, replica_enabled=on, replica_status=on if running is None else running
    )
    snap = server(name, {"master": MASTER, "gtid": "0-3301-100", **fields})
    return snap.model_copy(update={"semi_sync": semi})


def semi_plan(
    master: InstanceSnapshot,
    replicas: list[InstanceSnapshot],
    mode: SemiSyncMode,
    *,
    options: PlanOptions | None = None,
    candidates: dict[InstanceKey, PromotionRule] | None = None,
) -> SemiSyncPlan | Refusal:
    return plan_semi_sync_replicas(
        master,
        replicas,
        cluster=MASTER,
        mode=mode,
        options=options or PlanOptions(),
        candidates=candidates or {},
    )


def test_a_locked_master_gets_just_enough_semi_sync_replicas_best_ranked_first() -> None:
    replicas = [
        semi_replica("db2:3302"),
        semi_replica("db3:3303", promotion_rule="prefer"),
        semi_replica("db4:3304"),
        semi_replica("db5:3305", promotion_rule="must_not"),
    ]
    plan = semi_plan(semi_master(clients=0, wait=2), replicas, SemiSyncMode.AT_LEAST)
    assert isinstance(plan, SemiSyncPlan)
    assert plan.enable == (key("db3:3303"), key("db2:3302"))  # prefer first, then the key
    assert plan.disable == ()
    assert plan.reasons[key("db4:3304")] == "left async: enough semi-sync replicas"
    assert "must_not" in plan.reasons[key("db5:3305")]
    assert not plan.is_reached(1) and plan.is_reached(2) and plan.is_reached(3)
    assert plan.describe() == (
        "cluster db1:3301: semi-sync replicas of db1:3301: at least 2 (it counts 0); "
        "enable on db3:3303, db2:3302"
    )
    json.dumps(plan.to_dict())


def test_enough_counts_what_the_master_has_and_restarts_an_enabled_but_idle_replica() -> None:
    replicas = [
        semi_replica("db2:3302", on=True),  # acknowledging already
        semi_replica("db3:3303", on=True, running=False),  # enabled, its IO thread not restarted
        semi_replica("db4:3304"),
    ]
    plan = semi_plan(semi_master(clients=1, wait=2), replicas, SemiSyncMode.AT_LEAST)
    assert isinstance(plan, SemiSyncPlan)
    assert plan.enable == (key("db3:3303"),)
    assert plan.reasons[key("db2:3302")] == "kept: a semi-sync replica already"


def test_exact_keeps_the_best_and_turns_the_others_off() -> None:
    replicas = [
        semi_replica("db2:3302", on=True),
        semi_replica("db3:3303", on=True, promotion_rule="prefer"),
        semi_replica("db4:3304", on=True),
        semi_replica("backup-db5:3305", on=True),
        semi_replica("db6:3306", on=True, sql_delay=3600),
    ]
    options = PlanOptions(promotion_ignore_hostname_filters=("^backup-",))
    plan = semi_plan(semi_master(clients=5, wait=1), replicas, SemiSyncMode.EXACT, options=options)
    assert isinstance(plan, SemiSyncPlan)
    assert plan.enable == ()
    assert set(plan.disable) == {
        key("db2:3302"),
        key("db4:3304"),
        key("backup-db5:3305"),
        key("db6:3306"),
    }
    assert plan.reasons[key("db3:3303")].startswith("kept: one of the 1 best")
    assert "PromotionIgnoreHostnameFilters" in plan.reasons[key("backup-db5:3305")]
    assert "delayed" in plan.reasons[key("db6:3306")]
    assert plan.is_reached(1) and not plan.is_reached(2)


def test_exact_enables_first_the_best_missing_one() -> None:
    replicas = [semi_replica("db2:3302"), semi_replica("db3:3303", on=True)]
    rules = {key("db2:3302"): PromotionRule.MUST}  # a registered rule wins
    plan = semi_plan(semi_master(clients=1), replicas, SemiSyncMode.EXACT, candidates=rules)
    assert isinstance(plan, SemiSyncPlan)
    assert (plan.enable, plan.disable) == ((key("db2:3302"),), (key("db3:3303"),))


def test_replicas_not_replicating_or_unreachable_are_left_alone_and_may_leave_nothing() -> None:
    replicas = [
        semi_replica("db2:3302", io="Connecting"),
        semi_replica("db3:3303", ok=False),
        semi_replica("db4:3304", promotion_rule="must_not"),
    ]
    refused = semi_plan(semi_master(clients=0), replicas, SemiSyncMode.AT_LEAST)
    assert isinstance(refused, Refusal)
    assert refused.code is RefusalCode.NO_SEMI_SYNC_CHANGE
    assert refused.reason.startswith(
        "no replica of db1:3301 can be changed to give it at least 1 semi-sync replicas"
    )
    assert (
        "is not replicating (IO thread Connecting, SQL thread Yes): left as it is"
        in (refused.rejected[key("db2:3302")])
    )
    assert "unreachable" in refused.rejected[key("db3:3303")]


# --- the successor's relay log (catch_up) ------------------------------------------------------

BEHIND = status(Gtid_IO_Pos="0-1-20", Gtid_Slave_Pos="0-1-10")
APPLIED = status(Gtid_IO_Pos="0-1-20", Gtid_Slave_Pos="0-1-20")


def looks(watch: ApplyWatch, position: str, now: float) -> sql.Check:
    current = status(Gtid_IO_Pos="0-1-20", Gtid_Slave_Pos=position)
    return watch.verdict(
        sql.applied_check(MARIADB, current), sql.applied_marker(MARIADB, current), now
    )


def test_bounded_waits_until_the_timeout() -> None:
    watch = ApplyWatch(CatchUpPolicy(timeout=3.0), started=100.0)
    assert looks(watch, "0-1-10", 102.9).progress is sql.Progress.WAITING
    refused = looks(watch, "0-1-10", 103.0)
    assert refused.progress is sql.Progress.FAILED
    assert refused.detail.startswith("the successor could not apply its relay log within 3s")
    assert looks(ApplyWatch(CatchUpPolicy(), started=0.0), "0-1-20", 50.0).progress is (
        sql.Progress.DONE
    )


def test_fail_refuses_at_the_first_look_that_is_not_up_to_date() -> None:
    policy = CatchUpPolicy(mode=CatchUpMode.FAIL, timeout=60.0)
    refused = looks(ApplyWatch(policy, started=0.0), "0-1-10", 0.0)
    assert refused.progress is sql.Progress.FAILED
    assert "FailMasterPromotionIfSQLThreadNotUpToDate refuses rather than wait" in refused.detail
    assert looks(ApplyWatch(policy, started=0.0), "0-1-20", 0.0).progress is sql.Progress.DONE


def test_delay_waits_while_the_sql_thread_progresses_and_refuses_when_it_stalls() -> None:
    policy = CatchUpPolicy(mode=CatchUpMode.DELAY, timeout=1.0, stall=10.0, limit=1000.0)
    watch = ApplyWatch(policy, started=0.0)
    # slow but moving: far beyond the bounded timeout, still waiting
    for second, position in enumerate(("0-1-11", "0-1-12", "0-1-13"), start=1):
        assert looks(watch, position, second * 9.0).progress is sql.Progress.WAITING
    assert looks(watch, "0-1-13", 36.9).progress is sql.Progress.WAITING
    stalled = looks(watch, "0-1-13", 37.0)  # 10 s after the last move (at 27 s)
    assert stalled.progress is sql.Progress.FAILED
    assert "made no progress for 10s (ReasonableReplicationLagSeconds" in stalled.detail
    limited = ApplyWatch(dataclasses.replace(policy, limit=20.0), started=0.0)
    for second in range(1, 20):
        looks(limited, f"0-1-{second}", float(second))
    ended = looks(limited, "0-1-19", 20.0)  # still moving, but 20 s in all
    assert ended.progress is sql.Progress.FAILED and "within 20s" in ended.detail


def test_a_sql_error_is_refused_in_every_mode() -> None:
    broken = status(
        Gtid_IO_Pos="0-1-20",
        Gtid_Slave_Pos="0-1-10",
        Slave_SQL_Running="No",
        Last_SQL_Errno=1062,
        Last_SQL_Error="Duplicate entry",
    )
    for mode in CatchUpMode:
        check = ApplyWatch(CatchUpPolicy(mode=mode), started=0.0).verdict(
            sql.applied_check(MARIADB, broken), "", 0.0
        )
        assert check.progress is sql.Progress.FAILED and "1062" in check.detail


def test_the_applied_marker_and_the_semi_sync_statements() -> None:
    assert sql.applied_marker(MARIADB, BEHIND) == "0-1-10"
    assert sql.applied_marker(MARIADB, APPLIED) == "0-1-20"
    file_pos = status(Using_Gtid="No", Relay_Master_Log_File="bin.3", Exec_Master_Log_Pos=77)
    assert sql.applied_marker(MARIADB, file_pos) == "bin.3:77"
    assert MARIADB.semi_sync_clients_sql == (
        "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'"
    )
    assert "Rpl_semi_sync_source_clients" in MYSQL.semi_sync_clients_sql
    assert sql.parse_status_number([{"Variable_name": "x", "Value": "3"}]) == 3
    assert sql.parse_status_number([{"Variable_name": "x", "Value": ""}]) is None
    assert sql.parse_status_number([]) is None


# --- PostTakeMasterProcesses: what its hooks are told --------------------------------------------


def test_take_master_hooks_get_orchestrators_host_port_variables_and_the_placeholders() -> None:
    successor, demoted = key("db3.example:3308"), key("db2.example:3307")
    context = HookContext(
        failure_type="",
        failure_description=f"take-master: {successor} took its master {demoted}",
        failed=demoted,
        failure_cluster="db1.example:3306",
        command_hint="take-master",
        successor=successor,
        environment={"ORC_SUCCESSOR_HOST": str(successor), "ORC_FAILED_HOST": str(demoted)},
    )
    env = hook_environment(context, base={"PATH": "/bin", "ORC_STALE": "x"})
    assert env["ORC_SUCCESSOR_HOST"] == "db3.example:3308"  # orchestrator's: host:port
    assert env["ORC_FAILED_HOST"] == "db2.example:3307"
    assert (env["ORC_SUCCESSOR_PORT"], env["ORC_FAILED_PORT"]) == ("3308", "3307")
    assert env["ORC_COMMAND"] == "take-master" and "ORC_STALE" not in env
    command = "notify {successorHost}:{successorPort} {failedHost} {command} {failureDescription}"
    assert substitute_placeholders(command, context) == (
        'notify db3.example:3308 db2.example take-master "${ORC_FAILURE_DESCRIPTION}"'
    )
    assert HookStage.POST_TAKE_MASTER.value == "PostTakeMasterProcesses"
    assert not HookStage.POST_TAKE_MASTER.aborts_on_failure
