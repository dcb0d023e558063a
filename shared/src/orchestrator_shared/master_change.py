"""``MasterChanged``: the recovery leader tells topology-api a new master is writable (issue 17).

Applications follow ``/api/master/{cluster}``. Without this message the API names the new
master only once discovery has probed the servers again and the API has stored the
snapshots: a few hundred milliseconds during which every client that asks is sent to the old,
read-only master. The recovery leader sends ``MasterChanged`` the moment the successor is
writable (graceful takeovers, failovers), and every API process applies it to its view at once.

Because it redirects applications, a message is applied only when (:class:`MasterChangeVerifier`):

- it is signed with ``CommandSigningKey`` (the key the API signs commands with; HMAC-SHA256
  of the canonical body, as :mod:`orchestrator_shared.command_signing`) — publish permission
  on the bus alone is not enough;
- its expiry is in the future (at most ``MAX_VALIDITY_SECONDS`` ahead) and its nonce was not
  accepted before (a replay after the view settled cannot bring a stale master back);
- it comes from the current recovery leader: its ``fencing_token`` and ``worker`` are those
  of the latest ``orchestrator.v1.leader`` event the API heard (a deposed leader is ignored;
  none while that event says nobody leads). Where no coordinator publishes leader events,
  the token must be positive and at least the highest one accepted so far: fencing tokens
  are etcd revisions, so a worker that lost the lead to another cannot speak after it.

Pure: the clock is a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator_shared.bus import LeaderEvent, MasterChanged
from orchestrator_shared.command_signing import Clock, NonceCache, seal, seal_refusal

VALIDITY_SECONDS = 10.0  # a MasterChanged is useful for a moment only: the snapshots follow


def _now() -> datetime:
    return datetime.now(UTC)


class MasterChangeSigner:
    """The recovery worker's side: stamps an expiry and a nonce, and signs."""

    def __init__(
        self, key: str, *, validity_seconds: float = VALIDITY_SECONDS, clock: Clock = _now
    ) -> None:
        self._key = key
        self._validity = timedelta(seconds=validity_seconds)
        self._clock = clock

    def __repr__(self) -> str:
        return f"MasterChangeSigner(validity={self._validity.total_seconds():g}s)"

    def sign(self, message: MasterChanged) -> MasterChanged:
        return seal(self._key, message, expires_at=self._clock() + self._validity)


class MasterChangeVerifier:
    """topology-api's side: :meth:`refusal` is None for a message to apply, else why not.

    Without a key every message is refused: the API then learns of new masters from the
    snapshots only, as before (nothing unsafe, only slower)."""

    def __init__(self, key: str, *, clock: Clock = _now) -> None:
        self._key = key
        self._clock = clock
        self._nonces = NonceCache()
        self._highest = 0  # the highest fencing token accepted

    def __repr__(self) -> str:
        return f"MasterChangeVerifier({'signed' if self._key else 'closed'})"

    def refusal(self, message: MasterChanged, leader: LeaderEvent | None) -> str | None:
        if not self._key:
            return "no CommandSigningKey is configured: master changes are learnt from snapshots"
        now = self._clock()
        why = seal_refusal(self._key, message, now, noun="the message")
        if why is None:
            why = self._not_from_leader(message, leader)
        if why is not None:
            return why
        if self._nonces.seen(message.nonce, now):
            return "the message was already received (a replay)"
        assert message.expires_at is not None  # (seal_refusal checked it)
        self._nonces.remember(message.nonce, message.expires_at)
        self._highest = max(self._highest, message.fencing_token)
        return None

    def _not_from_leader(self, message: MasterChanged, leader: LeaderEvent | None) -> str | None:
        """Why the sender is not the recovery leader as far as the API knows (None: it is)."""
        token = message.fencing_token
        if leader is None:  # no coordinator reports leadership: the tokens must not go back
            if token <= 0 or token < self._highest:
                return f"fencing token {token} is not above 0, or below {self._highest}"
            return None
        if leader.leader is None:
            return "no recovery worker leads now (orchestrator.v1.leader)"
        if token != leader.fencing_token or message.worker != leader.leader.id:
            return (
                f"sent by {message.worker!r} under fencing token {token}, not by the leader "
                f"{leader.leader.id!r} (token {leader.fencing_token})"
            )
        return None
