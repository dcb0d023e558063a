"""Recovery leadership: exactly one active recovery worker, and it knows when it stops being one.

Every recovery worker runs an :class:`Election` in-process::

    async with Election(ElectionOptions.from_settings(settings)) as election:
        while True:
            try:
                async with election.leading() as term:   # waits until this worker leads
                    await recover_forever(election, term)  # cancelled at once on loss
            except LeaseLost:
                continue                                  # a standby again; wait for the next term

    # before every destructive step (stop replication, CHANGE MASTER, read_only, RESET SLAVE):
    approval = await election.guard()   # LeaseLost unless etcd confirms our token right now
    # finish the step before approval.valid_until (time.monotonic()), e.g. as its MySQL timeout

How it works (keys: :mod:`orchestrator_shared.etcd.leadership`):

- **Lease and membership.** On entry the worker gets a lease of ``lease_ttl`` seconds and puts
  ``<prefix>/recovery/members/<id>`` bound to it. A keep-alive is sent every
  ``keepalive_interval``; when one is answered, the lease is known to live at least until
  *send time + TTL* (etcd restarted its TTL after we sent). That instant, on this host's
  monotonic clock, is the lease deadline.
- **Campaign.** One transaction creates ``<prefix>/recovery/leader`` bound to the lease only if it
  is absent; its answer also carries the key as it is, so a lost answer that did create the key
  is recognised on the next try (the key is bound to our lease: we lead). The key's
  ``create_revision`` is the fencing token of the leadership.
- **Watching.** Standbys watch the key and campaign the moment it is deleted (leader resigned or
  its lease expired); they also retry every ``poll_interval``, so a watch stuck on a hung etcd
  member delays nothing by more than that. The leader watches it too, to learn of a deletion.
- **Step-down first.** The leader stops leading one ``keepalive_interval`` (the safety margin)
  before its lease deadline unless a keep-alive extended it. A local timer does this, without
  asking etcd, so a leader cut off from etcd has stopped before etcd can let anyone else lead.
  Leadership also ends when the key is seen deleted, when etcd says the lease is gone, or when
  :meth:`Election.guard` finds the token stale. Ending it cancels every :meth:`leading` scope.
- **Fencing.** :meth:`Election.guard` asks etcd, in one transaction, whether the leader key still
  has our ``create_revision``; it raises :class:`LeaseLost` when it does not, when etcd does not
  answer within the request timeout, or when the answer arrives after the local deadline.
- **Resign.** :meth:`Election.resign` (also run by ``close()``) stops leader work, waits for it
  to end (at most until its last approval runs out), deletes the key if it still has our
  token, and ``close()`` revokes the lease: a standby takes over at once.

Deleting the leader key by hand is not a safe way to move leadership: the old leader may act
until its watch reports the deletion. Stop (SIGTERM) the worker instead.

This module is the lease keeper: the I/O with etcd and the cancelling of leader work. When to
step down and what the guard answers is decided, without I/O, by
:mod:`orchestrator_adapters.election_stepdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from orchestrator_adapters.election_stepdown import (
    Approval,
    CampaignOutcome,
    Leadership,
    ObservedLeader,
    Refusal,
    StepDown,
)
from orchestrator_adapters.etcd import EtcdClient, EtcdError, EtcdOptions, EtcdUnavailable
from orchestrator_shared.bus import LeaderIdentity
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.etcd.leadership import (
    LeadershipKeys,
    decode_elected_at,
    decode_identity,
    encode_leader,
    encode_member,
    local_identity,
)

__all__ = [
    "STARTUP_TIMEOUT_SECONDS",
    "Approval",
    "Election",
    "ElectionOptions",
    "Leadership",
    "ObservedLeader",
]

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ElectionOptions:
    """Timing and addressing of the election (validated together by ``Settings``)."""

    etcd: EtcdOptions
    key_prefix: str = "/orchestrator"
    lease_ttl: int = 3
    keepalive_interval: float = 0.5
    # how long start-up waits for etcd before EtcdUnavailable
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> ElectionOptions:
        return cls(
            etcd=EtcdOptions.from_settings(settings),
            key_prefix=settings.EtcdKeyPrefix,
            lease_ttl=settings.EtcdLeaseTTLSeconds,
            keepalive_interval=settings.EtcdKeepAliveIntervalSeconds,
        )

    @property
    def request_timeout(self) -> float:
        return self.etcd.request_timeout

    @property
    def safety_margin(self) -> float:
        """The leader gives up this long before its lease could expire."""
        return self.keepalive_interval

    @property
    def poll_interval(self) -> float:
        """Standbys re-check the key at least this often (besides the watch)."""
        return max(self.keepalive_interval, min(1.0, self.lease_ttl / 3))


class _Scope:
    """A ``leading()`` body: ``ended`` when its term ended, ``cancelled`` when we cancelled it
    (not when the body itself noticed the loss, e.g. in ``guard()``)."""

    __slots__ = ("cancelled", "ended", "exited", "leadership", "task")

    def __init__(self, task: asyncio.Task[object], leadership: Leadership) -> None:
        self.task = task
        self.leadership = leadership
        self.ended = False
        self.cancelled = False
        self.exited = asyncio.Event()  # the body has left the scope (its work stopped)


class Election:
    """Campaign for the recovery leadership while open (see the module docstring).

    ``client``: an :class:`EtcdClient` to use (not closed here); by default one is made from
    ``options.etcd`` and closed with the election.
    """

    def __init__(
        self,
        options: ElectionOptions,
        *,
        identity: LeaderIdentity | None = None,
        client: EtcdClient | None = None,
    ) -> None:
        self.options = options
        self.identity = identity or local_identity()
        self.keys = LeadershipKeys(options.key_prefix)
        self._client = client or EtcdClient(options.etcd)
        self._owns_client = client is None
        # the lease, the term and when it ends (no I/O there)
        self._state = StepDown(lease_ttl=options.lease_ttl, safety_margin=options.safety_margin)
        self._member_written = False
        self._campaigning = True
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._scopes: set[_Scope] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._rejoin: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._started = False
        self.etcd_reachable = False
        self.last_etcd_error = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Get a lease (waiting up to ``startup_timeout`` for etcd), join, start campaigning.
        :class:`EtcdUnavailable` when etcd does not answer in time."""
        if self._started:
            return
        self._started = True
        deadline = time.monotonic() + self.options.startup_timeout
        while True:
            try:
                await self._new_lease()
                break
            except EtcdUnavailable as exc:
                if time.monotonic() >= deadline:
                    await self._close_client()
                    self._closed = True
                    raise EtcdUnavailable(
                        f"EtcdEndpoints: no etcd answered within "
                        f"{self.options.startup_timeout:g} s "
                        f"({', '.join(self.options.etcd.endpoints)}): {exc}"
                    ) from None
                await asyncio.sleep(0.2)
            except EtcdError:
                await self._close_client()
                self._closed = True
                raise
        self._set_reachable(True, "")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keepalive_loop(), name="election-keepalive"),
            loop.create_task(self._campaign_loop(), name="election-campaign"),
        ]
        log.info(
            "recovery election joined as %s (lease TTL %d s, keep-alive every %g s)",
            self.identity.id,
            self._state.lease_ttl,
            self.options.keepalive_interval,
        )

    async def close(self) -> None:
        """Resign if leading, revoke the lease, stop. Idempotent; survives cancellation."""
        if self._closed:
            return
        self._closed = True
        await asyncio.shield(self._shutdown())

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._rejoin is not None:
            self._rejoin.cancel()
        await self._give_up_key("closing")
        if self._state.lease_id:
            try:
                await self._client.revoke_lease(self._state.lease_id)
            except EtcdError as exc:
                log.warning("could not revoke lease (it expires by itself): %s", exc)
        self._cancel_timer()
        await self._close_client()
        log.info("recovery election left by %s", self.identity.id)

    async def _close_client(self) -> None:
        if self._owns_client:
            await self._client.close()

    # --- what the recovery code uses ---------------------------------------------------------

    @property
    def leadership(self) -> Leadership | None:
        """The current term, or None. Checks the lease deadline on every read."""
        self._end_if_overdue()
        return self._state.leadership

    @property
    def is_leader(self) -> bool:
        return self.leadership is not None

    @property
    def client(self) -> EtcdClient:
        """The etcd connection the election uses, for the worker's own keys under the prefix."""
        return self._client

    @property
    def lease_deadline(self) -> float:
        """``time.monotonic()`` until which the lease surely lives (last answered keep-alive's
        send time + TTL); leadership ends one safety margin before it."""
        return self._state.lease_deadline

    @property
    def observed_leader(self) -> ObservedLeader:
        """Who holds the leader key as far as this worker knows (itself included)."""
        return self._state.observed

    async def guard(self) -> Approval:
        """Confirm in one etcd transaction that the leader key still has our token.

        Raises :class:`LeaseLost` when we do not lead, when the token is stale (leadership ends),
        when etcd does not answer within the request timeout (or before the local deadline),
        or when the answer comes after the deadline.
        """
        leadership = self.leadership
        if leadership is None:
            raise LeaseLost("not the recovery leader")
        budget = self._state.guard_budget(time.monotonic(), self.options.request_timeout)
        try:
            confirmed = await self._client.has_create_revision(
                self.keys.leader, leadership.token, budget=budget
            )
        except EtcdError as exc:
            raise LeaseLost(
                f"etcd did not confirm fencing token {leadership.token}: {exc}"
            ) from None
        if confirmed:
            self._end_if_overdue()  # its step-down instant may have passed while we asked
        verdict = self._state.confirmation(leadership, confirmed, time.monotonic())
        if isinstance(verdict, Refusal):
            if verdict.step_down:
                self._lose(verdict.reason)
            raise LeaseLost(verdict.reason)
        return verdict

    async def wait_leader(self) -> Leadership:
        """Wait until this worker leads; the term."""
        while True:
            leadership = self.leadership
            if leadership is not None:
                return leadership
            await self.wait_for_change()

    async def wait_for_change(self) -> Leadership | None:
        """Wait until this worker's leadership begins or ends; the leadership then. (Bound the
        wait with ``asyncio.timeout`` where needed.)"""
        await self._changed.wait()
        return self.leadership

    @contextlib.asynccontextmanager
    async def leading(self) -> AsyncIterator[Leadership]:
        """Wait until this worker leads, then run the body as leader work: when leadership ends
        the body is cancelled and the ``async with`` raises :class:`LeaseLost`."""
        leadership = await self.wait_leader()
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        scope = _Scope(task, leadership)
        self._scopes.add(scope)
        try:
            if self.leadership is not leadership:
                raise LeaseLost(f"leadership {leadership.token} ended before its work began")
            yield leadership
        except asyncio.CancelledError:
            if scope.cancelled and task.uncancel() <= cancelling:
                raise LeaseLost(f"leadership {leadership.token} ended") from None
            raise
        finally:
            self._scopes.discard(scope)
            scope.exited.set()
        if scope.ended:
            raise LeaseLost(f"leadership {leadership.token} ended")

    async def run_while_leader(self, work: Callable[[Leadership], Awaitable[None]]) -> None:
        """Forever: wait to lead, run ``work(term)``, cancelled when the term ends. A ``work``
        that returns early waits for the term to end before the next one."""
        while True:
            try:
                async with self.leading() as term:
                    await work(term)
                    while self.leadership is term:
                        await self.wait_for_change()
            except LeaseLost as exc:
                log.info("leader work stopped: %s", exc)

    async def resign(self, *, rejoin_after: float | None = None) -> None:
        """Stop leading (cancelling leader work), wait for that work to end (bounded by its last
        approval), delete the key if it still has our token, and stop campaigning; campaign
        again after ``rejoin_after`` seconds (never when None, until :meth:`campaign`)."""
        self._campaigning = False
        if self._rejoin is not None:
            self._rejoin.cancel()
            self._rejoin = None
        await self._give_up_key("resigned")
        if rejoin_after is not None and not self._closed:
            self._rejoin = asyncio.get_running_loop().call_later(rejoin_after, self.campaign)

    def campaign(self) -> None:
        """Campaign again after :meth:`resign`."""
        self._campaigning = True
        self._wake.set()

    # --- internals: leadership state ---------------------------------------------------------

    def _end_if_overdue(self) -> None:
        overdue = self._state.overdue(time.monotonic())
        if overdue is not None:
            self._lose(overdue)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _become_leader(self, token: int, elected_at: datetime) -> None:
        self._state.begin(token, self.identity, elected_at, time.monotonic())
        self._schedule_stepdown()
        log.info(
            "%s leads recovery now (fencing token %d, lease deadline in %.2f s)",
            self.identity.id,
            token,
            self._state.stepdown_at - time.monotonic(),
        )
        self._notify()

    def _lose(self, reason: str) -> None:
        """End the current term at once: cancel leader work. No etcd call."""
        leadership = self._state.end()
        if leadership is None:
            return
        self._cancel_timer()
        current = asyncio.current_task()
        for scope in list(self._scopes):
            if scope.leadership is not leadership or scope.ended:
                continue
            scope.ended = True
            if scope.task is not current:  # the current task learns it from our caller
                scope.cancelled = True
                scope.task.cancel(f"recovery leadership lost: {reason}")
        log.warning(
            "%s stopped leading recovery (fencing token %d): %s",
            self.identity.id,
            leadership.token,
            reason,
        )
        self._notify()
        self._wake.set()

    def _schedule_stepdown(self) -> None:
        self._cancel_timer()
        if self._state.leadership is None:
            return
        loop = asyncio.get_running_loop()
        # loop.time() is time.monotonic() for asyncio's default loops
        delay = self._state.stepdown_at - time.monotonic()
        self._timer = loop.call_later(max(0.0, delay), self._on_stepdown_timer)

    def _on_stepdown_timer(self) -> None:
        self._timer = None
        reason = self._state.timer_fired(time.monotonic(), self.last_etcd_error)
        if reason is not None:
            self._lose(reason)
        else:
            self._schedule_stepdown()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_reachable(self, reachable: bool, error: str) -> None:
        if reachable != self.etcd_reachable:
            if reachable:
                log.info("etcd reachable (%s)", self._client.endpoint)
            else:
                log.warning("etcd unreachable: %s", error)
        self.etcd_reachable = reachable
        if error:
            self.last_etcd_error = error

    async def _give_up_key(self, reason: str) -> None:
        leadership = self._state.leadership
        until = self._state.stepdown_at  # no approval given so far lasts longer than this
        self._lose(reason)
        if leadership is None:
            return
        await self._leader_work_stopped(leadership, until)
        try:
            deleted = await self._client.delete_if_create_revision(
                self.keys.leader, leadership.token
            )
        except EtcdError as exc:
            log.warning("could not delete the leader key (its lease will): %s", exc)
            return
        if deleted:
            self._state.key_given_up(leadership.token)
            log.info("leader key of token %d deleted: a standby takes over", leadership.token)

    async def _leader_work_stopped(self, leadership: Leadership, until: float) -> None:
        """Wait until the cancelled leader work of ``leadership`` has left its scopes (its
        statements stopped or killed), at most until ``until``: the end of the last approval
        it could hold. Only then may the key go, so the next leader's first step never overlaps
        this one's last. (Past ``until`` nothing it started may still act: every fenced step
        is bounded by its approval.)"""
        current = asyncio.current_task()
        waits = [
            scope.exited.wait()
            for scope in self._scopes
            if scope.leadership is leadership and scope.task is not current
        ]
        budget = until - time.monotonic()
        if not waits or budget <= 0:
            return
        pending = [asyncio.ensure_future(wait) for wait in waits]
        try:
            _, late = await asyncio.wait(pending, timeout=budget)
        finally:
            for future in pending:
                future.cancel()
        if late:
            log.warning(
                "leader work of token %d did not stop within %.2f s; giving up the key anyway "
                "(its approvals have run out)",
                leadership.token,
                budget,
            )

    # --- internals: loops --------------------------------------------------------------------

    async def _new_lease(self) -> None:
        sent = time.monotonic()
        lease_id, ttl = await self._client.grant_lease(self.options.lease_ttl)
        self._state.granted(lease_id, ttl, sent=sent)
        self._member_written = False
        await self._write_member()

    async def _write_member(self) -> None:
        await self._client.put(
            self.keys.member(self.identity.id),
            encode_member(self.identity),
            lease=self._state.lease_id,
        )
        self._member_written = True

    async def _keepalive_loop(self) -> None:
        interval = self.options.keepalive_interval
        while True:
            sent = time.monotonic()
            try:
                lease_id = self._state.lease_id
                if lease_id == 0:
                    await self._new_lease()
                    self._wake.set()
                else:
                    ttl = await self._client.keep_alive(lease_id)
                    if ttl <= 0:
                        self._lose(self._state.lease_gone())
                        log.warning("lease %x expired in etcd; taking a new one", lease_id)
                        continue
                    self._state.renewed(ttl, sent=sent)
                    if self._state.leadership is not None:
                        self._schedule_stepdown()
                    if not self._member_written:
                        await self._write_member()
                self._set_reachable(True, "")
            except EtcdError as exc:
                self._set_reachable(False, str(exc))
            await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))

    async def _campaign_loop(self) -> None:
        while True:
            try:
                await self._campaign_once()
            except EtcdError as exc:
                # the keep-alive loop judges reachability (it retries on every endpoint)
                log.debug("campaign/watch: %s", exc)
                self.last_etcd_error = str(exc)
                await self._idle(min(self.options.poll_interval, 0.25))

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _lease_usable(self) -> bool:
        return self._state.usable(time.monotonic())

    async def _campaign_once(self) -> None:
        if not self._campaigning or not self._lease_usable():
            await self._idle(self.options.poll_interval)
            if not self._campaigning or not self._lease_usable():
                return
        lease_id = self._state.lease_id
        elected_at = datetime.now(UTC)
        result = await self._client.create_if_absent(
            self.keys.leader, encode_leader(self.identity, elected_at), lease=lease_id
        )
        current = result.current
        outcome = self._state.campaigned(
            key_lease=current.lease if current is not None else None,
            lease_id=lease_id,
            campaigning=self._campaigning,
            now=time.monotonic(),
        )
        if outcome is CampaignOutcome.LEAD and current is not None:
            leadership = self._state.leadership
            if leadership is None or leadership.token != current.create_revision:
                since = elected_at if result.created else decode_elected_at(current.value)
                self._become_leader(current.create_revision, since or elected_at)
        elif outcome is CampaignOutcome.HAND_BACK and current is not None:
            # we won, but resigned or lost the lease meanwhile: hand the key back
            await self._client.delete_if_create_revision(self.keys.leader, current.create_revision)
            return
        else:
            identity = decode_identity(current.value) if current is not None else None
            token = current.create_revision if current is not None else 0
            self._state.observed = ObservedLeader(identity, token)
        await self._watch_leader_key(result.revision + 1)

    async def _watch_leader_key(self, start_revision: int) -> None:
        """Follow the key until it is deleted (or, as a standby, until a poll is due)."""
        revision = start_revision
        while True:
            watched = await self._client.watch(
                self.keys.leader, start_revision=revision, max_wait=self.options.poll_interval
            )
            revision = watched.next_revision
            for event in watched.events:
                if event.kind == "delete":
                    reason = self._state.key_deleted()
                    if reason is not None:
                        self._lose(reason)
                    return
                written = self._state.key_written(
                    event.kv.create_revision, decode_identity(event.kv.value)
                )
                if written is not None:
                    self._lose(written)
            if self._state.leadership is None:
                return  # a standby re-checks the key every poll
