"""Signed commands (orchestrator_shared.command_signing): what the signature covers, expiry,
replays, the subject's operation, and the settings that configure them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.command_signing import (
    MAX_VALIDITY_SECONDS,
    CommandSigner,
    CommandVerifier,
    NonceCache,
    command_signer,
    generate_key,
    signer_warnings,
    subject_operation,
)
from tests.unit.test_config_orchestrator_keys import load, one_line_error

pytestmark = pytest.mark.unit

KEY = generate_key()
T0 = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)
SUBJECT = "orchestrator.v1.command.set-writeable"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _wire(request: CommandRequest) -> CommandRequest:
    """As the worker reads it off the bus."""
    return CommandRequest.model_validate_json(request.to_json())


def test_a_signed_request_survives_the_wire_once() -> None:
    clock = Clock()
    signed = CommandSigner(KEY, clock=clock).sign(
        CommandRequest(operation="set-writeable", instance="db:1", requested_by="alice")
    )
    assert signed.expires_at == T0 + timedelta(seconds=30)
    assert len(signed.nonce) == 32 and len(signed.signature) == 64
    verifier = CommandVerifier(KEY, clock=clock)
    assert verifier.refusal(SUBJECT, _wire(signed)) is None
    assert verifier.refusal(SUBJECT, _wire(signed)) == "the command was already received (a replay)"


def test_every_field_is_covered_by_the_signature() -> None:
    clock = Clock()
    signed = CommandSigner(KEY, clock=clock).sign(
        CommandRequest(operation="set-writeable", instance="db:1", requested_by="alice")
    )
    forged = "the command's signature is not valid (forged or altered)"
    for change in (
        {"requested_by": "admin"},
        {"instance": "db:2"},
        {"arguments": {"force": "true"}},
        {"expires_at": T0 + timedelta(seconds=60)},
        {"nonce": "0" * 32},
    ):
        altered = signed.model_copy(update=change)
        assert CommandVerifier(KEY, clock=clock).refusal(SUBJECT, _wire(altered)) == forged


def test_an_expired_or_overlong_request_is_refused() -> None:
    clock = Clock()
    signer = CommandSigner(KEY, validity_seconds=30, clock=clock)
    verifier = CommandVerifier(KEY, clock=clock)
    late = signer.sign(CommandRequest(operation="set-writeable"))
    clock.now = T0 + timedelta(seconds=30)
    assert (verifier.refusal(SUBJECT, _wire(late)) or "").startswith("the command expired at")
    clock.now = T0
    overlong = CommandSigner(KEY, validity_seconds=MAX_VALIDITY_SECONDS + 1, clock=clock).sign(
        CommandRequest(operation="set-writeable")
    )
    assert verifier.refusal(SUBJECT, _wire(overlong)) == "the command is valid for more than 600 s"


def test_the_nonce_cache_forgets_what_has_expired() -> None:
    cache = NonceCache()
    cache.remember("a", T0 + timedelta(seconds=5))
    cache.remember("b", T0 + timedelta(seconds=50))
    assert cache.seen("a", T0) and cache.seen("b", T0)
    assert not cache.seen("a", T0 + timedelta(seconds=5))
    assert len(cache) == 1


def test_the_operation_is_the_subjects_last_token() -> None:
    assert subject_operation("orchestrator.v1.command.relocate") == "relocate"
    request = CommandSigner(KEY).sign(CommandRequest(operation="set-writeable"))
    refusal = CommandVerifier(KEY).refusal("orchestrator.v1.command.stop-replica", request)
    assert refusal == "the request's operation 'set-writeable' is not the subject's 'stop-replica'"
    unsigned = CommandVerifier("", allow_unsigned=True)
    assert unsigned.refusal("x.v1.command.relocate", CommandRequest(operation="move-up"))
    assert unsigned.refusal("x.v1.command.move-up", CommandRequest(operation="move-up")) is None


def test_a_key_set_means_signatures_are_required_even_with_the_opt_out() -> None:
    verifier = CommandVerifier(KEY, allow_unsigned=True)
    assert verifier.refusal(SUBJECT, CommandRequest(operation="set-writeable")) == (
        "the command is not signed"
    )
    assert KEY not in repr(verifier) and KEY not in repr(CommandSigner(KEY))


def test_settings_for_signing(tmp_path: Path) -> None:
    assert command_signer(load(tmp_path, {}).settings) is None
    signer = command_signer(
        load(tmp_path, {"CommandSigningKey": KEY, "CommandExpirySeconds": 5}).settings
    )
    assert signer is not None
    assert signer.sign(CommandRequest(operation="x")).expires_at is not None
    message = one_line_error(tmp_path, {"CommandSigningKey": "short-secret"})
    assert message == (
        "CommandSigningKey: expected at least 32 characters (e.g. openssl rand -hex 32), got 12"
    )
    assert "short-secret" not in message
    opted_out = load(tmp_path, {"AllowUnsignedCommands": True})
    assert any("AllowUnsignedCommands" in warning for warning in opted_out.warnings)
    assert not load(tmp_path, {"CommandSigningKey": KEY}).warnings
    secret = tmp_path / "signing-key"
    secret.write_text(KEY + "\n")
    from_file = load(tmp_path, None, {"ORCHESTRATOR_CommandSigningKey_FILE": str(secret)})
    assert from_file.settings.CommandSigningKey == KEY
    assert KEY not in repr(from_file.settings)


def test_the_api_warns_when_it_would_send_unsigned_commands(tmp_path: Path) -> None:
    [warning] = signer_warnings(load(tmp_path, {}).settings)
    assert warning.startswith("CommandSigningKey is not set: commands are sent unsigned")
    assert signer_warnings(load(tmp_path, {"CommandSigningKey": KEY}).settings) == []
    assert signer_warnings(load(tmp_path, {"AllowUnsignedCommands": True}).settings) == []
