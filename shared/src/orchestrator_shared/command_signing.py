"""Signed commands: topology-api signs each :class:`CommandRequest`, the recovery workers check
it (docs/bus.md, "Signed commands"; docs/security.md, "The bus").

A NATS permission to publish on ``orchestrator.v1.command.*`` is not enough to run an
operation: the request must carry an HMAC-SHA256 of its canonical body (every field but
``signature``: the operation, its instances and arguments, ``requested_by``, ``expires_at`` and
``nonce``) under the shared secret ``CommandSigningKey``. A worker refuses, before anything
runs:

- a body whose ``operation`` is not the subject's last token (so per-subject NATS permissions
  mean what they say);
- a missing or wrong signature (forged, or altered on the way);
- an expired request (``expires_at`` passed), or one valid for longer than
  :data:`MAX_VALIDITY_SECONDS` (late deliveries, and a bound on what the nonce cache holds);
- a nonce it has already accepted while that request was valid (a replay).

Pure: the clock is a parameter; the responder (``orchestrator_recovery.operations.commands``) audits
each refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from orchestrator_shared.bus import CommandRequest, MasterChanged

if TYPE_CHECKING:
    from orchestrator_shared.config import Settings

MIN_KEY_LENGTH = 32  # characters of CommandSigningKey, e.g. `openssl rand -hex 32` (64)
MAX_VALIDITY_SECONDS = 600.0  # a request may not be valid for longer than this
NONCE_BYTES = 16

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def generate_key() -> str:
    """A fresh signing key (``orchestrator up`` gives one to its children)."""
    return secrets.token_hex(32)


def canonical_body(request: BaseModel) -> bytes:
    """What the signature covers: every field of the request but ``signature``, as compact
    JSON with sorted keys (the same bytes on both sides whatever the field order on the wire).
    Any signed bus message (a command, a ``MasterChanged``) is covered the same way."""
    body = request.model_dump(mode="json", by_alias=True, exclude={"signature"})
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature_of(key: str, request: BaseModel) -> str:
    """The HMAC-SHA256 (hex) of ``request``'s canonical body under ``key``."""
    return hmac.new(key.encode(), canonical_body(request), hashlib.sha256).hexdigest()


Sealed = TypeVar("Sealed", CommandRequest, MasterChanged)


def seal(key: str, message: Sealed, *, expires_at: datetime) -> Sealed:
    """``message`` with ``expires_at``, a fresh nonce and its signature under ``key``."""
    stamped = message.model_copy(
        update={"expires_at": expires_at, "nonce": secrets.token_hex(NONCE_BYTES), "signature": ""}
    )
    return stamped.model_copy(update={"signature": signature_of(key, stamped)})


def seal_refusal(
    key: str, message: CommandRequest | MasterChanged, now: datetime, *, noun: str
) -> str | None:
    """Why a sealed ``message`` (``noun``: "the command", "the message") is not to be trusted:
    no or a wrong signature, no expiry or nonce, expired or valid for too long; None when it
    is. Its nonce is the caller's to check and remember."""
    if not message.signature:
        return f"{noun} is not signed"
    if not hmac.compare_digest(message.signature, signature_of(key, message)):
        return f"{noun}'s signature is not valid (forged or altered)"
    expires_at = message.expires_at
    if expires_at is None or not message.nonce:
        return f"{noun} carries no expiry or nonce"
    if expires_at.tzinfo is None:
        return f"{noun}'s expiry has no time zone"
    if expires_at <= now:
        return f"{noun} expired at {expires_at.isoformat()} (now {now.isoformat()})"
    if expires_at - now > timedelta(seconds=MAX_VALIDITY_SECONDS):
        return f"{noun} is valid for more than {MAX_VALIDITY_SECONDS:g} s"
    return None


def subject_operation(subject: str) -> str:
    """The operation a command subject names: its last token."""
    return subject.rsplit(".", 1)[-1]


class CommandSigner:
    """topology-api's side: stamps an expiry and a nonce on a request and signs it."""

    def __init__(self, key: str, *, validity_seconds: float = 30.0, clock: Clock = _now) -> None:
        self._key = key
        self._validity = timedelta(seconds=validity_seconds)
        self._clock = clock

    def __repr__(self) -> str:
        return f"CommandSigner(validity={self._validity.total_seconds():g}s)"

    def sign(self, request: CommandRequest) -> CommandRequest:
        return seal(self._key, request, expires_at=self._clock() + self._validity)


def command_signer(settings: Settings) -> CommandSigner | None:
    """topology-api's signer: None without ``CommandSigningKey`` (commands go unsigned)."""
    if not settings.CommandSigningKey:
        return None
    return CommandSigner(settings.CommandSigningKey, validity_seconds=settings.CommandExpirySeconds)


def signer_warnings(settings: Settings) -> list[str]:
    """What topology-api says at start-up about how it sends commands."""
    if settings.CommandSigningKey or settings.AllowUnsignedCommands:
        return []
    return [
        "CommandSigningKey is not set: commands are sent unsigned and the recovery workers "
        "refuse them (give the API and the workers the same key)"
    ]


class NonceCache:
    """Nonces of accepted requests, each kept until its request expires (then a replay is
    refused as expired anyway)."""

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, nonce: str, now: datetime) -> bool:
        self._forget_expired(now)
        return nonce in self._until

    def remember(self, nonce: str, expires_at: datetime) -> None:
        self._until[nonce] = expires_at

    def _forget_expired(self, now: datetime) -> None:
        expired = [nonce for nonce, until in self._until.items() if until <= now]
        for nonce in expired:
            del self._until[nonce]


class CommandVerifier:
    """A recovery worker's side: :meth:`refusal` is None for a request to run, else why not.

    ``key`` empty: every command is refused unless ``allow_unsigned`` (the explicit opt-out
    ``AllowUnsignedCommands``), which accepts unsigned ones (the subject check still holds).
    With a key, every command must be signed with it, whatever ``allow_unsigned`` says."""

    def __init__(self, key: str, *, allow_unsigned: bool = False, clock: Clock = _now) -> None:
        self._key = key
        self._allow_unsigned = allow_unsigned and not key
        self._clock = clock
        self._nonces = NonceCache()

    def __repr__(self) -> str:
        mode = "signed" if self._key else "unsigned" if self._allow_unsigned else "closed"
        return f"CommandVerifier({mode})"

    def refusal(self, subject: str, request: CommandRequest) -> str | None:
        named = subject_operation(subject)
        if request.operation != named:
            return f"the request's operation {request.operation!r} is not the subject's {named!r}"
        if self._allow_unsigned:
            return None
        if not self._key:
            return (
                "no CommandSigningKey is configured on this worker: every command is refused "
                "(set the key topology-api signs with, or AllowUnsignedCommands)"
            )
        now = self._clock()
        why = seal_refusal(self._key, request, now, noun="the command")
        if why is not None:
            return why
        if self._nonces.seen(request.nonce, now):
            return "the command was already received (a replay)"
        assert request.expires_at is not None  # (seal_refusal checked it)
        self._nonces.remember(request.nonce, request.expires_at)
        return None
