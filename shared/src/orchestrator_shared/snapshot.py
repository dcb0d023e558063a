"""The instance snapshot: everything one probe learned about one MySQL/MariaDB server.

A snapshot is the unit discovery publishes on ``orchestrator.v1.snapshot.<key>`` and what every
other service reasons about. It is immutable. A failed probe does not erase what was known: it
republishes the last good snapshot with new ``probe`` facts (``ok=False``, the error, and an
unchanged ``last_seen_at``), exactly as orchestrator keeps the instance row and only moves
``last_checked``. ``probe.partial`` marks a probe that got the mandatory variables but failed
later, so its replication facts may be stale.

Legacy MySQL words (``Slave_IO_Running``...) are kept only in the raw-row parsers and in the
orchestrator-compatible API; here the fields say replica/master in plain words.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey

SNAPSHOT_SCHEMA_VERSION = 1


class Flavor(StrEnum):
    MARIADB = "MariaDB"
    MYSQL = "MySQL"
    PERCONA = "Percona"
    UNKNOWN = "unknown"


class ThreadState(IntEnum):
    """A replication thread's state, numbered as orchestrator's ``Replication*ThreadState``."""

    NOT_CONFIGURED = -1
    STOPPED = 0
    RUNNING = 1
    OTHER = 2  # e.g. "Connecting": configured and started, but not (yet) working

    @classmethod
    def from_status(cls, text: str | None) -> ThreadState:
        if text is None or text == "":
            return cls.NOT_CONFIGURED
        if text == "Yes":
            return cls.RUNNING
        if text == "No":
            return cls.STOPPED
        return cls.OTHER


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def _check_key(value: str) -> str:
    return str(InstanceKey.parse(value))


def _check_keys(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_check_key(value) for value in values)


class Coordinates(_Frozen):
    """Binlog coordinates on the wire: ``{"file": ..., "position": ...}``."""

    file: str = ""
    position: int = 0

    @classmethod
    def of(cls, coordinates: BinlogCoordinates | None) -> Coordinates | None:
        if coordinates is None:
            return None
        return cls(file=coordinates.file, position=coordinates.position)

    def to_binlog(self) -> BinlogCoordinates:
        return BinlogCoordinates(self.file, self.position)


class ReplicationChannel(_Frozen):
    """One replication channel (one row of ``SHOW ALL SLAVES STATUS`` / ``SHOW REPLICA STATUS``).

    MariaDB multi-source replication has several, each with its ``name`` (``''`` is the
    default connection). They are all kept: there is no "last row wins".
    """

    name: str = ""
    master_key: str
    master_user: str = ""
    io_running: str = ""
    sql_running: str = ""
    io_thread: ThreadState = ThreadState.NOT_CONFIGURED
    sql_thread: ThreadState = ThreadState.NOT_CONFIGURED
    io_state_text: str = ""
    sql_state_text: str = ""
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    read_coordinates: Coordinates | None = None
    exec_coordinates: Coordinates | None = None
    relay_coordinates: Coordinates | None = None
    seconds_behind_master: int | None = None
    sql_delay: int = 0
    master_server_id: int = 0
    master_uuid: str = ""
    # MariaDB: Using_Gtid is "No", "Slave_Pos" or "Current_Pos"; Gtid_IO_Pos the received position.
    using_gtid: str = ""
    gtid_io_pos: str = ""
    # MySQL: Auto_Position and the received / executed GTID sets.
    auto_position: bool = False
    retrieved_gtid_set: str = ""
    executed_gtid_set: str = ""
    has_replication_filters: bool = False
    master_ssl_allowed: bool = False
    # orchestrator's detached master: ``detach-replica-master-host`` rewrote Master_Host to
    # ``//host`` (reversible with reattach-replica-master-host); ``master_key`` is then the
    # master it was detached from, and the channel links it to no master.
    master_detached: bool = False
    # MariaDB's Slave_heartbeat_period (MySQL: none in SHOW REPLICA STATUS): how often, in
    # seconds, the master sends a heartbeat on an idle link; None when the server does not say.
    heartbeat_period: float | None = None

    _check_master = field_validator("master_key")(_check_key)

    @property
    def linked_master(self) -> InstanceKey | None:
        """The master this channel links its instance to: None for a detached one."""
        return None if self.master_detached else InstanceKey.parse(self.master_key)

    @property
    def is_replicating(self) -> bool:
        return self.io_thread is ThreadState.RUNNING and self.sql_thread is ThreadState.RUNNING

    @property
    def uses_gtid(self) -> bool:
        return self.auto_position or self.using_gtid not in ("", "No")


class SemiSync(_Frozen):
    available: bool = False
    master_enabled: bool = False
    replica_enabled: bool = False
    master_status: bool = False
    replica_status: bool = False
    master_clients: int = 0
    master_timeout_ms: int = 0
    master_wait_for_replica_count: int = 1


class GaleraState(_Frozen):
    """A Galera (wsrep) node's view of itself and of its cluster, as its last probe read it.

    Only servers running wsrep (``@@wsrep_on``) have one; it is the evidence Galera analysis
    works from, so it keeps the server's own words (``local_state`` is
    ``wsrep_local_state_comment``: ``Synced``, ``Donor/Desynced``, ``Joining``...;
    ``cluster_status`` is ``Primary``, ``non-Primary`` or ``Disconnected``).
    """

    cluster_name: str = ""
    node_name: str = ""
    cluster_state_uuid: str = ""
    cluster_size: int = 0
    cluster_status: str = ""
    local_state: str = ""
    ready: bool = False
    connected: bool = False
    # @@wsrep_desync (set by hand or by a backup tool) and the status counter of desync requests
    desync: bool = False
    desync_count: int = 0
    gtid_domain_id: int | None = None
    # wsrep_incoming_addresses as the server wrote it, and the keys it names (nodes that
    # publish no client address, "AUTO" or "", are left out)
    incoming_addresses: str = ""
    member_keys: tuple[str, ...] = ()

    _check_members = field_validator("member_keys")(_check_keys)

    @property
    def is_synced(self) -> bool:
        return self.local_state == "Synced"

    @property
    def is_primary(self) -> bool:
        return self.cluster_status == "Primary"

    @property
    def is_desynced(self) -> bool:
        """Desynced by hand or by a backup tool (``@@wsrep_desync``), or serving as a donor."""
        return self.desync or self.local_state == "Donor/Desynced"


class ProbeFacts(_Frozen):
    """What happened when the instance was last probed (orchestrator's reachability columns)."""

    ok: bool
    partial: bool = False
    checked_at: datetime
    attempted_at: datetime
    last_seen_at: datetime | None = None
    latency_seconds: float = 0.0
    error: str = ""
    errno: int | None = None
    # The probe failed because the instance did not answer before the deadline (it may hang).
    timed_out: bool = False


class InstanceSnapshot(_Frozen):
    schema_version: Annotated[int, Field(alias="schema")] = SNAPSHOT_SCHEMA_VERSION
    key: str
    probe: ProbeFacts

    server_id: int = 0
    server_uuid: str = ""
    hostname: str = ""
    version: str = ""
    version_comment: str = ""
    flavor: Flavor = Flavor.UNKNOWN
    read_only: bool = False
    super_read_only: bool = False
    log_bin: bool = False
    log_slave_updates: bool = False
    binlog_format: str = ""
    binlog_row_image: str = ""
    uptime_seconds: int = 0
    # @@slave_net_timeout: how long (seconds) a replica's IO thread waits for data before it
    # takes the link as broken and reconnects (read by a running IO thread when it connects)
    slave_net_timeout: int | None = None
    self_coordinates: Coordinates | None = None

    # MariaDB GTID state
    gtid_domain_id: int | None = None
    gtid_binlog_pos: str = ""
    gtid_current_pos: str = ""
    gtid_slave_pos: str = ""
    gtid_strict_mode: bool = False
    # MySQL GTID state
    gtid_mode: str = ""
    gtid_executed: str = ""
    gtid_purged: str = ""

    semi_sync: SemiSync = SemiSync()
    # Galera (wsrep) state; None for a server not running wsrep (and in older snapshots)
    galera: GaleraState | None = None
    channels: tuple[ReplicationChannel, ...] = ()
    replica_keys: tuple[str, ...] = ()

    data_center: str = ""
    region: str = ""
    suggested_cluster_alias: str = ""
    promotion_rule: str = ""
    replication_lag_seconds: int | None = None

    _check_own_key = field_validator("key")(_check_key)

    _check_replicas = field_validator("replica_keys")(_check_keys)

    # --- derived views ---------------------------------------------------------------------
    @property
    def instance_key(self) -> InstanceKey:
        return InstanceKey.parse(self.key)

    @property
    def primary_channel(self) -> ReplicationChannel | None:
        """The channel used to place this instance in a tree: the default one, else the first."""
        for channel in self.channels:
            if channel.name == "":
                return channel
        return self.channels[0] if self.channels else None

    @property
    def master_key(self) -> InstanceKey | None:
        """The master this instance replicates from; None for none, or a detached one."""
        channel = self.primary_channel
        return channel.linked_master if channel is not None else None

    @property
    def galera_cluster_uuid(self) -> str:
        """The state UUID of the Galera cluster this node belongs to ("" for none, and for the
        nil UUID of a node that never joined one): nodes that share one are one cluster of ours
        (a dead node's is the one it last reported)."""
        uuid = self.galera.cluster_state_uuid if self.galera is not None else ""
        return uuid if uuid.strip("0-") else ""

    @property
    def is_replica(self) -> bool:
        return bool(self.channels)

    @property
    def major_version(self) -> str:
        parts = self.version.split(".")
        return ".".join(parts[:2]) if len(parts) >= 2 else self.version

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> InstanceSnapshot:
        return cls.model_validate_json(data)

    def with_failed_probe(self, probe: ProbeFacts) -> InstanceSnapshot:
        """The same known facts with a failed probe recorded; ``last_seen_at`` stays what it
        was, whatever ``probe`` says, since the instance was not seen this time."""
        kept = probe.model_copy(update={"ok": False, "last_seen_at": self.probe.last_seen_at})
        return self.model_copy(update={"probe": kept})


def utcnow() -> datetime:
    return datetime.now(UTC)


def unknown_instance(key: InstanceKey, probe: ProbeFacts) -> InstanceSnapshot:
    """The snapshot of an instance never seen alive: only the failed probe is known."""
    return InstanceSnapshot(key=str(key), probe=probe)
