"""Recovery, analysis and audit events: what the active recovery worker tells the world.

Recovery lifecycle events are CloudEvents 1.0 in JSON (structured mode) on
``orchestrator.v1.recovery.<cluster>.<phase>``; their ``data`` is a :class:`RecoveryData`.
Analysis changes go to ``orchestrator.v1.analysis.<cluster>`` (:class:`AnalysisEvent`), audit
entries to ``orchestrator.v1.audit.<cluster>`` (:class:`AuditEvent`). ``<cluster>`` is the
cluster name (its master's key) as a subject token, like instance keys (see
:mod:`orchestrator_shared.instance_key`). Every message carries ``schema``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.redact import redact

EVENTS_SCHEMA_VERSION = 1
CLOUDEVENTS_TYPE_PREFIX = "io.orchestrator.recovery."


class RecoveryPhase(StrEnum):
    DETECTED = "detected"  # a failure confirmed by the worker's own probes
    STARTED = "started"  # a plan was made and execution begins
    PROMOTED = "promoted"  # the successor is writable
    COMPLETED = "completed"  # every step done (lost replicas, if any, are listed)
    FAILED = "failed"  # the recovery stopped: refused plan, failed step, failed pre-hook
    BLOCKED = "blocked"  # not attempted: disabled, filtered, in the block period, downtimed


class TimedPhase(StrEnum):
    """The stretches of a failover's path whose durations a recovery event carries
    (``RecoveryData.phases``, milliseconds; docs/recovery.md, "Where the time goes")."""

    DETECT = "detect"  # discovery: the liveness link saw the master go -> `unreachable` sent
    CONFIRM = "confirm"  # the worker: the suspicion reached it -> the failure verified
    PLAN = "plan"  # verified -> the executor starts (gates, etcd, hooks, the plan)
    PROMOTE = "promote"  # the executor starts -> the successor is writable
    REPOINT = "repoint"  # the replicas moved under the successor and verified


class RecoveryData(BaseModel):
    """What every recovery event carries (fields empty until known)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    recovery_id: str
    cluster: str
    cluster_alias: str = ""
    analysis: str  # the analysis code, e.g. DeadMaster
    failed: str  # host:port of the failed instance
    successor: str = ""
    repointed: tuple[str, ...] = ()
    lost: dict[str, str] = {}  # host:port -> why it could not follow
    rejected: dict[str, str] = {}  # host:port -> why it was not chosen
    reason: str = ""  # for failed / blocked: one sentence
    fencing_token: int = 0
    worker: str = ""  # the worker's id
    started_at: datetime | None = None
    ended_at: datetime | None = None
    forced: bool = False
    requested_by: str = ""
    # New: the operation that asked for it ("graceful-master-takeover", ...); empty for an
    # automated recovery. orchestrator's AnalysisEntry.CommandHint.
    command: str = ""
    # Issue 10 (docs/recovery.md, "Events"): replicas moved under the successor after the
    # recovery (PostponeReplicaRecoveryOnLagMinutes); False when the successor was left to the
    # hooks to promote (ApplyMySQLPromotionAfterMasterFailover=false); a semi-sync recovery's
    # changes: replica -> semi-sync turned on (true) or off (false).
    postponed: tuple[str, ...] = ()
    promotion_applied: bool = True
    semi_sync: dict[str, bool] = {}
    # Issue 16 (docs/galera.md): the failed instance is a Galera node; its async replicas are
    # relocated under another node of its Galera cluster, nobody is promoted.
    galera: bool = False
    # Issue 17: how long each stretch of the path took so far, in milliseconds, by
    # ``TimedPhase`` name; a stretch not (yet) run is absent.
    phases: dict[str, float] = {}

    # A consumer applies these keys: one that is not host:port fails validation here, so the
    # message is refused as malformed instead of failing halfway through being applied.
    @field_validator("failed")
    @classmethod
    def _failed_is_a_key(cls, value: str) -> str:
        InstanceKey.parse(value)
        return value

    @field_validator("successor")
    @classmethod
    def _successor_is_a_key(cls, value: str) -> str:
        if value:
            InstanceKey.parse(value)
        return value

    @field_validator("repointed", "postponed")
    @classmethod
    def _keys(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            InstanceKey.parse(value)
        return values


def describe_recovery(phase: RecoveryPhase, data: RecoveryData) -> str:
    """One line saying what a recovery event means: the worker's audit entry for it, and a
    step of the recovery in topology-api's ``/api/audit-recovery-steps``."""
    what = data.command or data.analysis
    text = f"{phase.value}: {what} on {data.failed} (cluster {data.cluster})"
    if data.successor:
        text += f"; successor {data.successor}"
    if data.galera:
        text += "; a Galera node: its async replicas relocated under another node, no promotion"
    if not data.promotion_applied:
        text += (
            "; promotion left to the operator's hooks (ApplyMySQLPromotionAfterMasterFailover="
            "false): the successor stays read_only, its replication stopped, not reset"
        )
    if data.repointed:
        text += f"; moved {', '.join(data.repointed)}"
    if data.postponed:
        text += f"; postponed (moved after the recovery): {', '.join(data.postponed)}"
    if data.semi_sync:
        changes = [f"{key} {'on' if on else 'off'}" for key, on in sorted(data.semi_sync.items())]
        text += f"; semi-sync turned {', '.join(changes)}"
    if data.lost:
        text += "; lost " + ", ".join(f"{key} ({why})" for key, why in sorted(data.lost.items()))
    if data.rejected and phase in (RecoveryPhase.STARTED, RecoveryPhase.FAILED):
        text += "; not chosen " + ", ".join(
            f"{key} ({why})" for key, why in sorted(data.rejected.items())
        )
    if data.reason:
        text += f"; {data.reason}"
    if phase is RecoveryPhase.DETECTED:
        text += f"; by {data.worker or 'the recovery worker'} (fencing token {data.fencing_token})"
    return text


class RecoveryEvent(BaseModel):
    """A CloudEvents 1.0 structured-mode event around :class:`RecoveryData`."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str  # the cluster
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    schema_version: int = Field(default=EVENTS_SCHEMA_VERSION, alias="schema")
    data: RecoveryData

    @classmethod
    def of(cls, phase: RecoveryPhase, data: RecoveryData, *, source: str) -> RecoveryEvent:
        return cls(
            source=source,
            type=CLOUDEVENTS_TYPE_PREFIX + phase.value,
            subject=data.cluster,
            data=data,
        )

    @field_validator("type")
    @classmethod
    def _a_known_phase(cls, value: str) -> str:
        phase = value.removeprefix(CLOUDEVENTS_TYPE_PREFIX)
        if value == phase or phase not in RecoveryPhase.__members__.values():
            raise ValueError(f"not a recovery event type: {value!r}")
        return value

    @property
    def phase(self) -> RecoveryPhase:
        return RecoveryPhase(self.type.removeprefix(CLOUDEVENTS_TYPE_PREFIX))

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class AnalysisProblem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    instance: str
    code: str
    description: str = ""
    is_actionable: bool = False

    @field_validator("instance")
    @classmethod
    def _a_key(cls, value: str) -> str:
        InstanceKey.parse(value)
        return value


class AnalysisEvent(BaseModel):
    """``orchestrator.v1.analysis.<cluster>``: the cluster's problems now (empty = cleared)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_version: int = Field(default=EVENTS_SCHEMA_VERSION, alias="schema")
    cluster: str
    problems: tuple[AnalysisProblem, ...]
    at: datetime

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


# In a hook's audit message (``hook-<stage>`` types), what follows this is the hook's output:
# the API shows it to the admin role only (docs/security.md).
HOOK_OUTPUT_MARK = "; output: "
HOOK_AUDIT_PREFIX = "hook-"


class AuditEvent(BaseModel):
    """``orchestrator.v1.audit.<cluster>``: one audit entry from any service that changes a
    topology (who, what, on which instance); topology-api keeps them for ``/api/audit``. The
    message is redacted when the event is built: no password or token on the bus or in the store."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    schema_version: int = Field(default=EVENTS_SCHEMA_VERSION, alias="schema")
    type: str  # what was done, e.g. recovery-promote, relocate
    message: str = ""
    key: str = ""  # host:port of the instance, or empty
    cluster: str = ""
    user: str = ""  # who asked: an operator, or the worker's id
    at: datetime | None = None
    ok: bool = True
    details: dict[str, Any] = {}

    @field_validator("message")
    @classmethod
    def _redacted(cls, message: str) -> str:
        return redact(message)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
