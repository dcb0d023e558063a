"""orchestrator's ``Instance`` JSON (``go/inst/instance.go``), built from a snapshot in a topology.

Every field orchestrator writes is written, with its name (legacy aliases and the
``ReplicationIOThreadRuning`` typo included), its JSON type and, wherever a snapshot knows it, its
value. What a snapshot cannot know is written as orchestrator writes an unset field:

* ``InstanceAlias``, ``PhysicalEnvironment``, ``UnresolvedHostname``: ``""`` (no
  ``DetectInstanceAliasQuery`` / ``DetectPhysicalEnvironmentQuery``, no unresolve map);
* ``UsingPseudoGTID``, ``ReplicationCredentialsAvailable``: ``false``; ``CountMySQLSnapshots``,
  ``SemiSyncPriority``: ``0`` (no pseudo-GTID, credentials query or orchestrator-agent);
* ``IsDetachedMaster``: ``true`` for a replica ``detach-replica-master-host`` detached, whose
  ``MasterKey`` is then ``{"Hostname": "//host", ...}`` as orchestrator shows it;
* the Group Replication fields: empty (MySQL Group Replication is not probed).

``SuggestedClusterAlias`` is the instance's own ``DetectClusterAliasQuery`` answer, else the
cluster's alias (orchestrator lets replicas inherit their master's), else ``""``. ``Replicas``
joins the replicas the server reports with those placed under it in the topology.

MariaDB GTID state, which orchestrator's Instance does not carry, is added under new names
(:data:`EXTRA_FIELDS`); extra fields do not break orchestrator's clients. ``ExecutedGtidSet``,
``GtidPurged`` and ``GTIDMode`` stay empty for MariaDB, as in orchestrator. A Galera node's
wsrep state is the ``Galera`` object (:func:`galera_json`), ``null`` for other servers.

Reachability (§5.5 of the reference) is computed from the probe facts and ``now``:
``IsLastCheckValid`` is ``last_checked <= last_seen``; ``IsUpToDate`` / ``IsRecentlyChecked``
are "seconds since the last check <= ``poll_seconds`` / ``5 * poll_seconds``", in whole seconds
as orchestrator's SQL counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from orchestrator_api.wire.timefmt import (
    go_datetime,
    nanoseconds,
    rfc3339,
    whole_seconds_between,
)
from orchestrator_api.wire.values import (
    LogType,
    binlog_coordinates_json,
    go_quote_ascii,
    instance_key_json,
    instance_keys_json,
    null_int64,
)
from orchestrator_shared.analysis.errant import find_errant
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime, PromotionRule
from orchestrator_shared.snapshot import (
    Flavor,
    GaleraState,
    InstanceSnapshot,
    ReplicationChannel,
    ThreadState,
)
from orchestrator_shared.topology import Cluster, TopologyInstance

__all__ = [
    "DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS",
    "EXTRA_FIELDS",
    "Candidate",
    "CheckState",
    "Downtime",
    "Problem",
    "PromotionRule",
    "ancestors",
    "check_state",
    "effective_promotion_rule",
    "galera_json",
    "instance_json",
    "instance_problems",
]

DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS = 10
"""orchestrator's ``ReasonableReplicationLagSeconds`` default."""

EXTRA_FIELDS = frozenset(
    {
        "GtidDomainId",
        "GtidBinlogPos",
        "GtidCurrentPos",
        "GtidSlavePos",
        "GtidIOPos",
        "GtidStrictMode",
        "UsingGtid",
        "Galera",
    }
)
"""Fields we add to orchestrator's Instance: MariaDB's GTID state (empty for MySQL) and the
node's Galera state (null for a server not running wsrep)."""


class Problem(StrEnum):
    """The words of ``Instance.Problems``."""

    LAST_CHECK_INVALID = "last_check_invalid"
    NOT_RECENTLY_CHECKED = "not_recently_checked"
    NOT_REPLICATING = "not_replicating"
    REPLICATION_LAG = "replication_lag"
    ERRANT_GTID = "errant_gtid"


@dataclass(frozen=True, slots=True)
class CheckState:
    """orchestrator's reachability flags for one instance at one moment."""

    is_last_check_valid: bool
    is_up_to_date: bool
    is_recently_checked: bool
    seconds_since_last_seen: int | None


def check_state(snapshot: InstanceSnapshot, *, now: datetime, poll_seconds: float) -> CheckState:
    probe = snapshot.probe
    since_checked = max(whole_seconds_between(probe.checked_at, now), 0)
    last_seen = probe.last_seen_at
    return CheckState(
        is_last_check_valid=last_seen is not None and probe.checked_at <= last_seen,
        is_up_to_date=since_checked <= poll_seconds,
        is_recently_checked=since_checked <= 5 * poll_seconds,
        seconds_since_last_seen=(
            None if last_seen is None else whole_seconds_between(last_seen, now)
        ),
    )


def _lag(value: int | None) -> int | None:
    return None if value is None else max(value, 0)


def instance_problems(
    snapshot: InstanceSnapshot,
    check: CheckState,
    *,
    reasonable_lag_seconds: int = DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS,
    gtid_errant: str = "",
) -> list[str]:
    """``Instance.Problems``, in orchestrator's order: at most one of invalid / unchecked /
    not replicating / lagging, then ``errant_gtid``."""
    problems: list[str] = []
    channel = snapshot.primary_channel
    lag = _lag(snapshot.replication_lag_seconds)
    if not check.is_last_check_valid:
        problems.append(Problem.LAST_CHECK_INVALID)
    elif not check.is_recently_checked:
        problems.append(Problem.NOT_RECENTLY_CHECKED)
    elif channel is not None and _threads_exist(channel) and not channel.is_replicating:
        problems.append(Problem.NOT_REPLICATING)
    elif lag is not None and abs(lag - _sql_delay(channel)) > reasonable_lag_seconds:
        problems.append(Problem.REPLICATION_LAG)
    if gtid_errant:
        problems.append(Problem.ERRANT_GTID)
    return [str(problem) for problem in problems]


def _threads_exist(channel: ReplicationChannel) -> bool:
    return (
        channel.io_thread is not ThreadState.NOT_CONFIGURED
        and channel.sql_thread is not ThreadState.NOT_CONFIGURED
    )


def _sql_delay(channel: ReplicationChannel | None) -> int:
    return channel.sql_delay if channel is not None else 0


def effective_promotion_rule(
    snapshot: InstanceSnapshot, candidate: Candidate | None, *, now: datetime
) -> PromotionRule:
    """A registered, unexpired candidate rule; else the one ``DetectPromotionRuleQuery`` gave
    (orchestrator registers that one as a candidate too); else ``neutral``."""
    if candidate is not None and candidate.is_active(now):
        return PromotionRule(candidate.rule)
    try:
        return PromotionRule(snapshot.promotion_rule)
    except ValueError:
        return PromotionRule.NEUTRAL


@lru_cache(maxsize=16384)
def _key(text: str) -> InstanceKey:
    """A snapshot's (already canonical) key text parsed once: keys are immutable values, and
    parsing dominated the cost of building a response."""
    return InstanceKey.parse(text)


def _master_key(channel: ReplicationChannel | None) -> InstanceKey | None:
    return _key(channel.master_key) if channel is not None else None


def _master_key_json(channel: ReplicationChannel | None) -> dict[str, Any]:
    """``MasterKey``; a detached master written ``//host``, as orchestrator does."""
    answer = instance_key_json(_master_key(channel))
    if channel is not None and channel.master_detached:
        answer["Hostname"] = "//" + answer["Hostname"]
    return answer


def _master_uuid(snapshot: InstanceSnapshot, channel: ReplicationChannel | None) -> str:
    if channel is None:
        return ""
    # orchestrator reads Master_UUID with "No" as the default, and MariaDB has no such column.
    if not channel.master_uuid and snapshot.flavor is Flavor.MARIADB:
        return "No"
    return channel.master_uuid


def galera_json(galera: GaleraState | None) -> dict[str, Any] | None:
    """The ``Galera`` object of an instance: its wsrep state under orchestrator-style names;
    None (JSON null) for a server not running wsrep."""
    if galera is None:
        return None
    return {
        "ClusterName": galera.cluster_name,
        "NodeName": galera.node_name,
        "ClusterStateUUID": galera.cluster_state_uuid,
        "ClusterSize": galera.cluster_size,
        "ClusterStatus": galera.cluster_status,
        "LocalStateComment": galera.local_state,
        "IsSynced": galera.is_synced,
        "IsPrimaryComponent": galera.is_primary,
        "Ready": galera.ready,
        "Connected": galera.connected,
        "Desync": galera.desync,
        "DesyncCount": galera.desync_count,
        "GtidDomainId": galera.gtid_domain_id,
        "IncomingAddresses": galera.incoming_addresses,
        "Members": instance_keys_json(_key(key) for key in galera.member_keys),
    }


def ancestors(node: TopologyInstance, cluster: Cluster) -> tuple[TopologyInstance, ...]:
    """The nodes above ``node`` in its tree, nearest first; a co-master ends the chain (its
    master sits below it)."""
    found: list[TopologyInstance] = []
    current = node
    while not current.is_co_master:
        master = current.snapshot.master_key
        parent = cluster.instances.get(master) if master is not None else None
        # Follow the tree only: the parent sits exactly one level up.
        if parent is None or parent.depth != current.depth - 1:
            break
        found.append(parent)
        current = parent
    return tuple(found)


def errant_gtids(node: TopologyInstance, cluster: Cluster) -> str:
    """orchestrator's ``GtidErrant`` of ``node``: the transactions it has that its master does
    not (in the server's notation; '' when none, or for a master)."""
    chain = ancestors(node, cluster)
    if not chain:
        return ""
    found = find_errant(
        node.snapshot, [chain[0].snapshot], upstream=[member.snapshot for member in chain]
    )
    return found.gtids if found is not None else ""


def cluster_errant(cluster: Cluster) -> frozenset[InstanceKey]:
    """The members of ``cluster`` with errant GTIDs."""
    return frozenset(key for key, node in cluster.instances.items() if errant_gtids(node, cluster))


def _ancestry(node: TopologyInstance, cluster: Cluster) -> list[str]:
    """The server UUIDs from the top of the chain down to ``node``, as orchestrator chains
    ``AncestryUUID`` (a co-master's chain is its master and itself)."""
    chain = (node, *ancestors(node, cluster))
    uuids = [member.snapshot.server_uuid for member in chain]
    top = chain[-1]
    if top.is_co_master:
        channel = top.snapshot.primary_channel
        uuids.append(channel.master_uuid if channel is not None else "")
    return [uuid for uuid in reversed(uuids) if uuid]


def _alias(node: TopologyInstance, cluster: Cluster) -> str:
    if node.snapshot.suggested_cluster_alias:
        return node.snapshot.suggested_cluster_alias
    return cluster.alias if cluster.alias != cluster.name else ""


def instance_json(
    node: TopologyInstance,
    cluster: Cluster,
    *,
    now: datetime,
    poll_seconds: float,
    downtime: Downtime | None = None,
    candidate: Candidate | None = None,
    reasonable_lag_seconds: int = DEFAULT_REASONABLE_REPLICATION_LAG_SECONDS,
    gtid_errant: str | None = None,
) -> dict[str, Any]:
    """The instance as orchestrator's ``/api/instance`` answers it (fields in its order).

    ``gtid_errant``: orchestrator's ``GtidErrant``; None: found from the node's master in
    ``cluster`` (:func:`errant_gtids`).
    """
    if gtid_errant is None:
        gtid_errant = errant_gtids(node, cluster)
    snap = node.snapshot
    channel = snap.primary_channel
    check = check_state(snap, now=now, poll_seconds=poll_seconds)
    rule = effective_promotion_rule(snap, candidate, now=now)
    is_mariadb = snap.flavor is Flavor.MARIADB
    io_state = channel.io_thread if channel is not None else ThreadState.NOT_CONFIGURED
    sql_state = channel.sql_thread if channel is not None else ThreadState.NOT_CONFIGURED
    sql_running = sql_state is ThreadState.RUNNING
    io_running = io_state is ThreadState.RUNNING
    exec_coordinates = channel.exec_coordinates if channel is not None else None
    seconds_behind = _lag(channel.seconds_behind_master) if channel is not None else None
    lag = null_int64(_lag(snap.replication_lag_seconds))
    log_replica_updates = snap.log_slave_updates
    replicas = instance_keys_json((*node.replicas, *(_key(key) for key in snap.replica_keys)))
    semi = snap.semi_sync
    is_downtimed = downtime is not None and downtime.is_active(now)
    # orchestrator counts elapsed downtime only while the downtime lasts
    elapsed_downtime = (
        whole_seconds_between(downtime.begins_at, now)
        if downtime is not None and is_downtimed
        else 0
    )
    return {
        "Key": instance_key_json(_key(snap.key)),
        "InstanceAlias": "",
        "Uptime": snap.uptime_seconds,
        "ServerID": snap.server_id,
        "ServerUUID": snap.server_uuid,
        "Version": snap.version,
        "VersionComment": snap.version_comment,
        "FlavorName": str(snap.flavor),
        "ReadOnly": snap.read_only,
        "Binlog_format": snap.binlog_format,
        "BinlogRowImage": snap.binlog_row_image,
        "LogBinEnabled": snap.log_bin,
        "LogSlaveUpdatesEnabled": log_replica_updates,
        "LogReplicationUpdatesEnabled": log_replica_updates,
        "SelfBinlogCoordinates": binlog_coordinates_json(snap.self_coordinates),
        "MasterKey": _master_key_json(channel),
        "MasterUUID": _master_uuid(snap, channel),
        "AncestryUUID": ",".join(_ancestry(node, cluster)),
        "IsDetachedMaster": channel is not None and channel.master_detached,
        "Slave_SQL_Running": sql_running,
        "ReplicationSQLThreadRuning": sql_running,
        "Slave_IO_Running": io_running,
        "ReplicationIOThreadRuning": io_running,
        "ReplicationSQLThreadState": int(sql_state),
        "ReplicationIOThreadState": int(io_state),
        "HasReplicationFilters": channel is not None and channel.has_replication_filters,
        "GTIDMode": "" if is_mariadb else snap.gtid_mode,
        "SupportsOracleGTID": not is_mariadb and snap.gtid_mode not in ("", "OFF"),
        "UsingOracleGTID": channel is not None and channel.auto_position,
        "UsingMariaDBGTID": channel is not None and channel.using_gtid not in ("", "No"),
        "UsingPseudoGTID": False,
        "ReadBinlogCoordinates": binlog_coordinates_json(
            channel.read_coordinates if channel is not None else None
        ),
        "ExecBinlogCoordinates": binlog_coordinates_json(exec_coordinates),
        "IsDetached": exec_coordinates is not None and exec_coordinates.file.startswith("//"),
        "RelaylogCoordinates": binlog_coordinates_json(
            channel.relay_coordinates if channel is not None else None, LogType.RELAY_LOG
        ),
        "LastSQLError": go_quote_ascii(channel.last_sql_error if channel is not None else ""),
        "LastIOError": go_quote_ascii(channel.last_io_error if channel is not None else ""),
        "SecondsBehindMaster": null_int64(seconds_behind),
        "SQLDelay": _sql_delay(channel),
        "ExecutedGtidSet": "" if is_mariadb else snap.gtid_executed,
        "GtidPurged": "" if is_mariadb else snap.gtid_purged,
        "GtidErrant": gtid_errant,
        "SlaveLagSeconds": lag,
        "ReplicationLagSeconds": dict(lag),
        "SlaveHosts": replicas,
        "Replicas": [dict(key) for key in replicas],
        "ClusterName": node.cluster_name,
        "SuggestedClusterAlias": _alias(node, cluster),
        "DataCenter": snap.data_center,
        "Region": snap.region,
        "PhysicalEnvironment": "",
        "ReplicationDepth": node.depth,
        "IsCoMaster": node.is_co_master,
        "HasReplicationCredentials": channel is not None and channel.master_user != "",
        "ReplicationCredentialsAvailable": False,
        "SemiSyncAvailable": semi.available,
        "SemiSyncPriority": 0,
        "SemiSyncMasterEnabled": semi.master_enabled,
        "SemiSyncReplicaEnabled": semi.replica_enabled,
        "SemiSyncMasterTimeout": semi.master_timeout_ms,
        "SemiSyncMasterWaitForReplicaCount": semi.master_wait_for_replica_count,
        "SemiSyncMasterStatus": semi.master_status,
        "SemiSyncMasterClients": semi.master_clients,
        "SemiSyncReplicaStatus": semi.replica_status,
        "LastSeenTimestamp": rfc3339(snap.probe.last_seen_at),
        "IsLastCheckValid": check.is_last_check_valid,
        "IsUpToDate": check.is_up_to_date,
        "IsRecentlyChecked": check.is_recently_checked,
        "SecondsSinceLastSeen": null_int64(check.seconds_since_last_seen),
        "CountMySQLSnapshots": 0,
        "IsCandidate": rule in (PromotionRule.MUST, PromotionRule.PREFER),
        "PromotionRule": str(rule),
        "IsDowntimed": is_downtimed,
        "DowntimeReason": downtime.reason if downtime is not None else "",
        "DowntimeOwner": downtime.owner if downtime is not None else "",
        "DowntimeEndTimestamp": go_datetime(downtime.ends_at) if downtime is not None else "",
        "ElapsedDowntime": nanoseconds(max(elapsed_downtime, 0)),
        "UnresolvedHostname": "",
        "AllowTLS": channel is not None and channel.master_ssl_allowed,
        "Problems": instance_problems(
            snap,
            check,
            reasonable_lag_seconds=reasonable_lag_seconds,
            gtid_errant=gtid_errant,
        ),
        "LastDiscoveryLatency": nanoseconds(snap.probe.latency_seconds),
        "ReplicationGroupName": "",
        "ReplicationGroupIsSinglePrimary": False,
        "ReplicationGroupMemberState": "",
        "ReplicationGroupMemberRole": "",
        "ReplicationGroupMembers": [],
        "ReplicationGroupPrimaryInstanceKey": instance_key_json(None),
        # --- ours: MariaDB GTID state ---
        "GtidDomainId": snap.gtid_domain_id,
        "GtidBinlogPos": snap.gtid_binlog_pos,
        "GtidCurrentPos": snap.gtid_current_pos,
        "GtidSlavePos": snap.gtid_slave_pos,
        "GtidIOPos": channel.gtid_io_pos if channel is not None else "",
        "GtidStrictMode": snap.gtid_strict_mode,
        "UsingGtid": channel.using_gtid if channel is not None else "",
        # --- ours: Galera ---
        "Galera": galera_json(snap.galera),
    }
