"""What recovery remembers in etcd, so that it holds whichever worker leads and whether or not
topology-api is up.

Keys (under the etcd key prefix, ``/orchestrator`` by default)::

    <prefix>/recovery/disabled                  present = automated recovery disabled globally
                                                (JSON: who, when); `disable-global-recoveries`
    <prefix>/recovery/clusters/<cluster>/active the recovery in flight for the cluster (JSON:
                                                RecoveryData + phase), written before the first
                                                destructive step, removed when it ends
    <prefix>/recovery/clusters/<cluster>/last   the last recovery of the cluster (JSON: id,
                                                failed, successor, ended_at, acknowledged): the
                                                anti-flapping block period runs from ended_at
    <prefix>/recovery/clusters/<cluster>/last-semi-sync
                                                the same for the cluster's last semi-sync
                                                recovery (its own block period: it neither
                                                blocks nor is blocked by a failover)
    <prefix>/recovery/clusters/<cluster>/last-takeover
                                                the cluster's last graceful takeover (the same
                                                JSON): no block period, never acknowledged; it
                                                says its successor was made master on purpose
                                                after any failure of its own, so it is not
                                                fenced as a returning old master
    <prefix>/recovery/downtime/<host:port>      an operator's downtime (JSON: owner, reason,
                                                ends_at), written by topology-api
    <prefix>/recovery/candidates/<host:port>    a registered promotion rule (JSON: rule,
                                                expires_at), written by topology-api

A worker that takes over reads ``active`` first: a recovery that got past promotion is never
promoted again (the successor stays; what is left is re-planned from facts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from orchestrator_shared.events import RecoveryData, RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime, PromotionRule


class RecordKind(enum.StrEnum):
    """Which block period a recovery starts; the value is its etcd key's last part."""

    FAILOVER = "last"
    """A dead master or intermediate master (a promotion or a relocation)."""
    SEMI_SYNC = "last-semi-sync"
    """A semi-sync recovery (``LockedSemiSyncMaster``, ``MasterWithTooManySemiSyncReplicas``)."""
    TAKEOVER = "last-takeover"
    """A graceful takeover: no block period (it is planned), nothing to acknowledge."""


BLOCKING = (RecordKind.FAILOVER, RecordKind.SEMI_SYNC)
"""The kinds of record that start a block period an acknowledgement lifts."""


class KeyValueStore(Protocol):
    """The etcd calls this module needs (``orchestrator_adapters.etcd.EtcdClient``)."""

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int: ...
    async def get(self, key: bytes) -> tuple[Any, int]: ...
    async def delete(self, key: bytes) -> bool: ...
    async def get_prefix(self, prefix: bytes) -> tuple[list[Any], int]: ...


@dataclass(frozen=True, slots=True)
class GlobalSwitch:
    disabled: bool
    by: str = ""
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LastRecovery:
    recovery_id: str
    failed: str
    successor: str
    ended_at: datetime
    acknowledged: bool = False
    acknowledged_by: str = ""

    def to_json(self) -> bytes:
        return _dumps(
            {
                "recovery_id": self.recovery_id,
                "failed": self.failed,
                "successor": self.successor,
                "ended_at": self.ended_at.isoformat(),
                "acknowledged": self.acknowledged,
                "acknowledged_by": self.acknowledged_by,
            }
        )

    @classmethod
    def from_json(cls, value: bytes) -> LastRecovery:
        body = _loads(value)
        return cls(
            recovery_id=str(body.get("recovery_id", "")),
            failed=str(body.get("failed", "")),
            successor=str(body.get("successor", "")),
            ended_at=_time(body.get("ended_at")) or datetime.fromtimestamp(0, UTC),
            acknowledged=bool(body.get("acknowledged", False)),
            acknowledged_by=str(body.get("acknowledged_by", "")),
        )

    def blocks(self, now: datetime, period: timedelta) -> bool:
        """Whether a new automated recovery of the cluster must wait (anti-flapping)."""
        return not self.acknowledged and now < self.ended_at + period


@dataclass(frozen=True, slots=True)
class ActiveRecovery:
    phase: RecoveryPhase
    data: RecoveryData


class RecoveryControl:
    """Reads and writes the keys above."""

    def __init__(self, store: KeyValueStore, prefix: str = "/orchestrator") -> None:
        self._store = store
        self._root = prefix.rstrip("/") + "/recovery"

    def _key(self, *parts: str) -> bytes:
        return "/".join((self._root, *parts)).encode()

    # --- the global switch --------------------------------------------------------------
    async def global_switch(self) -> GlobalSwitch:
        found, _ = await self._store.get(self._key("disabled"))
        if found is None:
            return GlobalSwitch(disabled=False)
        body = _loads(found.value)
        return GlobalSwitch(disabled=True, by=str(body.get("by", "")), at=_time(body.get("at")))

    async def disable(self, *, by: str, at: datetime) -> None:
        await self._store.put(self._key("disabled"), _dumps({"by": by, "at": at.isoformat()}))

    async def enable(self) -> None:
        await self._store.delete(self._key("disabled"))

    # --- one cluster's recoveries -----------------------------------------------------------
    async def active(self, cluster: str) -> ActiveRecovery | None:
        found, _ = await self._store.get(self._key("clusters", cluster, "active"))
        if found is None:
            return None
        body = _loads(found.value)
        return ActiveRecovery(
            phase=RecoveryPhase(body["phase"]), data=RecoveryData.model_validate(body["data"])
        )

    async def set_active(self, phase: RecoveryPhase, data: RecoveryData) -> None:
        body = {"phase": phase.value, "data": data.model_dump(mode="json")}
        await self._store.put(self._key("clusters", data.cluster, "active"), _dumps(body))

    async def finish(
        self, data: RecoveryData, *, ended_at: datetime, kind: RecordKind = RecordKind.FAILOVER
    ) -> None:
        """Record the recovery as the cluster's last one (of its ``kind``) and clear the
        in-flight record.

        A cluster is named after its master, so after a promotion it goes by the successor's
        key: the record is kept under that name (the block period applies to the cluster as
        it is now called, and an acknowledgement names it so)."""
        last = LastRecovery(
            recovery_id=data.recovery_id,
            failed=data.failed,
            successor=data.successor,
            ended_at=ended_at,
        )
        await self._store.put(
            self._key("clusters", data.successor or data.cluster, kind.value), last.to_json()
        )
        await self._store.delete(self._key("clusters", data.cluster, "active"))

    async def last(
        self, cluster: str, kind: RecordKind = RecordKind.FAILOVER
    ) -> LastRecovery | None:
        found, _ = await self._store.get(self._key("clusters", cluster, kind.value))
        return None if found is None else LastRecovery.from_json(found.value)

    async def unacknowledged(
        self, kind: RecordKind = RecordKind.FAILOVER
    ) -> dict[str, LastRecovery]:
        """The last recovery (of ``kind``) of every cluster where it is not acknowledged
        (whatever its age), by cluster name; one etcd read."""
        return dict(await self._unacknowledged(kind))

    async def acknowledge(self, cluster: str, *, by: str) -> bool:
        """Lift the block periods of the cluster (a failover's and a semi-sync recovery's);
        whether there was something to acknowledge."""
        lifted = False
        for kind in BLOCKING:
            last = await self.last(cluster, kind)
            if last is None or last.acknowledged:
                continue
            acknowledged = dataclasses.replace(last, acknowledged=True, acknowledged_by=by)
            key = self._key("clusters", cluster, kind.value)
            await self._store.put(key, acknowledged.to_json())
            lifted = True
        return lifted

    async def unacknowledged_clusters(self) -> set[str]:
        """Every cluster with a recovery of any kind not acknowledged; one etcd read."""
        return {cluster for cluster, _ in await self._unacknowledged(*BLOCKING)}

    async def took_over(self, data: RecoveryData, *, ended_at: datetime) -> None:
        """Record a graceful takeover that made ``data.successor`` the master (under the name
        the cluster goes by now, as :meth:`finish` does); nothing else is touched."""
        last = LastRecovery(
            recovery_id=data.recovery_id,
            failed=data.failed,
            successor=data.successor,
            ended_at=ended_at,
        )
        key = self._key("clusters", data.successor or data.cluster, RecordKind.TAKEOVER.value)
        await self._store.put(key, last.to_json())

    async def fencing_view(self) -> tuple[dict[str, LastRecovery], list[LastRecovery]]:
        """In one etcd read: the unacknowledged failover records by cluster (their failed
        masters are kept fenced) and every record, acknowledged or not, of a failover or a
        takeover that promoted someone (a master promoted after its failure is not fenced)."""
        records = await self._records(RecordKind.FAILOVER, RecordKind.TAKEOVER)
        unacknowledged = {
            cluster: last
            for cluster, kind, last in records
            if kind is RecordKind.FAILOVER and not last.acknowledged
        }
        return unacknowledged, [last for _, _, last in records if last.successor]

    async def _unacknowledged(self, *kinds: RecordKind) -> list[tuple[str, LastRecovery]]:
        """(cluster, last recovery) for each unacknowledged record of ``kinds``."""
        return [
            (cluster, last)
            for cluster, _, last in await self._records(*kinds)
            if not last.acknowledged
        ]

    async def _records(self, *kinds: RecordKind) -> list[tuple[str, RecordKind, LastRecovery]]:
        """(cluster, kind, last recovery) for each record of ``kinds``; one etcd read."""
        prefix = self._key("clusters") + b"/"
        found, _ = await self._store.get_prefix(prefix)
        records = []
        for entry in found:
            key = bytes(entry.key).decode()
            for kind in kinds:
                suffix = "/" + kind.value
                if key.endswith(suffix):
                    cluster = key[len(prefix) : -len(suffix)]
                    records.append((cluster, kind, LastRecovery.from_json(entry.value)))
        return records


class OperatorState:
    """Downtime and promotion rules as operators registered them through topology-api, kept
    where the recovery workers read them even when topology-api is down."""

    def __init__(self, store: KeyValueStore, prefix: str = "/orchestrator") -> None:
        self._store = store
        self._root = prefix.rstrip("/") + "/recovery"

    def _key(self, kind: str, key: InstanceKey | None = None) -> bytes:
        return f"{self._root}/{kind}/{'' if key is None else key}".encode()

    async def begin_downtime(self, downtime: Downtime) -> None:
        body = {
            "owner": downtime.owner,
            "reason": downtime.reason,
            "begins_at": downtime.begins_at.isoformat(),
            "ends_at": downtime.ends_at.isoformat(),
        }
        await self._store.put(self._key("downtime", downtime.key), _dumps(body))

    async def end_downtime(self, key: InstanceKey) -> None:
        await self._store.delete(self._key("downtime", key))

    async def register_candidate(self, candidate: Candidate) -> None:
        body = {"rule": candidate.rule.value, "expires_at": candidate.expires_at.isoformat()}
        await self._store.put(self._key("candidates", candidate.key), _dumps(body))

    async def downtimed(self, now: datetime) -> dict[InstanceKey, datetime]:
        """Instances in downtime at ``now`` and when each downtime ends."""
        found: dict[InstanceKey, datetime] = {}
        for key, body in await self._entries("downtime"):
            ends_at = _time(body.get("ends_at"))
            if ends_at is not None and ends_at > now:
                found[key] = ends_at
        return found

    async def candidates(self, now: datetime) -> dict[InstanceKey, PromotionRule]:
        """Promotion rules registered and not expired at ``now``."""
        found: dict[InstanceKey, PromotionRule] = {}
        for key, body in await self._entries("candidates"):
            expires_at = _time(body.get("expires_at"))
            with contextlib.suppress(ValueError):
                if expires_at is not None and expires_at > now:
                    found[key] = PromotionRule(str(body.get("rule")))
        return found

    async def _entries(self, kind: str) -> list[tuple[InstanceKey, dict[str, Any]]]:
        prefix = self._key(kind)
        entries, _ = await self._store.get_prefix(prefix)
        found = []
        for entry in entries:
            with contextlib.suppress(ValueError):
                key = InstanceKey.parse(bytes(entry.key)[len(prefix) :].decode())
                found.append((key, _loads(entry.value)))
        return found


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _loads(value: bytes) -> dict[str, Any]:
    body = json.loads(value)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
