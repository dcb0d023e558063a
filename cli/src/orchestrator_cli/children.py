"""Child processes that must not outlive the process that started them.

``spawn_child(..., parent_death_signal=True)`` sets ``PR_SET_PDEATHSIG=SIGKILL`` in the child, so
the kernel kills it when its parent dies, even by SIGKILL. The signal fires when the *thread*
that forked the child exits, so such children are forked by one thread that lives as long as
the interpreter (an asyncio executor thread, say, would take them along when it is recycled).
Used by the test fixtures' sandboxes and by ``orchestrator up``; the nodes of a sandbox built
by ``orchestrator sandbox up`` are started without it, since they must outlive that command.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _death_signal_preexec() -> Callable[[], None]:
    """A preexec_fn making the child receive SIGKILL when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(127)

    return preexec


_spawner: concurrent.futures.ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawner_thread() -> concurrent.futures.ThreadPoolExecutor:
    global _spawner  # noqa: PLW0603 - one per process by design
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="child-spawn"
            )
        return _spawner


def spawn_child(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    log: Path,
    parent_death_signal: bool,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (Ctrl-C in a terminal does not reach it), stdout and
    stderr appended to ``log``. Raises OSError when it cannot be started."""

    def popen() -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
                close_fds=True,
                # Only prctl(2) and getppid(2) run in the child, after CPython's post-fork reset.
                preexec_fn=_death_signal_preexec() if parent_death_signal else None,  # noqa: PLW1509
            )

    if parent_death_signal:
        return _spawner_thread().submit(popen).result()
    return popen()
