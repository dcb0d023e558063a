"""A failed command's reply says what kind of failure it is, and the API's status follows from
that kind, not from the error's wording; a reply without a kind (a worker of the previous
version, mid rolling-upgrade) is still read by its wording, with the same statuses as before."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from orchestrator_api.http.context import command_status
from orchestrator_recovery.operations.commands import CommandResponder
from orchestrator_shared.bus import CommandFailure, CommandReply, CommandRequest
from orchestrator_shared.command_signing import CommandSigner, CommandVerifier
from orchestrator_shared.errors import LeaseLost, OperationRefused
from tests.unit.test_command_responder import responder

pytestmark = pytest.mark.unit

SIGNING_KEY = "s" * 64


@dataclass
class Request:
    """The part of a NATS request message the responder reads and answers."""

    subject: str
    data: bytes
    reply: str = "inbox"
    answers: list[CommandReply] = field(default_factory=list)

    @classmethod
    def of(cls, operation: str, *, signed: bool = True) -> Request:
        request = CommandRequest(operation=operation, instance="db:1")
        sent = CommandSigner(SIGNING_KEY).sign(request) if signed else request
        return cls(f"orchestrator.v1.command.{operation}", sent.to_json())

    async def respond(self, data: bytes) -> None:
        self.answers.append(CommandReply.model_validate_json(data))


def answering(max_in_progress: int = 256, **operations: Any) -> CommandResponder:
    """The responder of test_command_responder, verifying with this file's key."""
    return responder(
        verifier=CommandVerifier(SIGNING_KEY), max_in_progress=max_in_progress, **operations
    )


async def answer_of(responder: CommandResponder, msg: Request) -> CommandReply:
    await responder._answer(cast("Any", msg))
    [reply] = msg.answers
    return reply


async def test_a_refusal_by_the_operation_or_the_verifier_is_refused() -> None:
    async def refuse(request: CommandRequest) -> CommandReply:
        raise OperationRefused("db:1 is not a replica")

    responder = answering(**{"stop-replica": refuse})
    by_operation = await answer_of(responder, Request.of("stop-replica"))
    unsigned = await answer_of(responder, Request.of("stop-replica", signed=False))
    unknown = await answer_of(responder, Request.of("no-such-operation"))
    bad = Request("orchestrator.v1.command.stop-replica", b"{}")
    malformed = await answer_of(responder, bad)
    for reply in (by_operation, unsigned, unknown, malformed):
        assert (reply.ok, reply.kind, command_status(reply)) == (
            False,
            CommandFailure.REFUSED,
            409,
        )


async def test_a_bug_in_the_worker_is_failed() -> None:
    async def buggy(request: CommandRequest) -> CommandReply:
        raise KeyError("a bug")

    reply = await answer_of(answering(**{"stop-replica": buggy}), Request.of("stop-replica"))
    assert (reply.kind, command_status(reply)) == (CommandFailure.FAILED, 409)


async def test_a_leader_that_stops_leading_mid_way_is_unavailable() -> None:
    async def lost(request: CommandRequest) -> CommandReply:
        raise LeaseLost("fencing token 7 is stale")

    started = asyncio.Event()

    async def cancelled(request: CommandRequest) -> CommandReply:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    reply = await answer_of(answering(**{"stop-replica": lost}), Request.of("stop-replica"))
    assert (reply.kind, command_status(reply)) == (CommandFailure.UNAVAILABLE, 503)

    msg = Request.of("stop-replica")
    task = asyncio.create_task(answering(**{"stop-replica": cancelled})._answer(cast("Any", msg)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [reply] = msg.answers
    assert (reply.kind, command_status(reply)) == (CommandFailure.UNAVAILABLE, 503)


async def test_a_busy_worker_says_busy_and_the_api_answers_409_as_before() -> None:
    release = asyncio.Event()

    async def slow(request: CommandRequest) -> CommandReply:
        await release.wait()
        return CommandReply(ok=True, operation=request.operation)

    responder = answering(max_in_progress=1, **{"stop-replica": slow})
    first, second = Request.of("stop-replica"), Request.of("stop-replica")
    await responder._on_request(cast("Any", first))
    await responder._on_request(cast("Any", second))
    [reply] = second.answers
    assert (reply.kind, command_status(reply)) == (CommandFailure.BUSY, 409)
    release.set()
    await asyncio.sleep(0.01)
    assert first.answers[0].ok and first.answers[0].kind is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("no active recovery worker is running", 503),
        ("active recovery worker did not answer within 120s", 503),
        ("active recovery worker did not finish: fencing token 7 is stale", 503),
        ("active recovery worker is busy: 256 commands in progress; try again", 409),
        ("command refused: the command is not signed", 409),
        ("db:1 is not a replica", 409),
    ],
)
def test_a_reply_without_a_kind_is_read_by_its_wording(error: str, status: int) -> None:
    assert command_status(CommandReply(ok=False, operation="relocate", error=error)) == status


def test_a_kind_this_version_does_not_know_is_read_as_none() -> None:
    body = {"ok": False, "operation": "relocate", "error": "db:1 is gone", "kind": "vanished"}
    reply = CommandReply.model_validate(body)
    assert reply.kind is None and command_status(reply) == 409
    old = CommandReply.model_validate({"ok": False, "operation": "relocate", "error": "x"})
    assert old.kind is None
