"""Recovery hooks, the pure parts: placeholders, ORC_* variables, stages, settings, results."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_recovery.hooks import (
    DEFAULT_HOOK_TIMEOUT_SECONDS,
    HookContext,
    HookFailed,
    HookResult,
    HookSettings,
    HookStage,
    _split_async,
    hook_environment,
    placeholder_values,
    substitute_placeholders,
    validate_hook_timeout,
)
from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.errors import ConfigError, OperationRefused, OrchestratorError
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.unit

FAILED = InstanceKey("db1.example.com", 3306)
SUCCESSOR = InstanceKey("db2.example.com", 3307)
REPLICAS = (InstanceKey("db2.example.com", 3307), InstanceKey("db3", 3306))
LOST = (InstanceKey("db3", 3306),)


def context(**changes: object) -> HookContext:
    fields: dict[str, object] = {
        "failure_type": "DeadMaster",
        "failure_description": "Master cannot be reached by orchestrator",
        "failed": FAILED,
        "failure_cluster": "db1.example.com:3306",
        "failure_cluster_alias": "orders",
        "failure_cluster_domain": "orders.example.com",
        "is_master": True,
        "command_hint": "force-master-failover",
        "count_replicas": 2,
        "is_downtimed": False,
        "auto_master_recovery": True,
        "auto_intermediate_master_recovery": False,
        "orchestrator_host": "orc1",
        "recovery_uid": "1234-abcd",
        "replicas": REPLICAS,
        "lost_replicas": LOST,
        "successor": SUCCESSOR,
        "successor_alias": "orders-new",
        "successor_binlog_coordinates": BinlogCoordinates("mysql-bin.000007", 1234),
    }
    fields.update(changes)
    return HookContext(**fields)  # type: ignore[arg-type]


# Every placeholder orchestrator substitutes, with the value expected for ``context()``.
EXPECTED_PLACEHOLDERS = {
    "failureType": "DeadMaster",
    "instanceType": "master",
    "isMaster": "true",
    "isCoMaster": "false",
    "failureDescription": "Master cannot be reached by orchestrator",
    "command": "force-master-failover",
    "failedHost": "db1.example.com",
    "failedPort": "3306",
    "failureCluster": "db1.example.com:3306",
    "failureClusterAlias": "orders",
    "failureClusterDomain": "orders.example.com",
    "countReplicas": "2",
    "countSlaves": "2",
    "isDowntimed": "false",
    "autoMasterRecovery": "true",
    "autoIntermediateMasterRecovery": "false",
    "orchestratorHost": "orc1",
    "recoveryUID": "1234-abcd",
    "isSuccessful": "true",
    "successorHost": "db2.example.com",
    "successorPort": "3307",
    "successorBinlogCoordinates": "mysql-bin.000007:1234",
    "successorAlias": "orders-new",
    "lostReplicas": "db3:3306",
    "lostSlaves": "db3:3306",
    "countLostReplicas": "1",
    "replicaHosts": "db2.example.com:3307,db3:3306",
    "slaveHosts": "db2.example.com:3307,db3:3306",
}

EXPECTED_ENVIRONMENT = {
    "ORC_FAILURE_TYPE": "DeadMaster",
    "ORC_INSTANCE_TYPE": "master",
    "ORC_IS_MASTER": "true",
    "ORC_IS_CO_MASTER": "false",
    "ORC_FAILURE_DESCRIPTION": "Master cannot be reached by orchestrator",
    "ORC_COMMAND": "force-master-failover",
    "ORC_FAILED_HOST": "db1.example.com",
    "ORC_FAILED_PORT": "3306",
    "ORC_FAILURE_CLUSTER": "db1.example.com:3306",
    "ORC_FAILURE_CLUSTER_ALIAS": "orders",
    "ORC_FAILURE_CLUSTER_DOMAIN": "orders.example.com",
    "ORC_COUNT_REPLICAS": "2",
    "ORC_IS_DOWNTIMED": "false",
    "ORC_AUTO_MASTER_RECOVERY": "true",
    "ORC_AUTO_INTERMEDIATE_MASTER_RECOVERY": "false",
    "ORC_ORCHESTRATOR_HOST": "orc1",
    "ORC_IS_SUCCESSFUL": "true",
    "ORC_LOST_REPLICAS": "db3:3306",
    "ORC_REPLICA_HOSTS": "db2.example.com:3307,db3:3306",
    "ORC_RECOVERY_UID": "1234-abcd",
    "ORC_SUCCESSOR_HOST": "db2.example.com",
    "ORC_SUCCESSOR_PORT": "3307",
    "ORC_SUCCESSOR_BINLOG_COORDINATES": "mysql-bin.000007:1234",
    "ORC_SUCCESSOR_ALIAS": "orders-new",
}

SUCCESSOR_PLACEHOLDERS = (
    "successorHost",
    "successorPort",
    "successorAlias",
    "successorBinlogCoordinates",
)


# --- placeholders ---------------------------------------------------------------------------


def test_placeholder_values_cover_orchestrators_set() -> None:
    assert placeholder_values(context()) == EXPECTED_PLACEHOLDERS


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_PLACEHOLDERS.items()))
def test_every_placeholder_is_substituted_in_text(name: str, expected: str) -> None:
    command = substitute_placeholders(f'notify "{{{name}}}" --done', context())
    if name == "failureDescription":  # has spaces: inserted as its ORC_* variable
        assert command == 'notify "${ORC_FAILURE_DESCRIPTION}" --done'
    else:
        assert command == f'notify "{expected}" --done'


def test_all_placeholders_in_one_command() -> None:
    template = " ".join(f"{{{name}}}" for name in EXPECTED_PLACEHOLDERS)
    expected = " ".join(
        '"${ORC_FAILURE_DESCRIPTION}"' if name == "failureDescription" else value
        for name, value in EXPECTED_PLACEHOLDERS.items()
    )
    assert substitute_placeholders(template, context()) == expected


def test_placeholder_repeated_and_adjacent() -> None:
    assert (
        substitute_placeholders("{failedHost}:{failedPort}/{failedHost}", context())
        == "db1.example.com:3306/db1.example.com"
    )


def test_without_successor_its_placeholders_stay_literally() -> None:
    ctx = context(successor=None, successor_alias="", successor_binlog_coordinates=None)
    values = placeholder_values(ctx)
    assert values["isSuccessful"] == "false"
    for name in SUCCESSOR_PLACEHOLDERS:
        assert name not in values
        assert substitute_placeholders(f"x {{{name}}} y", ctx) == f"x {{{name}}} y"


def test_successor_coordinates_only_when_known() -> None:
    ctx = context(successor_binlog_coordinates=None, successor_alias="")
    values = placeholder_values(ctx)
    assert "successorBinlogCoordinates" not in values
    assert values["successorHost"] == "db2.example.com"
    assert values["successorAlias"] == ""  # a successor without alias: replaced by nothing
    assert substitute_placeholders("[{successorAlias}]", ctx) == "[]"


def test_unknown_placeholders_and_shell_braces_are_left_alone() -> None:
    template = 'echo {nope} ${HOME} ${ORC_FAILED_HOST} {a,b} "{}" {failedHost}'
    assert substitute_placeholders(template, context()) == (
        'echo {nope} ${HOME} ${ORC_FAILED_HOST} {a,b} "{}" db1.example.com'
    )


def test_substitution_is_one_pass() -> None:
    ctx = context(failure_cluster_alias="{failedHost}")
    # braces are not plain: the alias goes in as its variable, never substituted again
    assert substitute_placeholders("{failureClusterAlias}", ctx) == (
        '"${ORC_FAILURE_CLUSTER_ALIAS}"'
    )


def test_instance_type_follows_orchestrator() -> None:
    assert context(is_master=True, is_co_master=False).instance_type == "master"
    assert context(is_master=True, is_co_master=True).instance_type == "co-master"
    assert context(is_master=False).instance_type == "intermediate-master"


def test_ipv6_hosts_and_lists() -> None:
    ctx = context(failed=InstanceKey("::1", 3306), replicas=(InstanceKey("::1", 3307),))
    values = placeholder_values(ctx)
    assert values["failedHost"] == "::1"
    assert values["replicaHosts"] == "[::1]:3307"
    # plain characters go in as they are; brackets (glob characters) do not
    assert substitute_placeholders("{failedHost} {replicaHosts}", ctx) == (
        '::1 "${ORC_REPLICA_HOSTS}"'
    )


# --- quoting of values that are not plain -----------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {failureDescription}", 'echo "${ORC_FAILURE_DESCRIPTION}"'),
        ('echo "{failureDescription}"', 'echo "${ORC_FAILURE_DESCRIPTION}"'),
        ('echo "why: {failureDescription}."', 'echo "why: ${ORC_FAILURE_DESCRIPTION}."'),
        ("echo '{failureDescription}'", "echo ''\"${ORC_FAILURE_DESCRIPTION}\"''"),
        # quotes closed again before the placeholder
        ("echo 'a' \"b\" {failureDescription}", 'echo \'a\' "b" "${ORC_FAILURE_DESCRIPTION}"'),
        # escaped quotes do not open quoting
        ("echo \\' \\\" {failureDescription}", 'echo \\\' \\" "${ORC_FAILURE_DESCRIPTION}"'),
        # inside double quotes an escaped double quote does not close them
        ('echo "a\\" {failureDescription}"', 'echo "a\\" ${ORC_FAILURE_DESCRIPTION}"'),
        # a single quote inside double quotes is just a character
        ('echo "it\'s {failureDescription}"', 'echo "it\'s ${ORC_FAILURE_DESCRIPTION}"'),
    ],
)
def test_non_plain_values_go_in_as_quoted_variable(template: str, expected: str) -> None:
    assert substitute_placeholders(template, context()) == expected


@pytest.mark.parametrize("value", ["", "db1", "a-b_c.d:3306,e/f@g+h=i%j"])
def test_plain_values_go_in_verbatim(value: str) -> None:
    ctx = context(failure_cluster_alias=value)
    assert substitute_placeholders("x{failureClusterAlias}y", ctx) == f"x{value}y"


def _is_plain(value: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "_.,:/@+=%-") for c in value)


@given(value=st.text())
def test_command_text_does_not_depend_on_a_value_with_shell_syntax(value: str) -> None:
    """A non-plain value never becomes part of the shell text: the command is the same as for
    any other non-plain value (the value itself travels in the environment)."""
    for template in ("a {failureClusterAlias}", 'a "{successorAlias}"', "a '{successorAlias}'"):
        command = substitute_placeholders(
            template, context(failure_cluster_alias=value, successor_alias=value)
        )
        if _is_plain(value):
            assert command == template.format(failureClusterAlias=value, successorAlias=value)
        else:
            reference = context(failure_cluster_alias="x y", successor_alias="x y")
            assert command == substitute_placeholders(template, reference)


# --- environment ----------------------------------------------------------------------------


def test_environment_has_orchestrators_variables() -> None:
    env = hook_environment(context(), base={"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", **EXPECTED_ENVIRONMENT}


def test_environment_without_successor() -> None:
    ctx = context(successor=None, successor_alias="", successor_binlog_coordinates=None)
    env = hook_environment(ctx, base={})
    assert env["ORC_IS_SUCCESSFUL"] == "false"
    assert not any(name.startswith("ORC_SUCCESSOR_") for name in env)


def test_environment_drops_inherited_orc_variables() -> None:
    ctx = context(successor=None, successor_alias="", successor_binlog_coordinates=None)
    base = {"HOME": "/root", "ORC_SUCCESSOR_HOST": "stale", "ORC_FAILED_HOST": "stale"}
    env = hook_environment(ctx, base=base)
    assert env["HOME"] == "/root"
    assert "ORC_SUCCESSOR_HOST" not in env
    assert env["ORC_FAILED_HOST"] == "db1.example.com"


def test_environment_keeps_raw_values() -> None:
    ctx = context(failure_description="a; b $(c) 'd'\n\"e\"")
    assert hook_environment(ctx, base={})["ORC_FAILURE_DESCRIPTION"] == "a; b $(c) 'd'\n\"e\""


def test_environment_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's allow-listed variables, and the ones passed through; nothing else."""
    monkeypatch.setenv("HOOK_TEST_MARKER", "1")
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.setenv("ORCHESTRATOR_HTTPAuthPassword", "hidden")
    monkeypatch.setenv("ORC_COMMAND", "stale")
    env = hook_environment(context(command_hint=""))
    assert "HOOK_TEST_MARKER" not in env
    assert "ORCHESTRATOR_HTTPAuthPassword" not in env
    assert env["TZ"] == "Europe/Paris"
    assert env["ORC_COMMAND"] == ""
    passed = hook_environment(context(command_hint=""), pass_through=["HOOK_TEST_MARKER"])
    assert passed["HOOK_TEST_MARKER"] == "1"
    assert hook_environment(context(), pass_through=["ORC_COMMAND"])["ORC_COMMAND"] != "stale"


# --- stages, settings, results ----------------------------------------------------------------


def test_which_stages_abort() -> None:
    aborting = {stage for stage in HookStage if stage.aborts_on_failure}
    assert aborting == {
        HookStage.ON_FAILURE_DETECTION,
        HookStage.PRE_FAILOVER,
        HookStage.PRE_GRACEFUL_TAKEOVER,
    }


def test_settings_map_stage_to_commands() -> None:
    settings = HookSettings(
        pre_failover_processes=["echo pre"],  # type: ignore[arg-type]
        post_failover_processes=("echo post1", "echo post2"),
    )
    assert settings.commands(HookStage.PRE_FAILOVER) == ("echo pre",)
    assert settings.commands(HookStage.POST_FAILOVER) == ("echo post1", "echo post2")
    assert settings.commands(HookStage.ON_FAILURE_DETECTION) == ()
    assert settings.timeout_seconds == DEFAULT_HOOK_TIMEOUT_SECONDS
    assert {stage.value for stage in HookStage} == {
        "OnFailureDetectionProcesses",
        "PreFailoverProcesses",
        "PostMasterFailoverProcesses",
        "PostIntermediateMasterFailoverProcesses",
        "PostFailoverProcesses",
        "PostUnsuccessfulFailoverProcesses",
        "PreGracefulTakeoverProcesses",
        "PostGracefulTakeoverProcesses",
        "PostTakeMasterProcesses",
    }


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="HookTimeoutSeconds"):
        HookSettings(timeout_seconds=0)
    with pytest.raises(ConfigError, match="PreFailoverProcesses"):
        HookSettings(pre_failover_processes="echo one string")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="PostFailoverProcesses"):
        HookSettings(post_failover_processes=(1,))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.001, 1, 30, 3600])
def test_valid_hook_timeouts(value: float) -> None:
    assert validate_hook_timeout(value) == float(value)


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, 3600.5, True, "30", None])
def test_invalid_hook_timeouts(value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_hook_timeout(value, setting="HookTimeoutSeconds")
    assert raised.value.setting == "HookTimeoutSeconds"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("notify.sh {failedHost}", ("notify.sh {failedHost}", False)),
        ("  notify.sh  ", ("notify.sh", False)),
        ("notify.sh &", ("notify.sh ", True)),
        ("notify.sh&&  ", ("notify.sh", True)),
        ("a && b", ("a && b", False)),
    ],
)
def test_trailing_ampersand_means_asynchronous(command: str, expected: tuple[str, bool]) -> None:
    assert _split_async(command) == expected


def result(**changes: object) -> HookResult:
    fields: dict[str, object] = {
        "stage": HookStage.PRE_FAILOVER,
        "command": "exit 3",
        "configured": "exit 3",
        "exit_code": 3,
        "output": "",
        "duration": 0.01,
    }
    fields.update(changes)
    return HookResult(**fields)  # type: ignore[arg-type]


def test_result_success_and_description() -> None:
    assert result(exit_code=0).succeeded
    assert not result(exit_code=3).succeeded
    assert not result(exit_code=None, timed_out=True).succeeded
    assert not result(exit_code=None, error="No such file").succeeded
    assert "exited with 3" in result().describe()
    assert "killed at its timeout" in result(exit_code=None, timed_out=True).describe()
    assert "could not be started" in result(exit_code=None, error="nope").describe()


def test_hook_failed_is_a_refusal_carrying_the_result() -> None:
    failed = HookFailed(result())
    assert isinstance(failed, OperationRefused)
    assert isinstance(failed, OrchestratorError)
    assert failed.result.exit_code == 3
    assert "PreFailoverProcesses" in str(failed)
