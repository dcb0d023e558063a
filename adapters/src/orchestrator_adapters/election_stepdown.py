"""When a recovery leader must step down, and what its guard answers: the election's decisions
without its I/O.

:class:`~orchestrator_adapters.election.Election` talks to etcd (lease, campaign, watch,
resign) and cancels leader work; every decision about the term is taken here, from times
(``time.monotonic()`` values, passed in) and from what etcd answered, passed in as plain
values. Kept apart so the rules that make the election safe (step down one safety margin
before the lease could expire; never approve past that instant) can be tested without etcd
or a clock, and read in one place.

Nothing here sleeps, logs or talks to etcd, and no decision reads a clock (only
:attr:`Approval.remaining`, a convenience for whoever holds the approval); a method that decides
the term ends returns the reason, and the caller ends it (:meth:`StepDown.end`) with its
effects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from orchestrator_shared.bus import LeaderIdentity


@dataclass(frozen=True, slots=True)
class Leadership:
    """One term of leadership of this worker. ``token`` is the fencing token."""

    token: int
    identity: LeaderIdentity
    since: datetime  # wall clock, for people
    since_monotonic: float


@dataclass(frozen=True, slots=True)
class Approval:
    """etcd confirmed the token; the leadership holds at least until ``valid_until``
    (``time.monotonic()``) unless a keep-alive extends it."""

    token: int
    valid_until: float

    @property
    def remaining(self) -> float:
        return self.valid_until - time.monotonic()


@dataclass(frozen=True, slots=True)
class ObservedLeader:
    """Whoever holds the leader key, as this worker last saw it (None: nobody)."""

    identity: LeaderIdentity | None
    token: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """The guard's no: ``reason`` for :class:`~orchestrator_shared.errors.LeaseLost`;
    ``step_down``: the term must end too (the token is stale), not just this approval."""

    reason: str
    step_down: bool = False


class CampaignOutcome(Enum):
    """What a campaign transaction's answer means for this worker."""

    LEAD = "lead"  # the key is bound to our lease and we may lead: a term (or the same one)
    HAND_BACK = "hand back"  # ours, but we resigned or the lease is no longer usable
    FOLLOW = "follow"  # someone else's key, or none: a standby


class StepDown:
    """The lease as this worker knows it, the current term, and the rules that end it.

    ``lease_ttl``: the TTL asked for (etcd may grant less; the smaller is used);
    ``safety_margin``: the leader stops this long before its lease could expire.
    """

    def __init__(self, *, lease_ttl: int, safety_margin: float) -> None:
        self.requested_ttl = lease_ttl
        self.safety_margin = safety_margin
        self.lease_id = 0  # 0: no lease (none yet, or etcd said it expired)
        self.lease_ttl = lease_ttl  # the TTL in use
        self.lease_deadline = 0.0  # monotonic; the lease lives at least until then
        self.leadership: Leadership | None = None
        self.observed = ObservedLeader(None, 0)

    # --- the lease ---------------------------------------------------------------------------

    @property
    def stepdown_at(self) -> float:
        """When the current term ends unless a keep-alive extends the lease first."""
        return self.lease_deadline - self.safety_margin

    def granted(self, lease_id: int, ttl: int, *, sent: float) -> None:
        """etcd granted a lease of ``ttl`` seconds to a request sent at ``sent``: it lives at
        least until then + TTL (etcd started the TTL after we sent)."""
        self.lease_id = lease_id
        self.lease_ttl = min(ttl, self.requested_ttl) if ttl > 0 else self.requested_ttl
        self.lease_deadline = sent + self.lease_ttl

    def renewed(self, ttl: int, *, sent: float) -> None:
        """A keep-alive sent at ``sent`` was answered with ``ttl`` (> 0): the deadline moves
        on, never back (an answer to an older keep-alive may arrive late)."""
        self.lease_deadline = max(self.lease_deadline, sent + min(ttl, self.lease_ttl))

    def lease_gone(self) -> str:
        """etcd answered a keep-alive with TTL 0: the lease is gone; forget it (a new one is
        needed) and end the term for this reason."""
        self.lease_id = 0
        return "etcd says the lease has expired"

    def usable(self, now: float) -> bool:
        """The lease may back a campaign: it exists and the step-down instant is ahead."""
        return self.lease_id != 0 and now < self.stepdown_at

    # --- the term ----------------------------------------------------------------------------

    def begin(self, token: int, identity: LeaderIdentity, since: datetime, now: float) -> None:
        """A term begins: ``token`` is the leader key's create_revision."""
        self.leadership = Leadership(
            token=token, identity=identity, since=since, since_monotonic=now
        )
        self.observed = ObservedLeader(identity, token)

    def end(self) -> Leadership | None:
        """End the current term (if any); the term that ended."""
        leadership, self.leadership = self.leadership, None
        return leadership

    def overdue(self, now: float) -> str | None:
        """Why the term must end now, read at any time: its step-down instant has passed."""
        if self.leadership is not None and now >= self.stepdown_at:
            return "the lease could not be renewed in time"
        return None

    def timer_fired(self, now: float, last_etcd_error: str) -> str | None:
        """The step-down timer fired: why the term ends, or None when a keep-alive moved the
        instant on meanwhile (set the timer again)."""
        if self.leadership is None or now < self.stepdown_at:
            return None
        window = self.lease_ttl - self.safety_margin
        return (
            f"the lease could not be renewed for {window:g} s "
            f"(etcd: {last_etcd_error or 'no answer'})"
        )

    # --- what etcd says about the leader key -------------------------------------------------

    def campaigned(
        self,
        *,
        key_lease: int | None,
        lease_id: int,
        campaigning: bool,
        now: float,
    ) -> CampaignOutcome:
        """The campaign transaction with lease ``lease_id`` found the key bound to
        ``key_lease`` (None: no key). Ours only if bound to that lease and it is still the
        lease we hold; we lead only while campaigning and the lease is usable."""
        ours = key_lease is not None and key_lease == lease_id and lease_id == self.lease_id
        if not ours:
            return CampaignOutcome.FOLLOW
        if campaigning and self.usable(now):
            return CampaignOutcome.LEAD
        return CampaignOutcome.HAND_BACK

    def key_deleted(self) -> str | None:
        """The watch saw the leader key deleted: nobody leads; why our term ends, if we led."""
        self.observed = ObservedLeader(None, 0)
        if self.leadership is None:
            return None
        return f"the leader key of token {self.leadership.token} was deleted"

    def key_written(self, token: int, identity: LeaderIdentity | None) -> str | None:
        """The watch saw the leader key written with ``token``: why our term ends, if we
        led under another token."""
        leadership = self.leadership
        self.observed = ObservedLeader(identity, token)
        if leadership is not None and token != leadership.token:
            return f"the leader key now has token {token}"
        return None

    def key_given_up(self, token: int) -> None:
        """We deleted the leader key of ``token``: nobody leads, if that is what we saw."""
        if self.observed.token == token:
            self.observed = ObservedLeader(None, 0)

    # --- the guard ---------------------------------------------------------------------------

    def guard_budget(self, now: float, request_timeout: float) -> float:
        """How long the guard may wait for etcd: its request timeout, and never past the
        step-down instant."""
        return min(request_timeout, self.stepdown_at - now)

    def confirmation(
        self, leadership: Leadership, confirmed: bool, now: float
    ) -> Approval | Refusal:
        """etcd answered whether the key still has ``leadership``'s token (``confirmed``); the
        answer arrived at ``now``. An approval lasts until the step-down instant; none is given
        for a term that ended meanwhile or once that instant has passed."""
        if not confirmed:
            return Refusal(
                f"fencing token {leadership.token} is stale",
                step_down=self.leadership is leadership,
            )
        valid_until = self.stepdown_at
        if self.leadership is not leadership or now >= valid_until:
            return Refusal(f"leadership {leadership.token} ended while it was being confirmed")
        return Approval(token=leadership.token, valid_until=valid_until)
