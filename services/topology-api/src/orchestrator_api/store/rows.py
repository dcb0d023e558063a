"""Conversions between the models and database rows (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from orchestrator_api.store.driver import Row
from orchestrator_api.store.models import (
    AuditEntry,
    FailureDetection,
    RecoveryRecord,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime, PromotionRule
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import Topology


def to_seconds(moment: datetime) -> float:
    """Unix seconds; a naive time is taken as UTC (every service writes UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def opt_seconds(moment: datetime | None) -> float | None:
    return None if moment is None else to_seconds(moment)


def from_seconds(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def opt_from_seconds(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_seconds(seconds)


def key_text(key: InstanceKey | None) -> str:
    return "" if key is None else str(key)


def key_or_none(text: str) -> InstanceKey | None:
    return InstanceKey.parse(text) if text else None


def keys_json(keys: tuple[InstanceKey, ...]) -> str:
    return json.dumps([str(key) for key in keys])


def keys_from_json(text: str) -> tuple[InstanceKey, ...]:
    return tuple(InstanceKey.parse(item) for item in json.loads(text))


DOWNTIME_COLUMNS = "instance_key, owner, reason, begins_at, ends_at"


def downtime_params(downtime: Downtime) -> tuple[Any, ...]:
    return (
        str(downtime.key),
        downtime.owner,
        downtime.reason,
        to_seconds(downtime.begins_at),
        to_seconds(downtime.ends_at),
    )


def downtime_of(row: Row) -> Downtime:
    return Downtime(
        key=InstanceKey.parse(row[0]),
        owner=row[1],
        reason=row[2],
        begins_at=from_seconds(row[3]),
        ends_at=from_seconds(row[4]),
    )


CANDIDATE_COLUMNS = "instance_key, promotion_rule, registered_at, expires_at"


def candidate_params(candidate: Candidate) -> tuple[Any, ...]:
    return (
        str(candidate.key),
        candidate.rule.value,
        to_seconds(candidate.registered_at),
        to_seconds(candidate.expires_at),
    )


def candidate_of(row: Row) -> Candidate:
    return Candidate(
        key=InstanceKey.parse(row[0]),
        rule=PromotionRule(row[1]),
        registered_at=from_seconds(row[2]),
        expires_at=from_seconds(row[3]),
    )


AUDIT_COLUMNS = "at, audit_type, instance_key, cluster_name, message, actor"


def audit_params(entry: AuditEntry) -> tuple[Any, ...]:
    return (
        to_seconds(entry.at),
        entry.type,
        key_text(entry.key),
        entry.cluster,
        entry.message,
        entry.user,
    )


def audit_of(row: Row) -> AuditEntry:
    return AuditEntry(
        id=int(row[0]),
        at=from_seconds(row[1]),
        type=row[2],
        key=key_or_none(row[3]),
        cluster=row[4],
        message=row[5],
        user=row[6],
    )


DETECTION_COLUMNS = (
    "instance_key, cluster_name, cluster_alias, analysis_code, detected_at, is_actionable, "
    "processing_node, processing_token, related_recovery_id, analysis"
)


def detection_params(detection: FailureDetection) -> tuple[Any, ...]:
    return (
        str(detection.key),
        detection.cluster,
        detection.cluster_alias,
        detection.analysis_code,
        to_seconds(detection.detected_at),
        int(detection.is_actionable),
        detection.processing_node,
        detection.processing_token,
        detection.related_recovery_id,
        detection.analysis,
    )


def detection_of(row: Row) -> FailureDetection:
    return FailureDetection(
        id=int(row[0]),
        key=InstanceKey.parse(row[1]),
        cluster=row[2],
        cluster_alias=row[3],
        analysis_code=row[4],
        detected_at=from_seconds(row[5]),
        is_actionable=bool(row[6]),
        processing_node=row[7],
        processing_token=row[8],
        related_recovery_id=int(row[9]),
        analysis=row[10],
    )


RECOVERY_COLUMNS = (
    "uid, instance_key, cluster_name, cluster_alias, analysis_code, recovery_kind, "
    "recovery_type, started_at, ended_at, is_active, is_successful, successor_key, "
    "successor_alias, lost_replicas, participating_instances, all_errors, processing_node, "
    "processing_token, fencing_token, acknowledged, acknowledged_at, acknowledged_by, "
    "acknowledged_comment, last_detection_id, related_recovery_id, analysis"
)


def recovery_params(record: RecoveryRecord) -> tuple[Any, ...]:
    return (
        record.uid,
        str(record.key),
        record.cluster,
        record.cluster_alias,
        record.analysis_code,
        record.type,
        record.recovery_type,
        to_seconds(record.started_at),
        opt_seconds(record.ended_at),
        int(record.is_active),
        int(record.is_successful),
        key_text(record.successor_key),
        record.successor_alias,
        keys_json(record.lost_replicas),
        keys_json(record.participating_instances),
        json.dumps(list(record.all_errors)),
        record.processing_node,
        record.processing_token,
        record.fencing_token,
        int(record.acknowledged),
        opt_seconds(record.acknowledged_at),
        record.acknowledged_by,
        record.acknowledged_comment,
        record.last_detection_id,
        record.related_recovery_id,
        record.analysis,
    )


def recovery_of(row: Row) -> RecoveryRecord:
    return RecoveryRecord(
        id=int(row[0]),
        uid=row[1],
        key=InstanceKey.parse(row[2]),
        cluster=row[3],
        cluster_alias=row[4],
        analysis_code=row[5],
        type=row[6],
        recovery_type=row[7],
        started_at=from_seconds(row[8]),
        ended_at=opt_from_seconds(row[9]),
        is_active=bool(row[10]),
        is_successful=bool(row[11]),
        successor_key=key_or_none(row[12]),
        successor_alias=row[13],
        lost_replicas=keys_from_json(row[14]),
        participating_instances=keys_from_json(row[15]),
        all_errors=tuple(json.loads(row[16])),
        processing_node=row[17],
        processing_token=row[18],
        fencing_token=int(row[19]),
        acknowledged=bool(row[20]),
        acknowledged_at=opt_from_seconds(row[21]),
        acknowledged_by=row[22],
        acknowledged_comment=row[23],
        last_detection_id=int(row[24]),
        related_recovery_id=int(row[25]),
        analysis=row[26],
    )


UPSERT_INSTANCE = (
    "INSERT INTO instances (instance_key, hostname, port, cluster_name, master_key, "
    "suggested_cluster_alias, ok, last_checked, last_seen, snapshot, generation, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (instance_key) DO UPDATE SET cluster_name = excluded.cluster_name, "
    "master_key = excluded.master_key, "
    "suggested_cluster_alias = excluded.suggested_cluster_alias, ok = excluded.ok, "
    "last_checked = excluded.last_checked, last_seen = excluded.last_seen, "
    "snapshot = excluded.snapshot, generation = excluded.generation, "
    "updated_at = excluded.updated_at "
    "WHERE excluded.last_checked >= instances.last_checked"
)


def instance_params(
    snapshot: InstanceSnapshot, topology: Topology, generation: int, now: float
) -> tuple[Any, ...]:
    key = snapshot.instance_key
    return (
        str(key),
        key.host,
        key.port,
        topology.cluster_of_instance.get(key, str(key)),
        key_text(snapshot.master_key),
        snapshot.suggested_cluster_alias,
        int(snapshot.probe.ok),
        to_seconds(snapshot.probe.checked_at),
        opt_seconds(snapshot.probe.last_seen_at),
        snapshot.to_json().decode(),
        generation,
        now,
    )


def where(*conditions: tuple[str, object]) -> tuple[str, list[object]]:
    """`` WHERE a AND b`` from the conditions whose value is not None, and their values."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in used), [value for _, value in used]
