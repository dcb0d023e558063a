"""Watching the election from outside: who leads, since when, who is alive, is etcd there.

:class:`ElectionObserver` never campaigns. Each pass reads every key under
``<prefix>/recovery/`` in one linearizable read (so a member without quorum counts as etcd
unreachable), builds an immutable :class:`ElectionStatus`, then watches the keys until something
changes or ``poll_interval`` passes. While etcd does not answer, the status says so; once it has
not answered for a whole lease TTL, no worker can still be leading (each steps down before its
lease could expire), so the status reports no leader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from orchestrator_adapters.etcd import EtcdClient, EtcdError, KeyValue
from orchestrator_shared.bus import LeaderIdentity
from orchestrator_shared.etcd.leadership import LeadershipKeys, decode_elected_at, decode_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ElectionStatus:
    """The election as last seen; ``fencing_token`` 0 and ``leader`` None: nobody leads."""

    leader: LeaderIdentity | None
    fencing_token: int
    since: datetime | None
    members: tuple[LeaderIdentity, ...]
    etcd_reachable: bool
    etcd_endpoint: str
    checked_at: datetime | None
    etcd_error: str = ""
    members_unparsable: tuple[str, ...] = field(default=())

    @property
    def has_leader(self) -> bool:
        return self.leader is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "leader": self.leader.model_dump(mode="json") if self.leader else None,
            "fencing_token": self.fencing_token,
            "since": self.since.isoformat() if self.since else None,
            "members": [member.model_dump(mode="json") for member in self.members],
            "etcd": {
                "reachable": self.etcd_reachable,
                "endpoint": self.etcd_endpoint,
                "error": self.etcd_error,
            },
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }


StatusListener = Callable[[ElectionStatus, ElectionStatus], Awaitable[None]]


def status_from_keys(
    keys: LeadershipKeys, kvs: list[KeyValue], *, endpoint: str, now: datetime
) -> ElectionStatus:
    """Pure: the status that the keys under ``<prefix>/recovery/`` describe."""
    leader: LeaderIdentity | None = None
    token = 0
    since: datetime | None = None
    members: list[LeaderIdentity] = []
    unparsable: list[str] = []
    for kv in kvs:
        if kv.key == keys.leader:
            token = kv.create_revision
            leader = decode_identity(kv.value)
            since = decode_elected_at(kv.value)
            if leader is None:
                unparsable.append(kv.key.decode(errors="replace"))
        elif kv.key.startswith(keys.members):
            member = decode_identity(kv.value)
            if member is None:
                unparsable.append(kv.key.decode(errors="replace"))
            else:
                members.append(member)
    members.sort(key=lambda member: member.id)
    return ElectionStatus(
        leader=leader,
        fencing_token=token,
        since=since,
        members=tuple(members),
        etcd_reachable=True,
        etcd_endpoint=endpoint,
        checked_at=now,
        members_unparsable=tuple(unparsable),
    )


class ElectionObserver:
    def __init__(
        self,
        client: EtcdClient,
        keys: LeadershipKeys,
        *,
        lease_ttl: float,
        poll_interval: float,
        on_change: StatusListener | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._lease_ttl = lease_ttl
        self._poll_interval = poll_interval
        self._on_change = on_change
        self._last_success = time.monotonic()
        self.status = ElectionStatus(
            leader=None,
            fencing_token=0,
            since=None,
            members=(),
            etcd_reachable=False,
            etcd_endpoint=client.endpoint,
            checked_at=None,
            etcd_error="not checked yet",
        )
        self.first_check = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                kvs, revision = await self._client.get_prefix(self._keys.root)
            except EtcdError as exc:
                await self._unreachable(str(exc))
                await asyncio.sleep(self._poll_interval / 2)
                continue
            self._last_success = time.monotonic()
            await self._update(
                status_from_keys(
                    self._keys, kvs, endpoint=self._client.endpoint, now=datetime.now(UTC)
                )
            )
            try:
                await self._client.watch(
                    self._keys.root,
                    prefix=True,
                    start_revision=revision + 1,
                    max_wait=self._poll_interval,
                )
            except EtcdError as exc:
                await self._unreachable(str(exc))

    async def _unreachable(self, error: str) -> None:
        if self.status.etcd_reachable:
            log.warning("etcd unreachable: %s", error)
        status = replace(
            self.status, etcd_reachable=False, etcd_error=error, etcd_endpoint=self._client.endpoint
        )
        if status.leader is not None and time.monotonic() - self._last_success >= self._lease_ttl:
            # every leader has stepped down by now: it could not renew its lease either
            status = replace(status, leader=None, fencing_token=0, since=None, members=())
        await self._update(status)

    async def _update(self, status: ElectionStatus) -> None:
        previous = self.status
        self.status = status
        if status.etcd_reachable and not previous.etcd_reachable:
            log.info("etcd reachable (%s)", status.etcd_endpoint)
        first = not self.first_check.is_set()
        self.first_check.set()
        if status.fencing_token != previous.fencing_token or first:
            if status.leader is None:
                log.warning("no recovery leader%s", "" if status.etcd_reachable else " (etcd down)")
            else:
                log.info(
                    "recovery leader: %s (pid %d on %s), fencing token %d",
                    status.leader.id,
                    status.leader.pid,
                    status.leader.host,
                    status.fencing_token,
                )
        if self._on_change is not None:
            await self._on_change(previous, status)
