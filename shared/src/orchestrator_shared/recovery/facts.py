"""One replica as planning sees it: its link to the failed instance, its positions, and the
facts each rule reads (GTID use, delay, lag, logging, version, promotion rule, errant GTIDs)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator_shared.analysis.errant import ErrantGtids, find_errant
from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.errors import InvalidBinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery.model import GtidKind
from orchestrator_shared.recovery.positions import (
    MariaPosition,
    Position,
    ServerPositions,
    gtid_kind_of,
)
from orchestrator_shared.snapshot import Coordinates, InstanceSnapshot, ReplicationChannel

__all__ = [
    "RULE_RANK",
    "ServerFacts",
    "channel_to",
    "compare_has_all",
    "has_gtid_state",
    "major_version",
]

RULE_RANK: Mapping[PromotionRule, int] = {
    PromotionRule.MUST: 0,
    PromotionRule.PREFER: 1,
    PromotionRule.NEUTRAL: 2,
    PromotionRule.PREFER_NOT: 3,
    PromotionRule.MUST_NOT: 4,
}

_VERSION = re.compile(r"([0-9]+)\.([0-9]+)")


def major_version(version: str) -> tuple[int, int] | None:
    """``(10, 11)`` for ``10.11.6-MariaDB-log``; ``None`` when the text has no version."""
    match = _VERSION.match(version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def channel_to(snapshot: InstanceSnapshot, master: InstanceKey) -> ReplicationChannel | None:
    """The replication channel of ``snapshot`` whose master is ``master``, if any."""
    for channel in snapshot.channels:
        if channel.linked_master == master:
            return channel
    return None


def _coordinates(value: Coordinates | None) -> BinlogCoordinates | None:
    if value is None or not value.file:
        return None
    try:
        return value.to_binlog()
    except InvalidBinlogCoordinates:
        return None


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """A server seen through its channel to the failed instance (``channel`` is ``None`` when
    it has none, e.g. a sibling or the master of a dead intermediate master)."""

    snapshot: InstanceSnapshot
    channel: ReplicationChannel | None
    positions: ServerPositions
    rule: PromotionRule
    rule_source: str
    errant: ErrantGtids | None

    @classmethod
    def of(
        cls,
        snapshot: InstanceSnapshot,
        *,
        master: InstanceSnapshot | None,
        master_key: InstanceKey | None = None,
        upstream: Sequence[InstanceSnapshot] = (),
        peers: Sequence[InstanceSnapshot] = (),
        candidates: Mapping[InstanceKey, PromotionRule],
    ) -> ServerFacts:
        """``master`` is the instance whose replica this one is (the failed one for replicas,
        the cluster master for siblings); errant GTIDs are judged against it and ``upstream``.
        Without its snapshot, ``master_key`` still finds the channel (and nothing is errant).
        When the master's GTID state is unknown, errant GTIDs are judged against ``peers``
        (the other replicas of that master) instead: what none of them has and no upstream
        server wrote."""
        if master is not None:
            master_key = master.instance_key
        channel = channel_to(snapshot, master_key) if master_key is not None else None
        registered = candidates.get(snapshot.instance_key)
        if registered is not None:
            rule, source = registered, "registered"
        else:
            try:
                rule, source = PromotionRule(snapshot.promotion_rule.strip().lower()), "detected"
            except ValueError:
                rule, source = PromotionRule.NEUTRAL, "default"
        errant = _errant(snapshot, master, upstream=upstream, peers=peers)
        return cls(snapshot, channel, ServerPositions.of(snapshot, channel), rule, source, errant)

    @property
    def key(self) -> InstanceKey:
        return self.snapshot.instance_key

    @property
    def is_reachable(self) -> bool:
        return self.snapshot.probe.ok

    @property
    def unreachable_reason(self) -> str:
        probe = self.snapshot.probe
        return f"unreachable ({probe.error or 'last probe failed'})"

    @property
    def uses_gtid(self) -> bool:
        return self.channel is not None and self.channel.uses_gtid

    @property
    def gtid_kind(self) -> GtidKind | None:
        return self.positions.kind

    @property
    def sql_delay(self) -> int:
        return self.channel.sql_delay if self.channel is not None else 0

    @property
    def lag_seconds(self) -> int | None:
        lag = self.snapshot.replication_lag_seconds
        if lag is None and self.channel is not None:
            lag = self.channel.seconds_behind_master
        return lag

    @property
    def major(self) -> tuple[int, int] | None:
        return major_version(self.snapshot.version)

    @property
    def major_text(self) -> str:
        major = self.major
        return f"{major[0]}.{major[1]}" if major else self.snapshot.version

    @property
    def read_coordinates(self) -> BinlogCoordinates | None:
        return _coordinates(self.channel.read_coordinates) if self.channel else None

    @property
    def exec_coordinates(self) -> BinlogCoordinates | None:
        return _coordinates(self.channel.exec_coordinates) if self.channel else None

    @property
    def legitimate(self) -> Position | None:
        """Its eventual position without its errant GTIDs: the cluster's data it holds."""
        eventual = self.positions.eventual
        if eventual is None or self.errant is None:
            return eventual
        if isinstance(eventual, MariaPosition):
            return eventual.without_errant(self.errant, self.positions.replicated)
        return eventual.without_errant(self.errant)

    @property
    def must_catch_up(self) -> bool:
        if self.positions.must_catch_up:
            return True
        read, executed = self.read_coordinates, self.exec_coordinates
        return (
            read is not None
            and executed is not None
            and read.same_log_family(executed)
            and executed < read
        )


def has_gtid_state(snapshot: InstanceSnapshot) -> bool:
    """Whether the snapshot says which GTIDs the server has."""
    return bool(snapshot.gtid_binlog_pos or snapshot.gtid_current_pos or snapshot.gtid_executed)


def _errant(
    snapshot: InstanceSnapshot,
    master: InstanceSnapshot | None,
    *,
    upstream: Sequence[InstanceSnapshot],
    peers: Sequence[InstanceSnapshot],
) -> ErrantGtids | None:
    if master is None:
        return None
    if has_gtid_state(master):
        return find_errant(snapshot, [master], upstream=upstream)
    if not _master_identity_known(snapshot, master):
        # The master's own transactions could not be told from errant ones: judge nothing.
        return None
    reference = [
        peer
        for peer in peers
        if peer.instance_key != snapshot.instance_key and peer.probe.ok and has_gtid_state(peer)
    ]
    if not reference:
        return None
    return find_errant(snapshot, reference, upstream=[master, *upstream])


def _master_identity_known(snapshot: InstanceSnapshot, master: InstanceSnapshot) -> bool:
    """Whether the GTIDs the master wrote can be recognised (its server id for MariaDB, its
    uuid for MySQL), from its snapshot or from what the replica's channel reports."""
    if gtid_kind_of(snapshot) is GtidKind.MARIADB:
        return bool(master.server_id) or any(ch.master_server_id for ch in snapshot.channels)
    return bool(master.server_uuid) or any(ch.master_uuid for ch in snapshot.channels)


def compare_has_all(
    holder: ServerFacts,
    other: ServerFacts,
    *,
    holder_position: Position | None,
    other_position: Position | None,
) -> tuple[bool | None, str]:
    """Whether ``holder`` has every transaction ``other`` has, and what it lacks in words.

    GTID positions decide when both are known and of one kind; otherwise the two channels' read
    coordinates in the failed master's binary log (orchestrator's comparison); otherwise
    ``None``: it cannot be told.
    """
    if holder_position is not None and other_position is not None:
        verdict = holder_position.contains(other_position)
        if verdict is not None:
            return verdict, "" if verdict else holder_position.lacks(other_position)
    mine, theirs = holder.read_coordinates, other.read_coordinates
    if mine is not None and theirs is not None and mine.same_log_family(theirs):
        if mine >= theirs:
            return True, ""
        return False, f"the failed master's binlog from {mine} to {theirs}"
    return None, ""
