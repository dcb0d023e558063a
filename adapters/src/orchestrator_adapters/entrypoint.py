"""How a service process starts and stops: flags, settings, logging, signals, exit codes.

Every service (discovery, topology-api, recovery, coordinator) is one command,
``orchestrator-<name> --config FILE``, and they must behave alike for whoever runs them
(``orchestrator up``, systemd, a container, the tests): a bad configuration is one line on
stderr and exit 2, before anything is logged; a server that cannot be reached or a port that
is taken is one line and exit 1; SIGTERM or SIGINT is a graceful stop and exit 0; never a
traceback. :func:`service_cli` is that sequence, once; each service gives it a
:class:`ServiceEntry` (its name, its own checks and warnings, what stops it with exit 1) and
its main coroutine.

How the main coroutine hears the stop signals depends on what it runs, so it picks one of:
:func:`on_stop_signals` (a callback, e.g. an event the main loop waits on),
:func:`cancel_on_stop_signals` (the main task is cancelled) or
:func:`leave_stop_signals_to_uvicorn` (uvicorn's own handlers end ``serve()``).

It lives in the adapters because it does process I/O (signals, stderr, the event loop), which
the shared contracts do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.logging import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1  # a server unreachable, a port taken: one of ServiceEntry.failures
EXIT_BAD_CONFIGURATION = 2

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Main = Coroutine[Any, Any, None]


class BadConfiguration(Exception):
    """A service's own start-up check that is not about one setting (a :class:`ConfigError`
    is): ``str()`` is the line printed after ``bad configuration:``."""


def on_stop_signals(callback: Callable[[], object]) -> None:
    """Call ``callback`` in the running loop on SIGTERM or SIGINT (which then neither kills the
    process nor raises KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, callback)


def cancel_on_stop_signals() -> None:
    """SIGTERM or SIGINT cancel the current task: the stop is its CancelledError."""
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    on_stop_signals(task.cancel)


def leave_stop_signals_to_uvicorn() -> None:
    """uvicorn stops ``serve()`` on SIGTERM/SIGINT, then re-raises the signal with the handler
    it found: make that handler a no-op, so the signal ends in the clean shutdown (exit 0)
    instead of killing the process."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)


def run_main(
    prog: str,
    main: Main,
    *,
    failures: tuple[type[Exception], ...],
    runner: Callable[[Main], object] = asyncio.run,
) -> int:
    """Run ``main`` to its end: exit 0, also when SIGINT arrives before the main coroutine
    has taken the stop signals over; one of ``failures`` is ``prog: <error>`` on stderr and
    exit 1."""
    try:
        with contextlib.suppress(KeyboardInterrupt):
            runner(main)
    except failures as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _no_check(_settings: Settings) -> None:
    return None


def _no_warnings(_settings: Settings) -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class ServiceEntry:
    """What differs between the services' commands."""

    prog: str  # the command's name: argparse's prog and the prefix of every stderr line
    description: str  # for --help
    service: str  # the ``service`` field of every log line
    log: logging.Logger  # where the start-up warnings go
    failures: tuple[type[Exception], ...]  # what stops start-up or the run with exit 1
    # more configuration checks, once the settings are loaded: ConfigError or BadConfiguration
    check: Callable[[Settings], None] = _no_check
    # more start-up warnings (after the settings' own), logged once logging is set up
    warnings: Callable[[Settings], Iterable[str]] = _no_warnings
    runner: Callable[[Main], object] = asyncio.run  # or uvloop.run


def service_cli(
    entry: ServiceEntry,
    main: Callable[[Settings], Main],
    argv: list[str] | None = None,
) -> int:
    """``prog --config FILE``: settings and checks (exit 2 on a bad one), logging, the
    warnings, then ``main(settings)`` under :func:`run_main`. The exit code."""
    parser = argparse.ArgumentParser(prog=entry.prog, description=entry.description)
    parser.add_argument("--config", metavar="FILE", help="orchestrator.conf.json to read")
    args = parser.parse_args(argv)
    try:
        loaded = load_settings(args.config)
        entry.check(loaded.settings)
    except (ConfigError, BadConfiguration) as exc:
        print(f"{entry.prog}: bad configuration: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    configure_logging(entry.service)
    for warning in [*loaded.warnings, *entry.warnings(loaded.settings)]:
        entry.log.warning("%s", warning)
    return run_main(entry.prog, main(loaded.settings), failures=entry.failures, runner=entry.runner)
