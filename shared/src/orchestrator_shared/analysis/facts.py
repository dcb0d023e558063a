"""What the snapshots say about one instance and its direct replicas (orchestrator's SQL row).

``check_validity`` is orchestrator's ``IsLastCheckValid`` over a snapshot's probe facts, made to
work on published values rather than on backend columns: the last probe succeeded, nothing has
been attempted since that hangs (``timed_out``, or an attempt long after the last sighting), and
the snapshot is recent (a probe that hangs forever publishes nothing, so an old snapshot is the
same evidence as a hung probe).

``ReplicaLink`` is one replica seen through its channel to the analysed master; with multi-source
replication a replica is linked to each of its masters through the channel that points there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator_shared.analysis.model import AnalysisOptions
from orchestrator_shared.snapshot import (
    GaleraState,
    InstanceSnapshot,
    ReplicationChannel,
    ThreadState,
)

_FAILING_TO_CONNECT = re.compile(r"error .*connecting to (master|source)", re.IGNORECASE)
_GTID_MODE_ORDER = {"OFF": 0, "OFF_PERMISSIVE": 1, "ON_PERMISSIVE": 2, "ON": 3}


@dataclass(frozen=True, slots=True)
class Validity:
    """Whether an instance's last check counts, and why, in words."""

    is_valid: bool
    reason: str


def check_validity(
    snapshot: InstanceSnapshot, *, now: datetime, options: AnalysisOptions
) -> Validity:
    probe = snapshot.probe
    seen = probe.last_seen_at
    since_checked = (now - probe.checked_at).total_seconds()
    if probe.timed_out:
        return Validity(False, f"probe timed out ({probe.error or 'no answer'}){_seen(seen, now)}")
    if not probe.ok:
        kind = "partially failed" if probe.partial else "failed"
        return Validity(False, f"probe {kind}: {probe.error or 'unknown error'}{_seen(seen, now)}")
    if seen is None or probe.checked_at > seen:
        return Validity(False, f"last check did not see the instance{_seen(seen, now)}")
    if (probe.attempted_at - seen).total_seconds() > options.hung_probe_seconds:
        hung = (probe.attempted_at - seen).total_seconds()
        return Validity(False, f"a probe attempted {hung:.0f}s after the last sighting hangs")
    if since_checked > options.recently_checked_seconds:
        return Validity(False, f"not checked for {since_checked:.0f}s (a probe may hang)")
    return Validity(True, f"reachable (checked {max(since_checked, 0):.0f}s ago)")


def _seen(seen: datetime | None, now: datetime) -> str:
    if seen is None:
        return "; never seen"
    return f"; last seen {(now - seen).total_seconds():.0f}s ago"


def galera_evidence(galera: GaleraState, *, expected_size: int) -> str:
    """A Galera node's state in words, as its last probe read it (the ``Galera*`` codes' and
    the operator's evidence)."""
    cluster = galera.cluster_name or galera.cluster_state_uuid or "?"
    expected = f" (GaleraExpectedClusterSize {expected_size})" if expected_size else ""
    desync = f", desynced ({galera.desync_count} desync requests)" if galera.desync else ""
    return (
        f"Galera node {galera.node_name or '?'} of {cluster}: "
        f"{galera.local_state or 'state unknown'}, "
        f"{galera.cluster_status or 'unknown'} component of {galera.cluster_size} node(s)"
        f"{expected}{desync}"
    )


def desync_evidence(since: datetime, *, now: datetime, limit: float) -> str:
    """Since when a Galera node has been desynced, for how long, against the limit."""
    threshold = f"GaleraDesyncedTooLongSeconds {limit:g}{'' if limit else ': not checked'}"
    return (
        f"desynced since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z "
        f"({(now - since).total_seconds():.0f} s, {threshold})"
    )


def is_failing_to_connect(channel: ReplicationChannel) -> bool:
    """orchestrator's test: IO thread not running, SQL thread running, a connect error."""
    return (
        channel.io_thread is not ThreadState.RUNNING
        and channel.sql_thread is ThreadState.RUNNING
        and bool(_FAILING_TO_CONNECT.search(channel.last_io_error))
    )


def uses_mariadb_gtid(channel: ReplicationChannel) -> bool:
    return channel.using_gtid.lower() in ("slave_pos", "current_pos")


@dataclass(frozen=True, slots=True)
class ReplicaLink:
    snapshot: InstanceSnapshot
    channel: ReplicationChannel
    validity: Validity
    is_downtimed: bool

    @property
    def is_valid(self) -> bool:
        return self.validity.is_valid

    @property
    def is_replicating(self) -> bool:
        return self.channel.is_replicating

    @property
    def is_connected(self) -> bool:
        """Its IO thread is connected to the master: it can still see it."""
        return self.channel.io_thread is ThreadState.RUNNING

    @property
    def lag_seconds(self) -> int | None:
        if self.channel is self.snapshot.primary_channel:
            lag = self.snapshot.replication_lag_seconds
            if lag is not None:
                return lag
        return self.channel.seconds_behind_master

    @property
    def is_logging(self) -> bool:
        return self.snapshot.log_bin and self.snapshot.log_slave_updates

    def describe(self) -> str:
        key = self.snapshot.key
        channel = self.channel
        name = f" channel '{channel.name}'" if channel.name else ""
        if not self.is_valid:
            return f"replica {key}: unreachable ({self.validity.reason})"
        threads = (
            f"IO thread {channel.io_running or 'not configured'}, "
            f"SQL thread {channel.sql_running or 'not configured'}"
        )
        error = f": {channel.last_io_error}" if channel.last_io_error else ""
        lag = self.lag_seconds
        lag_text = f", lag {lag}s" if lag is not None else ", lag unknown"
        delay = f", delayed by {channel.sql_delay}s" if channel.sql_delay else ""
        return f"replica {key}{name}: reachable; {threads}{lag_text}{delay}{error}"


@dataclass(frozen=True, slots=True)
class ReplicaCounts:
    """orchestrator's aggregate counts over an instance's direct replicas."""

    replicas: int
    valid: int
    valid_replicating: int
    valid_connected: int
    failing_to_connect: int
    downtimed: int
    delayed: int
    lagging: int
    logging: int
    statement_logging: int
    mixed_logging: int
    row_logging: int
    distinct_logging_major_versions: int
    semi_sync_enabled: int
    oracle_gtid_topology: bool
    mariadb_gtid_topology: bool
    min_gtid_mode: str
    max_gtid_mode: str
    has_mixed_mariadb_gtid_use: bool

    @classmethod
    def of(cls, links: Sequence[ReplicaLink], *, options: AnalysisOptions) -> ReplicaCounts:
        valid = [link for link in links if link.is_valid]
        # orchestrator judges GTID support on the valid replicas only; when none is reachable
        # their last known channels say more than "no support" would.
        judged = valid or list(links)
        logging = [link for link in links if link.is_logging]
        formats = [link.snapshot.binlog_format.upper() for link in logging]
        modes = sorted(
            (link.snapshot.gtid_mode.upper() for link in links),
            key=lambda mode: _GTID_MODE_ORDER.get(mode, -1),
        )
        maria_uses = {uses_mariadb_gtid(link.channel) for link in links if link.channel.using_gtid}
        lag_limit = options.reasonable_replication_lag_seconds
        return cls(
            replicas=len(links),
            valid=len(valid),
            valid_replicating=sum(link.is_replicating for link in valid),
            valid_connected=sum(link.is_connected for link in valid),
            failing_to_connect=sum(is_failing_to_connect(link.channel) for link in valid),
            downtimed=sum(link.is_downtimed for link in links),
            delayed=sum(link.channel.sql_delay > 0 for link in links),
            lagging=sum(
                (lag := link.lag_seconds) is not None and lag > lag_limit for link in links
            ),
            logging=len(logging),
            statement_logging=formats.count("STATEMENT"),
            mixed_logging=formats.count("MIXED"),
            row_logging=formats.count("ROW"),
            distinct_logging_major_versions=len({link.snapshot.major_version for link in logging}),
            semi_sync_enabled=sum(link.snapshot.semi_sync.replica_enabled for link in links),
            oracle_gtid_topology=bool(judged)
            and all(link.channel.auto_position for link in judged),
            mariadb_gtid_topology=bool(judged)
            and all(uses_mariadb_gtid(link.channel) for link in judged),
            min_gtid_mode=modes[0] if modes else "",
            max_gtid_mode=modes[-1] if modes else "",
            has_mixed_mariadb_gtid_use=len(maria_uses) > 1,
        )
