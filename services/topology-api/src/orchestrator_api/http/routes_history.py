"""Analysis, problems and history: ``replication-analysis``, ``problems``, ``audit*``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as FastApiPath

from orchestrator_api import wire
from orchestrator_api.auth import Principal, Role
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import ReadAccess
from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.payloads import instance_payload
from orchestrator_api.store import AuditEntry, FailureDetection, RecoveryFilter, RecoveryRecord
from orchestrator_api.store.recoveries import MASTER_ANALYSES
from orchestrator_api.store.view import FleetView
from orchestrator_api.wire.timefmt import go_datetime, rfc3339
from orchestrator_shared.analysis import (
    AnalysisOptions,
    analyze,
    track_binlog_coordinates,
    track_galera_desync,
)
from orchestrator_shared.events import HOOK_AUDIT_PREFIX, HOOK_OUTPUT_MARK
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.redact import redact

router = APIRouter(prefix="/api")

PAGE_SIZE = 20


# --- analysis and problems ------------------------------------------------------------------


async def _analysis(
    context: ApiContext,
    view: FleetView,
    *,
    cluster: str | None = None,
    key: InstanceKey | None = None,
) -> dict[str, Any]:
    now = context.clock()
    downtimes = view.downtimes(now=now)
    context.binlog_history = track_binlog_coordinates(
        context.binlog_history, view.snapshots.values()
    )
    context.desynced_since = track_galera_desync(context.desynced_since, view.snapshots.values())
    entries = analyze(
        view.snapshots.values(),
        now=now,
        downtimed={d.key: d.ends_at for d in downtimes},
        options=AnalysisOptions.from_settings(context.settings),
        binlog_history=context.binlog_history,
        desynced_since=context.desynced_since,
    )
    details = []
    for entry in entries:
        if cluster is not None and entry.cluster_name != cluster:
            continue
        if key is not None and entry.key != key:
            continue
        answer = entry.to_orchestrator_json()
        summary = view.summaries.get(entry.cluster_name)
        if summary is not None:
            answer["ClusterDetails"]["ClusterAlias"] = summary.alias
        details.append(answer)
    return wire.ok_envelope("Analysis", details)


@router.get("/replication-analysis")
async def replication_analysis(context: Context, _: ReadAccess) -> dict[str, Any]:
    return await _analysis(context, await context.view())


@router.get("/replication-analysis/instance/{host}/{port}")
async def replication_analysis_of_instance(
    host: str, port: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    view, node = await context.instance(host, port)
    return await _analysis(context, view, key=node.key)


@router.get("/replication-analysis/{hint}")
async def replication_analysis_of_cluster(
    hint: str, context: Context, _: ReadAccess
) -> dict[str, Any]:
    view, name = await context.cluster_name(hint)
    return await _analysis(context, view, cluster=name)


async def _problems(context: ApiContext, view: FleetView, cluster: str | None) -> list[Any]:
    now = context.clock()
    nodes = view.cluster_instances(cluster) if cluster is not None else view.all_instances()
    answers = []
    for node in nodes:
        payload = instance_payload(
            view,
            node,
            now=now,
            poll=context.settings.InstancePollSeconds,
            reasonable_lag=context.settings.ReasonableReplicationLagSeconds,
        )
        if payload["Problems"] and not payload["IsDowntimed"]:
            answers.append(payload)
    return answers


@router.get("/problems")
async def problems(context: Context, _: ReadAccess) -> list[Any] | None:
    answers = await _problems(context, await context.view(), None)
    return answers or None  # orchestrator answers null when nothing is wrong


@router.get("/problems/{hint}")
async def problems_of_cluster(hint: str, context: Context, _: ReadAccess) -> list[Any] | None:
    view, name = await context.cluster_name(hint)
    return (await _problems(context, view, name)) or None


# --- audit ----------------------------------------------------------------------------------


MAX_PAGE = 10**9  # beyond it the offset would not fit the stores' 64-bit integers
RowId = Annotated[int, FastApiPath(ge=0, le=2**63 - 1)]  # ids are 64-bit in both stores


def _page(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_PAGE:
        raise ApiError(400, f"invalid page {text!r}: expected a number from 0 to {MAX_PAGE}")
    return int(text)


def audit_message(entry: AuditEntry, who: Principal) -> str:
    """The message as ``who`` may read it: redacted; a hook's output only for the admin role."""
    message = entry.message
    if who.role < Role.ADMIN and entry.type.startswith(HOOK_AUDIT_PREFIX):
        described, mark, _ = message.partition(HOOK_OUTPUT_MARK)
        message = described + (f"{HOOK_OUTPUT_MARK}(shown to the admin role only)" if mark else "")
    return redact(message)


def audit_json(entry: AuditEntry, who: Principal) -> dict[str, Any]:
    return {
        "AuditId": entry.id,
        "AuditTimestamp": go_datetime(entry.at),
        "AuditType": entry.type,
        "AuditInstanceKey": wire.instance_key_json(entry.key)
        if entry.key is not None
        else {"Hostname": "", "Port": 0},
        "ClusterName": entry.cluster,
        "User": entry.user,
        "Message": audit_message(entry, who),
    }


@router.get("/audit")
async def audit(context: Context, who: ReadAccess) -> list[dict[str, Any]]:
    return [audit_json(e, who) for e in await context.store.audit_log(limit=PAGE_SIZE)]


@router.get("/audit/instance/{host}/{port}")
async def audit_of_instance(
    host: str, port: str, context: Context, who: ReadAccess
) -> list[dict[str, Any]]:
    key = context.key(host, port)
    return [audit_json(e, who) for e in await context.store.audit_log(key=key, limit=PAGE_SIZE)]


@router.get("/audit/{page}")
async def audit_page(page: str, context: Context, who: ReadAccess) -> list[dict[str, Any]]:
    entries = await context.store.audit_log(limit=PAGE_SIZE, offset=_page(page) * PAGE_SIZE)
    return [audit_json(e, who) for e in entries]


# --- recovery history -----------------------------------------------------------------------


def _analysis_entry(
    text: str, key: InstanceKey, code: str, cluster: str, alias: str
) -> dict[str, Any]:
    """orchestrator's ``ReplicationAnalysis`` of a detection or recovery: the entry the recovery
    service sent, completed by what every record knows (the instance, the code, the cluster),
    so that readers of audit-recovery always find them."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError:
        entry = {}
    if not isinstance(entry, dict):
        entry = {}
    entry.setdefault("AnalyzedInstanceKey", wire.instance_key_json(key))
    entry.setdefault("Analysis", code)
    entry.setdefault("ClusterDetails", {"ClusterName": cluster, "ClusterAlias": alias or cluster})
    entry.setdefault("IsMaster", code in MASTER_ANALYSES)
    return entry


def _moment(value: datetime | None, *, go: bool = False) -> str:
    if value is None:
        return ""
    return go_datetime(value) if go else rfc3339(value)


def recovery_json(record: RecoveryRecord) -> dict[str, Any]:
    """orchestrator's ``TopologyRecovery`` (field names and types as in audit-recovery)."""
    return {
        "Id": record.id,
        "UID": record.uid,
        "AnalysisEntry": _analysis_entry(
            record.analysis, record.key, record.analysis_code, record.cluster, record.cluster_alias
        ),
        "SuccessorKey": wire.instance_key_json(record.successor_key)
        if record.successor_key is not None
        else None,
        "SuccessorAlias": record.successor_alias,
        "SuccessorBinlogCoordinates": None,
        "IsActive": record.is_active,
        "IsSuccessful": record.is_successful,
        "LostReplicas": [wire.instance_key_json(k) for k in record.lost_replicas],
        "ParticipatingInstanceKeys": [
            wire.instance_key_json(k) for k in record.participating_instances
        ],
        "AllErrors": list(record.all_errors),
        "RecoveryStartTimestamp": _moment(record.started_at),
        "RecoveryEndTimestamp": _moment(record.ended_at, go=True),
        "ProcessingNodeHostname": record.processing_node,
        "ProcessingNodeToken": record.processing_token,
        "Acknowledged": record.acknowledged,
        "AcknowledgedAt": _moment(record.acknowledged_at, go=True),
        "AcknowledgedBy": record.acknowledged_by,
        "AcknowledgedComment": record.acknowledged_comment,
        "LastDetectionId": record.last_detection_id,
        "RelatedRecoveryId": record.related_recovery_id,
        "Type": record.type,
        "RecoveryType": record.recovery_type,
    }


def detection_json(detection: FailureDetection) -> dict[str, Any]:
    """A failure detection in orchestrator's shape (a TopologyRecovery with what is known)."""
    return {
        "Id": detection.id,
        "UID": "",
        "AnalysisEntry": _analysis_entry(
            detection.analysis,
            detection.key,
            detection.analysis_code,
            detection.cluster,
            detection.cluster_alias,
        ),
        "SuccessorKey": None,
        "SuccessorAlias": "",
        "SuccessorBinlogCoordinates": None,
        "IsActive": False,
        "IsSuccessful": False,
        "LostReplicas": [],
        "ParticipatingInstanceKeys": [],
        "AllErrors": None,
        "RecoveryStartTimestamp": _moment(detection.detected_at),
        "RecoveryEndTimestamp": "",
        "ProcessingNodeHostname": detection.processing_node,
        "ProcessingNodeToken": detection.processing_token,
        "Acknowledged": False,
        "AcknowledgedAt": "",
        "AcknowledgedBy": "",
        "AcknowledgedComment": "",
        "LastDetectionId": 0,
        "RelatedRecoveryId": detection.related_recovery_id,
        "Type": "",
        "RecoveryType": "",
    }


async def _recoveries(context: ApiContext, where: RecoveryFilter) -> list[dict[str, Any]]:
    return [recovery_json(r) for r in await context.store.recoveries(where)]


@router.get("/audit-recovery")
async def audit_recovery(
    context: Context, _: ReadAccess, unacknowledged: bool = False
) -> list[dict[str, Any]]:
    where = RecoveryFilter(unacknowledged_only=unacknowledged, limit=PAGE_SIZE)
    return await _recoveries(context, where)


@router.get("/audit-recovery/id/{recovery_id}")
async def audit_recovery_by_id(
    recovery_id: RowId, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    return await _recoveries(context, RecoveryFilter(id=recovery_id))


@router.get("/audit-recovery/uid/{uid}")
async def audit_recovery_by_uid(uid: str, context: Context, _: ReadAccess) -> list[dict[str, Any]]:
    return await _recoveries(context, RecoveryFilter(uid=uid))


@router.get("/audit-recovery-steps/{uid}")
async def audit_recovery_steps(uid: str, context: Context, _: ReadAccess) -> list[dict[str, Any]]:
    """orchestrator's ``TopologyRecoveryStep`` list of one recovery, oldest first (``[]`` for
    an unknown uid, as orchestrator)."""
    return [
        {
            "Id": step.id,
            "RecoveryUID": step.recovery_uid,
            "AuditAt": go_datetime(step.at),
            "Message": step.message,
        }
        for step in await context.store.recovery_steps(uid)
    ]


@router.get("/audit-recovery/cluster/{cluster}")
async def audit_recovery_of_cluster(
    cluster: str, context: Context, _: ReadAccess, unacknowledged: bool = False
) -> list[dict[str, Any]]:
    where = RecoveryFilter(cluster=cluster, unacknowledged_only=unacknowledged, limit=PAGE_SIZE)
    return await _recoveries(context, where)


@router.get("/audit-recovery/alias/{alias}")
async def audit_recovery_of_alias(
    alias: str, context: Context, _: ReadAccess, unacknowledged: bool = False
) -> list[dict[str, Any]]:
    where = RecoveryFilter(cluster_alias=alias, unacknowledged_only=unacknowledged, limit=PAGE_SIZE)
    return await _recoveries(context, where)


@router.get("/audit-recovery/{page}")
async def audit_recovery_page(
    page: str, context: Context, _: ReadAccess, unacknowledged: bool = False
) -> list[dict[str, Any]]:
    where = RecoveryFilter(
        unacknowledged_only=unacknowledged, limit=PAGE_SIZE, offset=_page(page) * PAGE_SIZE
    )
    return await _recoveries(context, where)


@router.get("/audit-failure-detection")
async def audit_failure_detection(context: Context, _: ReadAccess) -> list[dict[str, Any]]:
    return [detection_json(d) for d in await context.store.failure_detections(limit=PAGE_SIZE)]


@router.get("/audit-failure-detection/id/{detection_id}")
async def audit_failure_detection_by_id(
    detection_id: RowId, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    found = await context.store.failure_detections(id=detection_id)
    if not found:
        raise NotFound(f"no failure detection with id {detection_id}")
    return [detection_json(d) for d in found]


@router.get("/audit-failure-detection/alias/{alias}")
async def audit_failure_detection_of_alias(
    alias: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    found = await context.store.failure_detections(cluster_alias=alias, limit=PAGE_SIZE)
    return [detection_json(d) for d in found]


@router.get("/audit-failure-detection/{page}")
async def audit_failure_detection_page(
    page: str, context: Context, _: ReadAccess
) -> list[dict[str, Any]]:
    found = await context.store.failure_detections(limit=PAGE_SIZE, offset=_page(page) * PAGE_SIZE)
    return [detection_json(d) for d in found]
