"""Recovery hooks against real ``bash`` processes: substitution, environment, order, aborts,
timeouts that kill the whole process group, output capture, and hooks dying with the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator_recovery import hooks
from orchestrator_recovery.hooks import (
    DetachedHooks,
    HookContext,
    HookFailed,
    HookResult,
    HookStage,
    hook_environment,
    placeholder_values,
    run_hooks,
)
from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.integration

TIMEOUT = 0.5
PRE_STAGES = [
    HookStage.ON_FAILURE_DETECTION,
    HookStage.PRE_FAILOVER,
    HookStage.PRE_GRACEFUL_TAKEOVER,
]
POST_STAGES = [stage for stage in HookStage if not stage.aborts_on_failure]

CONTEXT = HookContext(
    failure_type="DeadMaster",
    failure_description="Master cannot be reached by orchestrator; none of its replicas is ok",
    failed=InstanceKey("db1.example.com", 3306),
    failure_cluster="db1.example.com:3306",
    failure_cluster_alias="orders",
    failure_cluster_domain="orders.example.com",
    is_master=True,
    command_hint="",
    count_replicas=2,
    auto_master_recovery=True,
    orchestrator_host="orc1",
    recovery_uid="uid-1",
    replicas=(InstanceKey("db2.example.com", 3306), InstanceKey("::1", 3307)),
    lost_replicas=(InstanceKey("::1", 3307),),
    successor=InstanceKey("db2.example.com", 3306),
    successor_alias="orders-2",
    successor_binlog_coordinates=BinlogCoordinates("mysql-bin.000003", 4),
)


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique ``sleep`` duration naming this test's long-running hook processes; any such
    process still alive at teardown is killed and fails the test."""
    token = f"{30 + uuid.uuid4().int % 10**6 / 10**7:.7f}"
    yield token
    leftovers = _sleepers(token)
    for process in leftovers:
        process.kill()
    assert not leftovers, f"orphaned hook processes: {leftovers}"


def _sleepers(token: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if cmdline == ["sleep", token] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def _is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _wait_gone(pids: list[int], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_is_gone(pid) for pid in pids):
            return True
        await asyncio.sleep(0.02)
    return False


def _read(path: str) -> str:
    return Path(path).read_text()


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


# --- substitution and environment ------------------------------------------------------------


async def test_every_placeholder_reaches_the_hook(tmp_path: Path) -> None:
    names = list(placeholder_values(CONTEXT))
    out = tmp_path / "out"
    # one line per placeholder, in all three quoting styles
    commands = [
        "printf '%s\\n' " + " ".join(f"{{{name}}}" for name in names) + f" > {out}.bare",
        "printf '%s\\n' " + " ".join(f'"{{{name}}}"' for name in names) + f" > {out}.double",
        "printf '%s\\n' " + " ".join(f"'{{{name}}}'" for name in names) + f" > {out}.single",
    ]
    results = await run_hooks(HookStage.POST_FAILOVER, commands, CONTEXT, timeout=5)
    assert [r.exit_code for r in results] == [0, 0, 0]
    expected = [placeholder_values(CONTEXT)[name] for name in names]
    assert "" in expected  # {command}: empty outside forced recoveries
    for style in ("double", "single"):
        assert _read(f"{out}.{style}").splitlines() == expected, style
    # unquoted, an empty plain value is no word at all (as in orchestrator)
    assert _read(f"{out}.bare").splitlines() == [v for v in expected if v]


async def test_environment_variables_reach_the_hook(tmp_path: Path) -> None:
    out = tmp_path / "env"
    await run_hooks(HookStage.POST_FAILOVER, [f"env -0 > {out}"], CONTEXT, timeout=5)
    seen = dict(item.split("=", 1) for item in out.read_text().split("\0") if item)
    expected = {k: v for k, v in hook_environment(CONTEXT).items() if k.startswith("ORC_")}
    assert {k: v for k, v in seen.items() if k.startswith("ORC_")} == expected
    assert seen["ORC_SUCCESSOR_HOST"] == "db2.example.com"
    assert seen["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize(
    "value",
    [
        "x; touch {marker}",
        "$(touch {marker})",
        "`touch {marker}`",
        "a' ; touch {marker} ; '",
        'a" ; touch {marker} ; "',
        "a\ntouch {marker}",
        '\\" $HOME ${HOME} * ~ {failedHost}',
    ],
)
async def test_operator_text_in_values_is_never_run(tmp_path: Path, value: str) -> None:
    touched = tmp_path / "touched"
    value = value.replace("{marker}", str(touched))
    ctx = HookContext(
        failure_type="DeadMaster",
        failure_description=value,
        failed=InstanceKey("db1", 3306),
        failure_cluster="db1:3306",
        failure_cluster_alias=value,
        successor=InstanceKey("db2", 3306),
        successor_alias=value,
    )
    out = tmp_path / "out"
    commands = [
        f"printf '%s' {{failureClusterAlias}} > {out}.bare",
        f'printf "%s" "{{successorAlias}}" > {out}.double',
        f"printf '%s' '{{failureDescription}}' > {out}.single",
    ]
    results = await run_hooks(HookStage.POST_FAILOVER, commands, ctx, timeout=5)
    assert all(r.succeeded for r in results), results
    assert not touched.exists()
    for style in ("bare", "double", "single"):
        assert _read(f"{out}.{style}") == value, style


async def test_the_worker_environment_is_allow_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook gets PATH, HOME... and the names passed through, never the worker's secrets."""
    monkeypatch.setenv("ORCHESTRATOR_MySQLTopologyPassword", "topo-secret-in-env")
    monkeypatch.setenv("SOME_TOKEN", "token-in-env")
    monkeypatch.setenv("HOOK_EXTRA", "passed")
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "env"
    await run_hooks(
        HookStage.POST_FAILOVER,
        [f"env -0 > {out}"],
        CONTEXT,
        timeout=5,
        pass_through=["HOOK_EXTRA"],
    )
    seen = dict(item.split("=", 1) for item in out.read_text().split("\0") if item)
    assert seen["HOOK_EXTRA"] == "passed"
    assert seen["HOME"] == str(tmp_path)
    assert "ORCHESTRATOR_MySQLTopologyPassword" not in seen
    assert "SOME_TOKEN" not in seen
    assert "topo-secret-in-env" not in out.read_text()
    unexpected = {
        name
        for name in seen
        if not name.startswith("ORC_")
        and name not in {*hooks.INHERITED_VARIABLES, "HOOK_EXTRA"}
        # set by bash itself for every command it runs
        and name not in {"PWD", "SHLVL", "_", "OLDPWD"}
    }
    assert unexpected == set()


async def test_hook_output_is_redacted() -> None:
    results = await run_hooks(
        HookStage.POST_FAILOVER,
        ["echo \"CHANGE MASTER TO MASTER_PASSWORD='printed-pw'\"; echo nats://u:urlpw@h:4222"],
        CONTEXT,
        timeout=5,
    )
    assert "printed-pw" not in results[0].output
    assert "urlpw" not in results[0].output
    assert "CHANGE MASTER TO" in results[0].output


# --- order and failures ------------------------------------------------------------------------


async def test_hooks_run_sequentially_in_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    commands = [f"sleep 0.2; echo first >> {log}", f"echo second >> {log}", f"echo third >> {log}"]
    results = await run_hooks(HookStage.POST_FAILOVER, commands, CONTEXT, timeout=5)
    assert log.read_text().splitlines() == ["first", "second", "third"]
    assert [r.configured for r in results] == commands
    assert results[1].started_at >= results[0].started_at
    assert results[0].duration >= 0.2


@pytest.mark.parametrize("stage", PRE_STAGES)
async def test_failing_pre_hook_aborts_the_rest(tmp_path: Path, stage: HookStage) -> None:
    log = tmp_path / "log"
    audited: list[HookResult] = []
    commands = [f"echo one >> {log}", "echo refusing >&2; exit 3", f"echo three >> {log}"]
    with pytest.raises(HookFailed) as raised:
        await run_hooks(stage, commands, CONTEXT, timeout=5, audit=audited.append)
    assert log.read_text().splitlines() == ["one"]
    assert raised.value.result.exit_code == 3
    assert raised.value.result.output == "refusing\n"
    assert raised.value.result.stage is stage
    assert [r.exit_code for r in audited] == [0, 3]  # the failed hook is audited too


@pytest.mark.parametrize("stage", POST_STAGES)
async def test_failing_post_hook_does_not_stop_the_rest(tmp_path: Path, stage: HookStage) -> None:
    log = tmp_path / "log"
    commands = [f"echo one >> {log}", "exit 3", "no-such-command-xyz", f"echo four >> {log}"]
    results = await run_hooks(stage, commands, CONTEXT, timeout=5)
    assert log.read_text().splitlines() == ["one", "four"]
    assert [r.exit_code for r in results] == [0, 3, 127, 0]
    assert [r.succeeded for r in results] == [True, False, False, True]


async def test_missing_command_is_a_failure() -> None:
    with pytest.raises(HookFailed) as raised:
        await run_hooks(HookStage.PRE_FAILOVER, ["/no/such/hook.sh"], CONTEXT, timeout=5)
    assert raised.value.result.exit_code == 127
    assert "No such file" in raised.value.result.output


async def test_shell_that_cannot_start_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_SHELL", "/no/such/bash")
    with pytest.raises(HookFailed) as raised:
        await run_hooks(HookStage.PRE_FAILOVER, ["true"], CONTEXT, timeout=5)
    assert raised.value.result.exit_code is None
    assert raised.value.result.error
    assert "could not be started" in str(raised.value)


async def test_async_audit_is_awaited() -> None:
    audited: list[str] = []

    async def audit(result: HookResult) -> None:
        await asyncio.sleep(0)
        audited.append(result.output)

    await run_hooks(HookStage.POST_FAILOVER, ["echo a", "echo b"], CONTEXT, timeout=5, audit=audit)
    assert audited == ["a\n", "b\n"]


# --- timeouts and process groups ----------------------------------------------------------------


async def test_hanging_hook_is_killed_at_its_timeout_with_its_children(
    tmp_path: Path, marker: str
) -> None:
    pids = tmp_path / "pids"
    hanging = f"sleep {marker} & echo $! >> {pids}; echo $$ >> {pids}; sleep {marker}"
    log = tmp_path / "log"
    started = time.monotonic()
    results = await run_hooks(
        HookStage.POST_FAILOVER, [hanging, f"echo after >> {log}"], CONTEXT, timeout=TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert results[0].timed_out
    assert results[0].exit_code is None
    assert not results[0].succeeded
    assert TIMEOUT <= results[0].duration < TIMEOUT + 1.0
    assert elapsed < TIMEOUT + 1.5
    assert log.read_text() == "after\n"  # a post hook timing out does not stop the rest
    assert await _wait_gone(_pids(pids))
    assert not _sleepers(marker)


@pytest.mark.parametrize("stage", PRE_STAGES)
async def test_hanging_pre_hook_aborts(tmp_path: Path, marker: str, stage: HookStage) -> None:
    log = tmp_path / "log"
    with pytest.raises(HookFailed) as raised:
        await run_hooks(
            stage, [f"sleep {marker}", f"echo never >> {log}"], CONTEXT, timeout=TIMEOUT
        )
    assert raised.value.result.timed_out
    assert "killed at its timeout" in str(raised.value)
    assert not log.exists()
    assert not _sleepers(marker)


async def test_output_before_the_timeout_is_kept(marker: str) -> None:
    results = await run_hooks(
        HookStage.POST_FAILOVER, [f"echo partial; sleep {marker}"], CONTEXT, timeout=TIMEOUT
    )
    assert results[0].timed_out
    assert results[0].output == "partial\n"


async def test_cancellation_kills_the_running_hook(tmp_path: Path, marker: str) -> None:
    pids = tmp_path / "pids"
    hook = f"sleep {marker} & echo $! >> {pids}; echo $$ >> {pids}; wait"
    task = asyncio.create_task(run_hooks(HookStage.PRE_FAILOVER, [hook], CONTEXT, timeout=30))
    for _ in range(200):
        if pids.exists() and len(_pids(pids)) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait_gone(_pids(pids))


async def test_hook_dies_with_the_worker(tmp_path: Path, marker: str) -> None:
    """kill -9 of the process running hooks takes the hook and its children along."""
    pids = tmp_path / "pids"
    hook = f"sleep {marker} & echo $! >> {pids}; echo $$ >> {pids}; sleep {marker}"
    script = (
        "import asyncio, sys\n"
        "from orchestrator_recovery.hooks import HookContext, HookStage, run_hooks\n"
        "from orchestrator_shared.instance_key import InstanceKey\n"
        "ctx = HookContext(failure_type='DeadMaster', failure_description='',\n"
        "                  failed=InstanceKey('db1', 3306), failure_cluster='db1:3306')\n"
        "asyncio.run(run_hooks(HookStage.PRE_FAILOVER, [sys.argv[1]], ctx, timeout=60))\n"
    )
    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", script, hook)
    try:
        for _ in range(1000):
            if pids.exists() and len(_pids(pids)) == 2:
                break
            await asyncio.sleep(0.01)
        hook_pids = _pids(pids)
        assert not any(_is_gone(pid) for pid in hook_pids)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert await _wait_gone(hook_pids)
    assert not _sleepers(marker)


# --- output ------------------------------------------------------------------------------------


async def test_stdout_and_stderr_are_captured_together() -> None:
    results = await run_hooks(
        HookStage.POST_FAILOVER, ["echo out; echo err >&2; echo out2"], CONTEXT, timeout=5
    )
    assert results[0].output == "out\nerr\nout2\n"
    assert not results[0].output_truncated


async def test_large_output_keeps_its_end() -> None:
    command = "head -c 200000 /dev/zero | tr '\\0' a; echo; echo END"
    results = await run_hooks(
        HookStage.POST_FAILOVER, [command], CONTEXT, timeout=5, output_limit=1024
    )
    assert results[0].output_truncated
    assert len(results[0].output.encode()) == 1024
    assert results[0].output.endswith("a\nEND\n")


# --- asynchronous hooks (trailing &) ---------------------------------------------------------


async def test_async_hook_does_not_delay_the_next(tmp_path: Path) -> None:
    log = tmp_path / "log"
    audited: list[HookResult] = []
    commands = [f"sleep 0.3; echo slow >> {log} &", f"echo fast >> {log}"]
    async with DetachedHooks() as detached:
        results = await run_hooks(
            HookStage.PRE_FAILOVER,
            commands,
            CONTEXT,
            timeout=5,
            audit=audited.append,
            detached=detached,
        )
        assert [r.command for r in results] == [f"echo fast >> {log}"]
        assert log.read_text() == "fast\n"
        assert detached.running == 1
    assert log.read_text() == "fast\nslow\n"
    assert [r.detached for r in audited] == [False, True]


async def test_failing_async_pre_hook_does_not_abort(tmp_path: Path) -> None:
    log = tmp_path / "log"
    audited: list[HookResult] = []
    commands = ["exit 5 &", f"echo ran >> {log}"]
    results = await run_hooks(
        HookStage.PRE_FAILOVER, commands, CONTEXT, timeout=5, audit=audited.append
    )
    assert [r.exit_code for r in results] == [0]
    assert log.read_text() == "ran\n"
    # without a DetachedHooks owner, run_hooks waited for it before returning
    assert sorted((r.detached, r.exit_code) for r in audited) == [(False, 0), (True, 5)]


async def test_async_hook_still_has_the_timeout(tmp_path: Path, marker: str) -> None:
    audited: list[HookResult] = []
    async with DetachedHooks() as detached:
        await run_hooks(
            HookStage.POST_FAILOVER,
            [f"sleep {marker} &"],
            CONTEXT,
            timeout=TIMEOUT,
            audit=audited.append,
            detached=detached,
        )
    assert [r.timed_out for r in audited] == [True]
    assert not _sleepers(marker)
