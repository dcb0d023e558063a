"""Maintenance locks (issue 6): operators' locks, and the transient lock of every operation.

Both live in etcd, so that whichever worker leads sees them (keys under the etcd key prefix)::

    <prefix>/recovery/maintenance/<host:port>  an operator's lock (JSON: owner, reason,
                                               begins_at, ends_at), bound to an etcd lease
                                               that outlives ends_at a little
    <prefix>/recovery/operations/<host:port>   an operation running on the instance (JSON:
                                               owner = who asked, reason = the operation),
                                               bound to a short lease the running operation
                                               keeps alive: a worker that dies leaves it for
                                               at most ``TRANSIENT_TTL`` seconds

A lock is created only if absent (one etcd transaction), so of two ``begin-maintenance`` the
second fails and says who holds the lock and why. A lock past its ``ends_at`` counts as absent
and is deleted when seen (only while it is still the same lock: its create revision). Its
create revision is its ``MaintenanceId``.

:meth:`MaintenanceLocks.guarded` wraps an operation's handler: it first takes the transient
lock of every instance the request names (``instance``, ``destination``), refusing at once if
another operation holds one, then refuses if an operator's lock on one of them belongs to
someone other than ``requested_by``; the transient locks go when the handler returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from orchestrator_adapters.etcd import CreateResult, KeyValue
from orchestrator_adapters.ports import Audit, Guard
from orchestrator_recovery.operations.base import operation_audit
from orchestrator_recovery.operations.commands import request_keys
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import InvalidInstanceKey, OperationRefused, OrchestratorError
from orchestrator_shared.instance_key import InstanceKey

log = logging.getLogger(__name__)


TRANSIENT_TTL = 10  # seconds an operation's lock outlives a worker that died mid-way
LEASE_SLACK = 60  # seconds an operator's lock stays in etcd past its end (then etcd drops it)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # orchestrator's BeginTimestamp (a MySQL DATETIME)


class LockStore(Protocol):
    """The etcd calls used here (``orchestrator_adapters.etcd.EtcdClient``)."""

    async def grant_lease(self, ttl: int) -> tuple[int, int]: ...
    async def keep_alive(self, lease_id: int) -> int: ...
    async def revoke_lease(self, lease_id: int) -> None: ...
    async def create_if_absent(self, key: bytes, value: bytes, *, lease: int) -> CreateResult: ...
    async def get(self, key: bytes) -> tuple[KeyValue | None, int]: ...
    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], int]: ...
    async def delete_if_create_revision(self, key: bytes, create_revision: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Lock:
    """One maintenance lock. ``ends_at`` None: an operation's lock (it ends with the
    operation); ``lock_id``: the etcd create revision (orchestrator's ``MaintenanceId``)."""

    key: InstanceKey
    owner: str
    reason: str
    begins_at: datetime
    ends_at: datetime | None = None
    lock_id: int = 0

    @property
    def transient(self) -> bool:
        return self.ends_at is None

    def active(self, now: datetime) -> bool:
        return self.ends_at is None or now < self.ends_at

    def to_json(self) -> bytes:
        body = {
            "owner": self.owner,
            "reason": self.reason,
            "begins_at": self.begins_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_entry(cls, key: InstanceKey, entry: KeyValue) -> Lock:
        body = json.loads(entry.value)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        ends_at = body.get("ends_at")
        return cls(
            key=key,
            owner=str(body.get("owner", "")),
            reason=str(body.get("reason", "")),
            begins_at=_time(str(body.get("begins_at", ""))),
            ends_at=None if ends_at is None else _time(str(ends_at)),
            lock_id=entry.create_revision,
        )

    def describe(self) -> str:
        """Why an operation is refused: who holds the lock, why, until when."""
        if self.ends_at is None:
            return (
                f"{self.key} is busy: {self.reason} requested by {self.owner or 'nobody'} "
                f"is running (since {self.begins_at.strftime(TIME_FORMAT)} UTC)"
            )
        return (
            f"{self.key} is in maintenance ({self.owner}, {self.reason}, "
            f"until {self.ends_at.strftime(TIME_FORMAT)} UTC)"
        )

    def answer(self, now: datetime) -> dict[str, Any]:
        """orchestrator's ``Maintenance`` JSON (``/api/maintenance``)."""
        return {
            "MaintenanceId": self.lock_id,
            "Key": {"Hostname": self.key.host, "Port": self.key.port},
            "BeginTimestamp": self.begins_at.astimezone(UTC).strftime(TIME_FORMAT),
            "SecondsElapsed": max(0, int((now - self.begins_at).total_seconds())),
            "IsActive": self.active(now),
            "Owner": self.owner,
            "Reason": self.reason,
        }


def _time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def blocking(locks: Iterable[Lock], requested_by: str, now: datetime) -> Lock | None:
    """The first operator's lock that keeps ``requested_by`` out: active and someone else's."""
    for lock in locks:
        if not lock.transient and lock.active(now) and lock.owner != requested_by:
            return lock
    return None


def parse_duration(arguments: Mapping[str, str], default: timedelta) -> timedelta:
    """``arguments["duration"]`` in seconds (a positive integer), else ``default``."""
    text = arguments.get("duration", "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise OperationRefused(f"bad duration {text!r}: expected a positive number of seconds")
    return timedelta(seconds=int(text))


class MaintenanceLocks:
    """The locks in etcd, and the maintenance operations the worker answers."""

    def __init__(
        self,
        store: LockStore,
        *,
        prefix: str = "/orchestrator",
        guard: Guard,
        audit: Audit,
        worker_id: str,
        default_duration: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transient_ttl: int = TRANSIENT_TTL,
    ) -> None:
        self._store = store
        self._root = prefix.rstrip("/") + "/recovery"
        self._guard = guard
        self._audit = audit
        self._worker_id = worker_id
        self._default = default_duration
        self._clock = clock
        self._ttl = transient_ttl

    def _path(self, kind: str, key: InstanceKey | None = None) -> bytes:
        return f"{self._root}/{kind}/{'' if key is None else key}".encode()

    # --- reading --------------------------------------------------------------------------
    async def lock(self, key: InstanceKey) -> Lock | None:
        """The operator's lock on ``key`` in force now (an expired one is deleted)."""
        entry, _ = await self._store.get(self._path("maintenance", key))
        return None if entry is None else await self._alive(key, entry)

    async def _alive(self, key: InstanceKey, entry: KeyValue) -> Lock | None:
        try:
            lock = Lock.from_entry(key, entry)
        except (ValueError, TypeError) as exc:
            log.warning("unreadable maintenance lock of %s dropped: %s", key, exc)
            await self._store.delete_if_create_revision(entry.key, entry.create_revision)
            return None
        if lock.active(self._clock()):
            return lock
        await self._store.delete_if_create_revision(entry.key, entry.create_revision)
        return None

    async def active(self) -> list[Lock]:
        """Every lock in force (operators' and running operations'), oldest first."""
        found: list[Lock] = []
        for kind in ("maintenance", "operations"):
            prefix = self._path(kind)
            entries, _ = await self._store.get_prefix(prefix)
            for entry in entries:
                try:
                    key = InstanceKey.parse(entry.key[len(prefix) :].decode())
                except (InvalidInstanceKey, UnicodeDecodeError):
                    continue
                lock = await self._alive(key, entry)
                if lock is not None:
                    found.append(lock)
        return sorted(found, key=lambda lock: lock.lock_id)

    # --- the operators' locks -------------------------------------------------------------
    async def begin(self, key: InstanceKey, owner: str, reason: str, duration: timedelta) -> Lock:
        """Take the lock, or raise OperationRefused naming who holds it."""
        now = self._clock()
        lock = Lock(key, owner, reason, begins_at=now, ends_at=now + duration)
        ttl = int(duration.total_seconds()) + LEASE_SLACK
        for _ in range(2):  # a second try after deleting an expired lock
            await self._guard()
            lease, _ = await self._store.grant_lease(ttl)
            result = await self._store.create_if_absent(
                self._path("maintenance", key), lock.to_json(), lease=lease
            )
            if result.created and result.current is not None:
                return Lock.from_entry(key, result.current)
            await self._store.revoke_lease(lease)
            if result.current is not None:
                held = await self._alive(key, result.current)
                if held is not None:
                    raise OperationRefused(f"cannot begin maintenance: {held.describe()}")
        raise OperationRefused(f"cannot begin maintenance on {key}: the lock keeps changing")

    async def end(self, key: InstanceKey) -> Lock | None:
        """Release the operator's lock on ``key``; the lock that was released, if any."""
        lock = await self.lock(key)
        if lock is None:
            return None
        await self._guard()
        deleted = await self._store.delete_if_create_revision(
            self._path("maintenance", key), lock.lock_id
        )
        return lock if deleted else None

    async def end_by_id(self, lock_id: int) -> Lock | None:
        for lock in await self.active():
            if lock.lock_id == lock_id and not lock.transient:
                return await self.end(lock.key)
        return None

    # --- the operations' transient locks --------------------------------------------------
    @contextlib.asynccontextmanager
    async def holding(self, request: CommandRequest) -> AsyncIterator[None]:
        """Hold the transient lock of every instance ``request`` touches, while the block
        runs; OperationRefused at once when another operation or someone else's maintenance
        holds one of them."""
        keys = request_keys(request)
        if not keys:
            yield
            return
        owner = request.requested_by or self._worker_id
        lock = Lock(keys[0], owner, request.operation, begins_at=self._clock())
        lease, _ = await self._store.grant_lease(self._ttl)
        renewing: asyncio.Task[None] | None = None
        try:
            for key in keys:
                result = await self._store.create_if_absent(
                    self._path("operations", key), lock.to_json(), lease=lease
                )
                if not result.created:
                    busy = (
                        Lock.from_entry(key, result.current)
                        if result.current is not None
                        else Lock(key, "?", "another operation", begins_at=lock.begins_at)
                    )
                    raise OperationRefused(busy.describe())
            held = [found for key in keys if (found := await self.lock(key)) is not None]
            refusal = blocking(held, request.requested_by, self._clock())
            if refusal is not None:
                raise OperationRefused(refusal.describe())
            renewing = asyncio.create_task(self._renew(lease))
            yield
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
            try:
                await self._store.revoke_lease(lease)  # the transient locks go with it
            except OrchestratorError as exc:
                log.warning("operation locks of %s not released (they expire): %s", keys, exc)

    async def _renew(self, lease: int) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if await self._store.keep_alive(lease) == 0:
                    log.warning("the lease of an operation's locks expired while it ran")
                    return
            except OrchestratorError as exc:
                log.warning("cannot renew an operation's locks: %s", exc)

    def guarded(self, handler: Handler) -> Handler:
        """``handler`` run only while its instances' transient locks are held."""

        async def run(request: CommandRequest) -> CommandReply:
            async with self.holding(request):
                return await handler(request)

        return run

    # --- the maintenance operations -------------------------------------------------------
    def operations(self) -> dict[str, Handler]:
        return {
            "begin-maintenance": self._begin,
            "end-maintenance": self._end,
            "in-maintenance": self._in_maintenance,
            "maintenance": self._list,
        }

    async def _begin(self, request: CommandRequest) -> CommandReply:
        key = _key(request.instance)
        owner = request.arguments.get("owner", "").strip() or request.requested_by
        reason = request.arguments.get("reason", "").strip()
        if not owner:
            raise OperationRefused("no owner given")
        if not reason:
            raise OperationRefused("no reason given")
        duration = parse_duration(request.arguments, self._default)
        lock = await self.begin(key, owner, reason, duration)
        until = lock.ends_at or lock.begins_at
        text = f"maintenance id: {lock.lock_id}, owner: {owner}, reason: {reason}"
        await self._publish(request, "begin-maintenance", key, text)
        return CommandReply(
            ok=True,
            operation=request.operation,
            message=f"Maintenance begun: {key} (id {lock.lock_id}, until "
            f"{until.strftime(TIME_FORMAT)} UTC)",
            details=lock.answer(self._clock()),
        )

    async def _end(self, request: CommandRequest) -> CommandReply:
        text = request.arguments.get("id", "").strip()
        if text:
            if not text.isdigit():
                raise OperationRefused(f"bad maintenance id {text!r}")
            lock = await self.end_by_id(int(text))
            if lock is None:
                raise OperationRefused(f"no active maintenance with id {text}")
        else:
            key = _key(request.instance)
            lock = await self.end(key)
            if lock is None:  # as orchestrator: ending what is not there is no error
                return CommandReply(
                    ok=True,
                    operation=request.operation,
                    message=f"{key} was not in maintenance",
                    details=None,
                )
        await self._publish(
            request,
            "end-maintenance",
            lock.key,
            f"maintenance id: {lock.lock_id}, owner: {lock.owner}, reason: {lock.reason}",
        )
        return CommandReply(
            ok=True,
            operation=request.operation,
            message=f"Maintenance ended: {lock.key}",
            details=lock.answer(self._clock()),
        )

    async def _in_maintenance(self, request: CommandRequest) -> CommandReply:
        key = _key(request.instance)
        held = await self.lock(key)
        if held is None:
            running, _ = await self._store.get(self._path("operations", key))
            held = None if running is None else Lock.from_entry(key, running)
        return CommandReply(
            ok=True,
            operation=request.operation,
            message="true" if held is not None else "false",
            details=None if held is None else held.answer(self._clock()),
        )

    async def _list(self, request: CommandRequest) -> CommandReply:
        now = self._clock()
        locks = await self.active()
        return CommandReply(
            ok=True,
            operation=request.operation,
            message=f"{len(locks)} active maintenance locks",
            details=[lock.answer(now) for lock in locks],
        )

    async def _publish(
        self, request: CommandRequest, kind: str, key: InstanceKey, message: str
    ) -> None:
        await self._audit(
            operation_audit(
                request, kind, key, message, worker_id=self._worker_id, at=self._clock()
            )
        )


def _key(text: str) -> InstanceKey:
    if not text:
        raise OperationRefused("no instance given")
    try:
        return InstanceKey.parse(text)
    except InvalidInstanceKey as exc:
        raise OperationRefused(f"bad instance: {exc}") from None
