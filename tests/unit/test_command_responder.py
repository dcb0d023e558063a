"""The command responder's answers, with a fake request message: a handler's refusal, and an
operation cancelled mid-way (the worker stopped leading) that still gets an answer."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from orchestrator_recovery.commands import CommandResponder, Leadership
from orchestrator_shared.bus import CommandReply, CommandRequest, Subjects
from orchestrator_shared.errors import OperationRefused

pytestmark = pytest.mark.unit


class FakeMsg:
    def __init__(self, request: CommandRequest) -> None:
        self.subject = f"orchestrator.v1.command.{request.operation}"
        self.data = request.model_dump_json().encode()
        self.reply = "inbox"
        self.answers: list[CommandReply] = []

    async def respond(self, data: bytes) -> None:
        self.answers.append(CommandReply.model_validate_json(data))


def responder(**operations: Any) -> CommandResponder:
    async def guard() -> object:
        return None

    return CommandResponder(
        cast("Any", None),
        Subjects(),
        cast("Any", None),
        cast("Any", None),
        Leadership(lambda: True, guard, lambda: 1),
        operations=operations,
    )


async def test_a_refusal_is_answered_with_its_reason() -> None:
    async def refuse(request: CommandRequest) -> CommandReply:
        raise OperationRefused("db:2 is not a replica")

    msg = FakeMsg(CommandRequest(operation="stop-replica", instance="db:2"))
    await responder(**{"stop-replica": refuse})._answer(cast("Any", msg))
    [answer] = msg.answers
    assert (answer.ok, answer.error) == (False, "db:2 is not a replica")


async def test_an_operation_cancelled_mid_way_is_still_answered() -> None:
    started = asyncio.Event()

    async def slow(request: CommandRequest) -> CommandReply:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    msg = FakeMsg(CommandRequest(operation="graceful-master-takeover", instance="db:1"))
    task = asyncio.create_task(
        responder(**{"graceful-master-takeover": slow})._answer(cast("Any", msg))
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [answer] = msg.answers
    assert not answer.ok
    # the API answers such errors with 503 (orchestrator_api.http.context.forward)
    assert answer.error.startswith("active recovery worker did not finish")
