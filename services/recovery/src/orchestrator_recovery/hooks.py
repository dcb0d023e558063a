"""Recovery hooks: operator commands run at fixed points of a detection or recovery.

orchestrator's hook settings, placeholders and ``ORC_*`` variables (reference §4.5; see
``hook_context`` and ``docs/hooks.md``). ``run_hooks`` runs one stage's commands:

* **sequentially**, in list order, each as ``bash -c <command>`` after placeholder substitution,
  with an allow-listed part of this process's environment (``hook_environment``: ``PATH``,
  ``HOME``, ``LANG``, ``TZ``..., the names passed through) plus the ``ORC_*`` variables, stdin
  from ``/dev/null``;
* stdout and stderr go to one unlinked temporary file; the last ``output_limit`` bytes are kept in
  the ``HookResult``, redacted (``orchestrator_shared.redact``), and so in the audit, which shows
  them to the admin role only;
* **every hook has a timeout** (orchestrator has none). A hook still running at its timeout is
  killed with its whole process group: the hook starts a new session, so ``sleep`` or anything
  else it started dies with it unless it left the session on purpose (``setsid``, a daemon);
* a hook is finished when its shell exits; processes it left running in the background are
  neither waited for nor killed (unless the timeout fires first);
* if this process dies, even by SIGKILL, the hook dies too: ``bash`` gets ``PR_SET_PDEATHSIG``
  (SIGTERM), on which a small supervisor shell kills the hook's process group. The signal fires
  when the *thread* that forked the hook exits; asyncio forks from the event loop's thread, so run
  the loop in a thread that lives as long as the worker (``asyncio.run`` in the main thread does);
* in the ``Pre*`` stages (``OnFailureDetectionProcesses`` included, as in orchestrator) a hook that
  fails, times out or cannot be started raises ``HookFailed`` and the remaining hooks do not run;
  in the ``Post*`` stages failures are recorded and the remaining hooks still run;
* a command ending in ``&`` is orchestrator's *asynchronous* hook: the ``&`` is dropped, the hook is
  started and the next one runs without waiting; its failure never aborts anything; it still has
  the timeout. Pass ``detached=`` (a ``DetachedHooks`` the worker keeps open) so recovery does not
  wait for it; without one, ``run_hooks`` waits for it before it returns.

``HookFailed`` is an ``OperationRefused``: a ``Pre*`` hook is an operator-defined precondition,
and its veto refuses the recovery before the recovery changed anything, which is exactly how the
worker treats any other refusal (no promotion, a ``failed`` event carrying the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import inspect
import logging
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

from orchestrator_recovery.hook_context import (
    INHERITED_VARIABLES,
    HookContext,
    hook_environment,
    placeholder_values,
    substitute_placeholders,
)
from orchestrator_shared.errors import ConfigError, OperationRefused
from orchestrator_shared.redact import redact

__all__ = [
    "DEFAULT_HOOK_TIMEOUT_SECONDS",
    "INHERITED_VARIABLES",
    "MAX_HOOK_TIMEOUT_SECONDS",
    "OUTPUT_LIMIT_BYTES",
    "DetachedHooks",
    "HookAudit",
    "HookContext",
    "HookFailed",
    "HookResult",
    "HookSettings",
    "HookStage",
    "hook_environment",
    "placeholder_values",
    "run_hooks",
    "substitute_placeholders",
    "validate_hook_timeout",
]

log = logging.getLogger(__name__)

DEFAULT_HOOK_TIMEOUT_SECONDS = 30.0
"""Default of the proposed ``HookTimeoutSeconds`` setting."""
MAX_HOOK_TIMEOUT_SECONDS = 3600.0
"""A ``Pre*`` hook holds the failover for up to its timeout; more than an hour is a mistake."""
OUTPUT_LIMIT_BYTES = 64 * 1024
"""How much of a hook's combined stdout/stderr (the end of it) a ``HookResult`` keeps."""

_SHELL = "bash"
# Runs the hook as a background job of a shell that waits for it, so that the SIGTERM sent by
# PR_SET_PDEATHSIG when the worker dies interrupts ``wait`` and kills the whole process group
# (a foreground child would delay the trap until it exits). Its exit status is the hook's.
# Its own arguments after the command become the hook's positional parameters ($1, $2...).
_SUPERVISOR = 'trap "kill -KILL 0" TERM; hook="$1"; shift; bash -c "$hook" "$0" "$@" & wait "$!"'
_SUPERVISOR_NAME = "orchestrator-hook"
_PR_SET_PDEATHSIG = 1


class HookStage(StrEnum):
    """A point where hooks run; the value is the setting that lists its commands."""

    ON_FAILURE_DETECTION = "OnFailureDetectionProcesses"
    PRE_FAILOVER = "PreFailoverProcesses"
    POST_MASTER_FAILOVER = "PostMasterFailoverProcesses"
    POST_INTERMEDIATE_MASTER_FAILOVER = "PostIntermediateMasterFailoverProcesses"
    POST_FAILOVER = "PostFailoverProcesses"
    POST_UNSUCCESSFUL_FAILOVER = "PostUnsuccessfulFailoverProcesses"
    PRE_GRACEFUL_TAKEOVER = "PreGracefulTakeoverProcesses"
    POST_GRACEFUL_TAKEOVER = "PostGracefulTakeoverProcesses"
    POST_TAKE_MASTER = "PostTakeMasterProcesses"

    @property
    def aborts_on_failure(self) -> bool:
        """Whether a failing hook stops the stage and the operation (``HookFailed``)."""
        return self in _ABORTING_STAGES


_ABORTING_STAGES = frozenset(
    {HookStage.ON_FAILURE_DETECTION, HookStage.PRE_FAILOVER, HookStage.PRE_GRACEFUL_TAKEOVER}
)


def validate_hook_timeout(value: object, *, setting: str = "HookTimeoutSeconds") -> float:
    """``value`` as a hook timeout in seconds: a finite number in (0, 3600]; ``ConfigError``
    naming ``setting`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(setting, f"must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(setting, f"must be more than 0 seconds, not {value!r}")
    if seconds > MAX_HOOK_TIMEOUT_SECONDS:
        raise ConfigError(
            setting, f"must be at most {MAX_HOOK_TIMEOUT_SECONDS:g} seconds, not {value!r}"
        )
    return seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class HookSettings:
    """The hook commands of every stage and the one timeout they all get."""

    on_failure_detection_processes: tuple[str, ...] = ()
    pre_failover_processes: tuple[str, ...] = ()
    post_master_failover_processes: tuple[str, ...] = ()
    post_intermediate_master_failover_processes: tuple[str, ...] = ()
    post_failover_processes: tuple[str, ...] = ()
    post_unsuccessful_failover_processes: tuple[str, ...] = ()
    pre_graceful_takeover_processes: tuple[str, ...] = ()
    post_graceful_takeover_processes: tuple[str, ...] = ()
    post_take_master_processes: tuple[str, ...] = ()
    timeout_seconds: float = DEFAULT_HOOK_TIMEOUT_SECONDS
    # names of the worker's environment variables passed to hooks besides the allow-list
    environment_pass_through: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout_seconds", validate_hook_timeout(self.timeout_seconds))
        for stage, name in _FIELD_OF_STAGE.items():
            commands: object = getattr(self, name)
            if isinstance(commands, str | bytes) or not isinstance(commands, Sequence):
                raise ConfigError(stage.value, "must be a list of command strings")
            if not all(isinstance(command, str) for command in commands):
                raise ConfigError(stage.value, "must be a list of command strings")
            object.__setattr__(self, name, tuple(commands))

    def commands(self, stage: HookStage) -> tuple[str, ...]:
        """The commands configured for ``stage``."""
        commands: tuple[str, ...] = getattr(self, _FIELD_OF_STAGE[stage])
        return commands


_FIELD_OF_STAGE: dict[HookStage, str] = {
    HookStage.ON_FAILURE_DETECTION: "on_failure_detection_processes",
    HookStage.PRE_FAILOVER: "pre_failover_processes",
    HookStage.POST_MASTER_FAILOVER: "post_master_failover_processes",
    HookStage.POST_INTERMEDIATE_MASTER_FAILOVER: "post_intermediate_master_failover_processes",
    HookStage.POST_FAILOVER: "post_failover_processes",
    HookStage.POST_UNSUCCESSFUL_FAILOVER: "post_unsuccessful_failover_processes",
    HookStage.PRE_GRACEFUL_TAKEOVER: "pre_graceful_takeover_processes",
    HookStage.POST_GRACEFUL_TAKEOVER: "post_graceful_takeover_processes",
    HookStage.POST_TAKE_MASTER: "post_take_master_processes",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HookResult:
    """One hook run, as the audit keeps it."""

    stage: HookStage
    command: str
    """The command as run: placeholders substituted, a trailing ``&`` removed."""
    configured: str
    """The command as configured."""
    exit_code: int | None
    """The shell's exit status (127: command not found; negative: the shell was killed by that
    signal); None when it was killed at its timeout or could not be started."""
    output: str
    """The end of the combined stdout and stderr (at most ``output_limit`` bytes)."""
    duration: float
    """Seconds from start to exit (or to the kill)."""
    timed_out: bool = False
    output_truncated: bool = False
    detached: bool = False
    """An asynchronous hook (trailing ``&``): never aborts anything."""
    error: str = ""
    """Why the hook could not be started, if it could not."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        """One human sentence: which hook, and how it ended."""
        if self.timed_out:
            outcome = f"killed at its timeout after {self.duration:.3g}s"
        elif self.error:
            outcome = f"could not be started: {self.error}"
        else:
            outcome = f"exited with {self.exit_code} after {self.duration:.3g}s"
        kind = "async hook" if self.detached else "hook"
        return redact(f"{self.stage.value} {kind} {self.command!r} {outcome}")


class HookFailed(OperationRefused):
    """A ``Pre*`` (or ``OnFailureDetection``) hook failed, timed out or could not be started:
    the operation is refused and the stage's remaining hooks did not run."""

    def __init__(self, result: HookResult) -> None:
        super().__init__(result.describe())
        self.result = result


HookAudit = Callable[[HookResult], Awaitable[None] | None]


class DetachedHooks:
    """Owner of the asynchronous (trailing ``&``) hooks, so a recovery does not wait for them.

    ``async with DetachedHooks() as detached:`` around the worker's loop; leaving it waits for
    the hooks still running (each is bounded by its timeout); cancelling that wait kills them.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[HookResult]] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._tasks)

    def start(self, hook: Coroutine[Any, Any, HookResult]) -> None:
        if self._closed:
            hook.close()
            raise RuntimeError("DetachedHooks is closed")
        task = asyncio.get_running_loop().create_task(hook)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait for the running hooks; idempotent."""
        self._closed = True
        await _wait_for_all(list(self._tasks))

    async def __aenter__(self) -> DetachedHooks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def run_hooks(
    stage: HookStage,
    commands: Sequence[str],
    context: HookContext,
    *,
    timeout: float,  # noqa: ASYNC109 - each hook gets its own deadline, not the whole call
    audit: HookAudit | None = None,
    detached: DetachedHooks | None = None,
    output_limit: int = OUTPUT_LIMIT_BYTES,
    arguments: Sequence[str] = (),
    pass_through: Sequence[str] = (),
) -> list[HookResult]:
    """Run ``commands`` of ``stage`` one after the other (see the module docstring); ``timeout``
    is in seconds, for each hook. ``arguments`` are each hook's positional parameters (``$1``,
    ``$2``...; orchestrator passes the successor and the demoted master to
    ``PostTakeMasterProcesses`` so). ``pass_through``: the worker's environment variables a
    hook gets besides the allow-list (``hook_environment``).

    Returns the result of every synchronous hook that ran, in order; ``audit`` is called with
    each result (asynchronous hooks' too) as soon as it is known. Raises ``HookFailed`` in a
    ``Pre*`` stage, after auditing the failed hook. Cancellation kills the running hook.
    """
    runner = _Runner(
        stage=stage,
        env=hook_environment(context, pass_through=pass_through),
        timeout_seconds=validate_hook_timeout(timeout, setting="timeout"),
        output_limit=output_limit,
        arguments=tuple(arguments),
    )
    results: list[HookResult] = []
    waited: list[asyncio.Task[HookResult]] = []
    try:
        for configured in commands:
            text, is_async = _split_async(configured)
            command = substitute_placeholders(text, context)
            if is_async:
                hook = runner.run_detached(command, configured, audit)
                if detached is not None:
                    detached.start(hook)
                else:
                    waited.append(asyncio.get_running_loop().create_task(hook))
                continue
            result = await runner.run(command, configured)
            _log_result(result)
            results.append(result)
            await _call_audit(audit, result)
            if not result.succeeded and stage.aborts_on_failure:
                log.warning("not running further %s hooks", stage.value)
                raise HookFailed(result)
    finally:
        await _wait_for_all(waited)
    return results


def _split_async(command: str) -> tuple[str, bool]:
    """orchestrator's rule: a command ending in ``&`` (after trimming) runs asynchronously;
    every trailing ``&`` is removed."""
    stripped = command.strip()
    if stripped.endswith("&"):
        return stripped.rstrip("&"), True
    return stripped, False


async def _call_audit(audit: HookAudit | None, result: HookResult) -> None:
    if audit is None:
        return
    outcome = audit(result)
    if inspect.isawaitable(outcome):
        await outcome


def _log_result(result: HookResult) -> None:
    level = logging.INFO if result.succeeded else logging.WARNING
    log.log(level, "%s; output: %s", result.describe(), result.output[-2000:])


async def _wait_for_all(tasks: list[asyncio.Task[HookResult]]) -> None:
    """Wait for the asynchronous hooks ``tasks`` (an error in one is logged, since nobody reads
    their results); if the wait is cancelled, cancel (and so kill) them, then re-raise."""
    if not tasks:
        return
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            log.error("an asynchronous hook failed to run", exc_info=outcome)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Runner:
    """Runs single hooks of one stage with one environment and timeout."""

    stage: HookStage
    env: Mapping[str, str]
    timeout_seconds: float
    output_limit: int
    arguments: tuple[str, ...] = ()

    async def run_detached(
        self, command: str, configured: str, audit: HookAudit | None
    ) -> HookResult:
        result = await self.run(command, configured, is_detached=True)
        _log_result(result)
        try:
            await _call_audit(audit, result)
        except Exception:  # nobody reads a detached hook's result: never leave this unretrieved
            log.exception("auditing %s failed", result.describe())
        return result

    async def run(self, command: str, configured: str, *, is_detached: bool = False) -> HookResult:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        exit_code: int | None = None
        timed_out = False
        error = ""
        with contextlib.ExitStack() as files:
            try:
                sink = files.enter_context(tempfile.TemporaryFile())
            except OSError as exc:
                error = f"no file for its output: {exc}"
                return self._result(command, configured, is_detached, error=error)
            try:
                process = await asyncio.create_subprocess_exec(
                    _SHELL,
                    "-c",
                    _SUPERVISOR,
                    _SUPERVISOR_NAME,
                    command,
                    *self.arguments,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=dict(self.env),
                    start_new_session=True,
                    close_fds=True,
                    # Only prctl(2) and getppid(2) run in the child, after CPython's post-fork
                    # reset.
                    preexec_fn=_death_signal_preexec(),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                error = str(exc) or type(exc).__name__
            else:
                try:
                    async with asyncio.timeout(self.timeout_seconds):
                        exit_code = await process.wait()
                except TimeoutError:
                    timed_out = True
                    _kill_group(process.pid)
                    await process.wait()
                except asyncio.CancelledError:
                    _kill_group(process.pid)
                    await process.wait()
                    raise
            duration = time.monotonic() - started
            output, truncated = _tail(sink, self.output_limit)
            output = redact(output)
        return self._result(
            command,
            configured,
            is_detached,
            exit_code=exit_code,
            output=output,
            duration=duration,
            timed_out=timed_out,
            output_truncated=truncated,
            error=error,
            started_at=started_at,
        )

    def _result(
        self,
        command: str,
        configured: str,
        is_detached: bool,
        *,
        exit_code: int | None = None,
        output: str = "",
        duration: float = 0.0,
        timed_out: bool = False,
        output_truncated: bool = False,
        error: str = "",
        started_at: datetime | None = None,
    ) -> HookResult:
        return HookResult(
            stage=self.stage,
            command=command,
            configured=configured,
            exit_code=exit_code,
            output=error or output,
            duration=duration,
            timed_out=timed_out,
            output_truncated=output_truncated,
            detached=is_detached,
            error=error,
            started_at=started_at or datetime.now(UTC),
        )


def _kill_group(pgid: int) -> None:
    """SIGKILL the hook's process group (its session leader's pid is the group id)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(sink: IO[bytes], limit: int) -> tuple[str, bool]:
    """The last ``limit`` bytes written to ``sink`` (decoded, invalid UTF-8 replaced) and
    whether anything before them was dropped. A small read from the page cache."""
    size = sink.seek(0, os.SEEK_END)
    start = max(0, size - limit)
    sink.seek(start)
    data = sink.read(size - start)
    return data.decode("utf-8", errors="replace"), start > 0


@functools.cache
def _libc_prctl() -> Callable[..., int]:
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def _death_signal_preexec() -> Callable[[], None]:
    """A preexec_fn giving the child SIGTERM when its parent (thread) dies; the supervisor
    shell turns that into SIGKILL for the whole group. Mirrors
    ``orchestrator_cli.children``, which the recovery service cannot import."""
    prctl = _libc_prctl()  # loaded before fork: no dlopen in the child
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(127)

    return preexec
