"""The command responder's answers, with a fake request message: a handler's refusal, an
operation cancelled mid-way (the worker stopped leading) that still gets an answer, and the
requests it refuses before anything runs (subject mismatch, unsigned, forged, expired, replayed),
each audited."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from orchestrator_recovery.operations.commands import CommandResponder, Leadership
from orchestrator_shared.bus import CommandReply, CommandRequest, Subjects
from orchestrator_shared.command_signing import CommandSigner, CommandVerifier
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.host_policy import HostPolicy

pytestmark = pytest.mark.unit


KEY = "k" * 64
SIGNER = CommandSigner(KEY)


class FakeMsg:
    def __init__(
        self, request: CommandRequest, *, subject: str = "", signer: CommandSigner | None = SIGNER
    ) -> None:
        self.subject = subject or f"orchestrator.v1.command.{request.operation}"
        sent = request if signer is None else signer.sign(request)
        self.data = sent.to_json()
        self.reply = "inbox"
        self.answers: list[CommandReply] = []

    async def respond(self, data: bytes) -> None:
        self.answers.append(CommandReply.model_validate_json(data))


def responder(
    audits: list[AuditEvent] | None = None,
    verifier: CommandVerifier | None = None,
    hosts: HostPolicy | None = None,
    max_in_progress: int = 256,
    **operations: Any,
) -> CommandResponder:
    async def guard() -> object:
        return None

    async def audit(event: AuditEvent) -> bool:
        if audits is not None:
            audits.append(event)
        return True

    return CommandResponder(
        cast("Any", None),
        Subjects(),
        cast("Any", None),
        cast("Any", None),
        Leadership(lambda: True, guard, lambda: 1),
        operations=operations,
        verifier=verifier or CommandVerifier(KEY),
        audit=audit,
        hosts=hosts,
        max_in_progress=max_in_progress,
    )


async def test_a_refusal_is_answered_with_its_reason() -> None:
    async def refuse(request: CommandRequest) -> CommandReply:
        raise OperationRefused("db:2 is not a replica")

    msg = FakeMsg(CommandRequest(operation="stop-replica", instance="db:2"))
    answering = responder(**{"stop-replica": refuse})
    await answering._answer(cast("Any", msg))
    [answer] = msg.answers
    assert (answer.ok, answer.error) == (False, "db:2 is not a replica")
    assert answering.answered == {("stop-replica", "refused"): 1}


async def test_the_operations_counted_are_the_known_ones() -> None:
    """An operation name nobody handles is counted as ``other``: a client cannot make up
    metric labels."""
    answering = responder()
    for name in ("no-such-operation", "another-made-up-one"):
        await answering._answer(cast("Any", FakeMsg(CommandRequest(operation=name))))
    assert answering.answered == {("other", "refused"): 2}


async def test_a_handler_that_fails_unexpectedly_is_still_answered_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def buggy(request: CommandRequest) -> CommandReply:
        raise KeyError("password=hunter2 in a bug's message")

    msg = FakeMsg(CommandRequest(operation="stop-replica", instance="db:2"))
    answering = responder(**{"stop-replica": buggy})
    with caplog.at_level(logging.ERROR):
        await answering._answer(cast("Any", msg))
    [answer] = msg.answers
    assert answer.ok is False and answer.error is not None
    assert answer.error.startswith("stop-replica failed in the recovery worker (KeyError)")
    assert "\n" not in answer.error and "hunter2" not in answer.error
    assert answering.internal_errors == 1
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "stop-replica failed unexpectedly" in record.getMessage() and record.exc_info


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


# --- requests refused before anything runs ------------------------------------------------------


async def _refused_and_audited(msg: FakeMsg, verifier: CommandVerifier | None = None) -> str:
    ran: list[CommandRequest] = []

    async def set_writeable(request: CommandRequest) -> CommandReply:
        ran.append(request)
        return CommandReply(ok=True, operation=request.operation)

    audits: list[AuditEvent] = []
    worker = responder(
        audits, verifier, **{"set-writeable": set_writeable, "stop-replica": set_writeable}
    )
    await worker._answer(cast("Any", msg))
    [answer] = msg.answers
    assert not answer.ok and answer.error.startswith("command refused: ")
    assert ran == []
    [audit] = audits
    assert (audit.type, audit.ok, audit.details["subject"]) == (
        "command-refused",
        False,
        msg.subject,
    )
    assert KEY not in audit.model_dump_json() and "signature" not in audit.details
    return answer.error.removeprefix("command refused: ")


async def test_the_operation_must_be_the_subjects() -> None:
    msg = FakeMsg(
        CommandRequest(operation="set-writeable", instance="db:1"),
        subject="orchestrator.v1.command.stop-replica",
    )
    reason = await _refused_and_audited(msg)
    assert reason == "the request's operation 'set-writeable' is not the subject's 'stop-replica'"


async def test_unsigned_and_forged_commands_are_refused() -> None:
    unsigned = FakeMsg(CommandRequest(operation="set-writeable", instance="db:1"), signer=None)
    assert await _refused_and_audited(unsigned) == "the command is not signed"
    forged = FakeMsg(
        CommandRequest(operation="set-writeable", instance="db:1", requested_by="mallory"),
        signer=CommandSigner("x" * 64),
    )
    assert await _refused_and_audited(forged) == (
        "the command's signature is not valid (forged or altered)"
    )


async def test_a_replayed_command_is_refused_the_second_time() -> None:
    msg = FakeMsg(CommandRequest(operation="set-writeable", instance="db:1"))
    verifier = CommandVerifier(KEY)
    first = FakeMsg(CommandRequest(operation="set-writeable"))
    first.data = msg.data
    await responder(None, verifier, **{"set-writeable": _ok})._answer(cast("Any", first))
    assert [answer.ok for answer in first.answers] == [True]
    assert (
        await _refused_and_audited(msg, verifier) == "the command was already received (a replay)"
    )


async def test_a_worker_without_a_key_refuses_unless_unsigned_commands_are_allowed() -> None:
    msg = FakeMsg(CommandRequest(operation="set-writeable", instance="db:1"), signer=None)
    reason = await _refused_and_audited(msg, CommandVerifier(""))
    assert reason.startswith("no CommandSigningKey is configured on this worker")
    allowed = FakeMsg(CommandRequest(operation="set-writeable", instance="db:1"), signer=None)
    await responder(
        None, CommandVerifier("", allow_unsigned=True), **{"set-writeable": _ok}
    )._answer(cast("Any", allowed))
    assert [answer.ok for answer in allowed.answers] == [True]


async def _ok(request: CommandRequest) -> CommandReply:
    return CommandReply(ok=True, operation=request.operation)


async def test_past_its_bound_a_command_is_answered_busy_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def slow(request: CommandRequest) -> CommandReply:
        await release.wait()
        return CommandReply(ok=True, operation=request.operation)

    bounded = responder(max_in_progress=2, **{"stop-replica": slow})
    msgs = [FakeMsg(CommandRequest(operation="stop-replica", instance=f"db:{n}")) for n in range(5)]
    for msg in msgs:
        await bounded._on_request(cast("Any", msg))
    await asyncio.sleep(0)
    assert [len(m.answers) for m in msgs] == [0, 0, 1, 1, 1]  # the last three at once
    assert msgs[2].answers[0].error == (
        "active recovery worker is busy: 2 commands in progress; try again"
    )
    assert bounded.busy_refusals == 3
    busy_lines = [r for r in caplog.records if "commands in progress" in r.getMessage()]
    assert len(busy_lines) == 1  # one line when the bound is reached, not one per command
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [m.answers[0].ok for m in msgs[:2]] == [True, True]
    late = FakeMsg(CommandRequest(operation="stop-replica", instance="db:9"))
    await bounded._on_request(cast("Any", late))
    for _ in range(5):
        await asyncio.sleep(0)
    assert late.answers[0].ok  # room again
    assert bounded.answered == {("stop-replica", "busy"): 3, ("stop-replica", "ok"): 3}
