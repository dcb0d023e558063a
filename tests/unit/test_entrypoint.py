"""The services' common start and stop (orchestrator_adapters.entrypoint): one line and exit 2
for a bad configuration, one line and exit 1 for a failure, exit 0 on a stop signal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator_adapters.entrypoint import (
    EXIT_BAD_CONFIGURATION,
    EXIT_FAILED,
    EXIT_OK,
    BadConfiguration,
    ServiceEntry,
    cancel_on_stop_signals,
    on_stop_signals,
    run_main,
    service_cli,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import BusError

pytestmark = pytest.mark.unit


def entry(check: Callable[[Settings], None] | None = None) -> ServiceEntry:
    base = ServiceEntry(
        prog="orchestrator-test",
        description="a test service",
        service="test",
        log=logging.getLogger("orchestrator_test"),
        failures=(BusError,),
    )
    return base if check is None else dataclasses.replace(base, check=check)


async def never_started(_settings: Settings) -> None:
    raise AssertionError("main ran despite a bad configuration")


def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(json.dumps({"InstancePollSeconds": -1}))
    code = service_cli(entry(), never_started, ["--config", str(config)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_CONFIGURATION
    assert err.startswith("orchestrator-test: bad configuration: InstancePollSeconds")
    assert err.count("\n") == 1


def test_a_service_check_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text("{}")

    def check(_settings: Settings) -> None:
        raise BadConfiguration("X and Y are required")

    code = service_cli(entry(check=check), never_started, ["--config", str(config)])
    assert code == EXIT_BAD_CONFIGURATION
    assert capsys.readouterr().err == "orchestrator-test: bad configuration: X and Y are required\n"


def test_a_failure_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        raise BusError("NATS: no server answered")

    assert run_main("orchestrator-test", main(), failures=(BusError,)) == EXIT_FAILED
    assert capsys.readouterr().err == "orchestrator-test: NATS: no server answered\n"


def test_anything_else_is_not_swallowed() -> None:
    async def main() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_main("orchestrator-test", main(), failures=(BusError,))


def test_an_interrupt_before_the_handlers_is_a_clean_exit() -> None:
    async def main() -> None:
        raise KeyboardInterrupt

    assert run_main("orchestrator-test", main(), failures=(BusError,)) == EXIT_OK


@pytest.fixture
def signal_handlers_restored() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("signal_handlers_restored")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_calls_back_or_cancels(signum: int) -> None:
    async def wait_for_event() -> str:
        stop = asyncio.Event()
        on_stop_signals(stop.set)
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), 5)
        return "stopped"

    async def cancelled() -> str:
        cancel_on_stop_signals()
        os.kill(os.getpid(), signum)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "cancelled"
        return "not cancelled"

    assert asyncio.run(wait_for_event()) == "stopped"
    assert asyncio.run(cancelled()) == "cancelled"
