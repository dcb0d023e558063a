"""What the executor reports: one :class:`StepRecord` per step, and the outcome of the whole.

Every step the executor takes (or attempts) is appended to a :class:`StepJournal`; the
outcome carries the journal's records for the audit. When a recovery stops early, the records
are still there: a refusal (:class:`FailoverRefused`) carries them, and a caller that passed
its own journal reads it after a :class:`~orchestrator_shared.errors.LeaseLost`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import utcnow


class Action(enum.StrEnum):
    """What a step did."""

    FENCE = "fence"  # read_only=1 on the old master (and its final GTID position read)
    KILL_CLIENTS = "kill-clients"  # its client connections killed
    STOP_IO = "stop-io-thread"
    CATCH_UP = "catch-up"  # the successor applied its relay log
    START_SQL = "start-sql-thread"
    STOP_REPLICATION = "stop-replication"
    RESET_REPLICATION = "reset-replication"  # RESET SLAVE ALL
    SEMI_SYNC_MASTER = "semi-sync-master-on"
    SET_WRITABLE = "set-writable"  # read_only=0
    PROMOTION_LEFT = "promotion-left-to-hooks"  # ApplyMySQLPromotionAfterMasterFailover=false
    CHECK_POSITION = "check-position"  # may the replica follow its new master?
    CHANGE_MASTER = "change-master"
    START_REPLICATION = "start-replication"
    VERIFY = "verify"  # the replica replicates from its new master
    DETACH = "detach"  # a replica that cannot follow: replication stopped, left read_only
    RESTORE = "restore-replication"  # after a refusal: replication started again
    GUARD = "guard"  # the leadership check failed: nothing after this


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step on one instance, for the audit log."""

    instance: InstanceKey
    action: Action
    ok: bool
    detail: str
    started_at: datetime
    duration: float

    def __str__(self) -> str:
        mark = "ok" if self.ok else "FAILED"
        return f"{self.instance} {self.action} {mark} {self.duration * 1000:.1f}ms: {self.detail}"


@dataclass(slots=True)
class StepNote:
    """What a running step says about itself; ``ok`` defaults to True unless it raised."""

    detail: str = ""
    ok: bool = True


class StepJournal:
    """The steps of one recovery, in the order they finished (concurrent steps interleave)."""

    def __init__(self) -> None:
        self._records: list[StepRecord] = []

    @property
    def records(self) -> tuple[StepRecord, ...]:
        return tuple(self._records)

    def add(self, record: StepRecord) -> None:
        self._records.append(record)

    @contextmanager
    def step(self, instance: InstanceKey, action: Action) -> Iterator[StepNote]:
        """Time a step; record it when it ends, failed (with the error) if it raised."""
        note = StepNote()
        started_at = utcnow()
        started = time.monotonic()
        try:
            yield note
        except BaseException as exc:
            detail = note.detail or f"{type(exc).__name__}: {exc}"
            self._add(instance, action, ok=False, detail=detail, at=started_at, since=started)
            raise
        self._add(instance, action, ok=note.ok, detail=note.detail, at=started_at, since=started)

    def _add(
        self,
        instance: InstanceKey,
        action: Action,
        *,
        ok: bool,
        detail: str,
        at: datetime,
        since: float,
    ) -> None:
        self._records.append(
            StepRecord(
                instance=instance,
                action=action,
                ok=ok,
                detail=detail,
                started_at=at,
                duration=time.monotonic() - since,
            )
        )


def _frozen(mapping: Mapping[InstanceKey, str]) -> Mapping[InstanceKey, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverOutcome:
    """A completed master failover: ``successor`` is writable and replicates from nobody
    (unless ``promotion_applied`` is False: then it is read_only, its replication stopped).
    ``postponed`` replicas have their IO thread stopped and are still to be moved."""

    failed: InstanceKey
    successor: InstanceKey
    repointed: tuple[InstanceKey, ...]
    lost: Mapping[InstanceKey, str] = field(default_factory=dict)
    postponed: tuple[InstanceKey, ...] = ()
    promotion_applied: bool = True
    fenced_old_master: bool
    old_master_detail: str
    steps: tuple[StepRecord, ...]
    duration: float
    promote_seconds: float | None = None
    """From the start to the successor writable (or, promotion left to the hooks, chosen)."""
    repoint_seconds: float | None = None
    """How long the replicas' moves (concurrent) took, verification included."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lost", _frozen(self.lost))

    def summary(self) -> str:
        """One sentence for the log."""
        lost = ", ".join(f"{key} ({why})" for key, why in self.lost.items()) or "none"
        fenced = "fenced" if self.fenced_old_master else f"not fenced ({self.old_master_detail})"
        done = "promoted" if self.promotion_applied else "chose (promotion left to hooks)"
        text = (
            f"{done} {self.successor} in place of {self.failed} ({fenced}) in "
            f"{self.duration * 1000:.0f} ms; repointed {len(self.repointed)}; lost: {lost}"
        )
        if self.postponed:
            text += f"; postponed: {', '.join(map(str, self.postponed))}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class RelocationOutcome:
    """Replicas moved under new masters (a dead intermediate master's replicas)."""

    moved: Mapping[InstanceKey, InstanceKey]
    lost: Mapping[InstanceKey, str]
    steps: tuple[StepRecord, ...]
    duration: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "moved", MappingProxyType(dict(self.moved)))
        object.__setattr__(self, "lost", _frozen(self.lost))


@dataclass(frozen=True, slots=True, kw_only=True)
class FenceOutcome:
    """A returning old master fenced: read_only, its client connections killed."""

    instance: InstanceKey
    fenced: bool
    detail: str
    steps: tuple[StepRecord, ...]


class FailoverRefused(OperationRefused):
    """The failover stopped before promoting anyone; replication was started again wherever
    the executor had stopped it. ``reason`` says why; ``steps`` is what was done."""

    def __init__(
        self,
        reason: str,
        *,
        successor: InstanceKey,
        fenced_old_master: bool,
        steps: tuple[StepRecord, ...],
    ) -> None:
        super().__init__(f"failover to {successor} refused: {reason}")
        self.reason = reason
        self.successor = successor
        self.fenced_old_master = fenced_old_master
        self.steps = steps
