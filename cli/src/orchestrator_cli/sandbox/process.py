"""Starting, signalling and reaping ``mariadbd`` processes.

A node process is identified by its pid *and* its command line (which names the node's
``my.cnf``), so a recycled pid is never mistaken for a node. Processes this interpreter
started are reaped through their :class:`subprocess.Popen`; processes started by another
process (a sandbox loaded from ``sandbox.json``) are watched through ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from orchestrator_cli.children import spawn_child
from orchestrator_shared.errors import SandboxError

_DEAD = frozenset({None, "Z", "X", "x"})  # /proc state letters of a process that is no more
_POLL_S = 0.02


class ProcessState(Enum):
    RUNNING = "running"
    STOPPED = "stopped"  # SIGSTOPped (hung on purpose)
    GONE = "gone"


def spawn(
    mariadbd: Path,
    config_file: Path,
    *,
    cwd: Path,
    log: Path,
    parent_death_signal: bool,
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start ``mariadbd --defaults-file=CONFIG [EXTRA_ARGS]`` in its own session (Ctrl-C does
    not reach it).

    Its stdout/stderr are appended to ``log`` (its error log too, so the errors it prints
    before opening that log, e.g. a bad option, land there). With ``parent_death_signal``
    the kernel SIGKILLs it when this process dies.
    """
    try:
        return spawn_child(
            [str(mariadbd), f"--defaults-file={config_file}", *extra_args],
            cwd=cwd,
            log=log,
            parent_death_signal=parent_death_signal,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start {mariadbd}: {exc}") from exc


class NodeProcesses:
    """The node processes of one sandbox, by pid, with the Popen of those started here."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[int, int | None] = {}

    def adopt(self, process: subprocess.Popen[bytes]) -> int:
        self._children[process.pid] = process
        return process.pid

    def state(self, pid: int | None, config_file: Path) -> ProcessState:
        if pid is None:
            return ProcessState.GONE
        child = self._children.get(pid)
        if child is not None:
            # Our own child: waitpid() is the truth (its /proc cmdline is Python's until exec).
            if child.poll() is None:
                letter = _state_letter(pid)
                if letter not in _DEAD or child.poll() is None:
                    return _alive_state(letter)
            self._exit_codes[pid] = child.returncode
            self._children.pop(pid, None)  # another thread may have reaped it first
            return ProcessState.GONE
        letter = _state_letter(pid) if _is_node(pid, config_file) else None
        return ProcessState.GONE if letter in _DEAD else _alive_state(letter)

    def is_alive(self, pid: int | None, config_file: Path) -> bool:
        return self.state(pid, config_file) is not ProcessState.GONE

    def exit_code(self, pid: int) -> int | None:
        """How a child started here ended (negative: killed by that signal), once reaped."""
        return self._exit_codes.get(pid)

    def signal(self, pid: int | None, config_file: Path, signum: int) -> bool:
        """Send ``signum`` if the node is alive; whether it was."""
        if pid is None or not self.is_alive(pid, config_file):
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def wait_gone(self, targets: Sequence[tuple[int | None, Path]], timeout: float) -> list[int]:
        """Wait until every ``(pid, config)`` is gone; the pids still alive at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [pid for pid, config in targets if self.is_alive(pid, config)]
            if not alive or time.monotonic() >= deadline:
                return [pid for pid in alive if pid is not None]
            time.sleep(_POLL_S)

    def terminate(self, targets: Sequence[tuple[int | None, Path]], *, grace: float) -> None:
        """SIGCONT + SIGTERM every live target, SIGKILL those still alive after ``grace``."""
        for pid, config in targets:
            if self.signal(pid, config, signal.SIGCONT):
                self.signal(pid, config, signal.SIGTERM)
        survivors = set(self.wait_gone(targets, grace))
        if not survivors:
            return
        remaining = [(pid, config) for pid, config in targets if pid in survivors]
        self.kill(remaining)

    def kill(self, targets: Sequence[tuple[int | None, Path]]) -> None:
        for pid, config in targets:
            self.signal(pid, config, signal.SIGKILL)
        survivors = self.wait_gone(targets, 10.0)
        if survivors:
            raise SandboxError(f"mariadbd pids {survivors} survived SIGKILL")


def _alive_state(letter: str | None) -> ProcessState:
    return ProcessState.STOPPED if letter in ("T", "t") else ProcessState.RUNNING


def _is_node(pid: int, config_file: Path) -> bool:
    """Whether ``pid`` runs with ``config_file`` (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"--defaults-file={config_file}".encode() in cmdline.split(b"\0")


def _state_letter(pid: int) -> str | None:
    """The state letter in ``/proc/PID/stat`` (R, S, T, Z...), None when there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]
