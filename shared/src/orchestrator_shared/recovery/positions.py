"""What a server has: its GTID position (MariaDB) or set (MySQL), and how two compare.

Planning asks one question again and again: *does server A have every transaction server B
has?* ``Position.contains`` answers it, with ``None`` when the two cannot be compared (different
GTID implementations, or nothing known).

MariaDB
    A position keeps the last GTID of each domain. A contains B when, in every domain of B, A's
    ``seq_no`` is at least B's, and where they are equal both name the same ``server_id`` (two
    servers under one number are two different transactions). A position may also hold an *upper
    bound* with no server id (see ``without_errant``): the transactions of a replica before its
    errant GTID in that domain.

MySQL
    A GTID set; A contains B when B minus A is empty.

Three positions are read from each server (``ServerPositions``):

``executed``  what it has applied: MariaDB ``gtid_current_pos`` (else ``gtid_binlog_pos`` merged
              with ``gtid_slave_pos``), MySQL ``gtid_executed``;
``eventual``  what it will have once its relay log is applied: ``executed`` plus what its
              replication channel has received (MariaDB ``Gtid_IO_Pos``, MySQL
              ``Retrieved_Gtid_Set``). Data counts as *had* as soon as a replica received it:
              a semi-sync master acknowledged the commit then.
``binlog``    what it can serve to replicas: MariaDB ``gtid_binlog_pos`` (else ``executed``),
              MySQL ``gtid_executed``.

Errant GTIDs are not the cluster's data; ``without_errant`` removes them (exactly for a MySQL
set; for a MariaDB position, each domain that ends with an errant GTID falls back to what the
replica got through replication, ``gtid_slave_pos`` plus what it received).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from orchestrator_shared.analysis.errant import ErrantGtids
from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import GtidSet, MariaGtidPosition
from orchestrator_shared.recovery.model import GtidKind
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot, ReplicationChannel

__all__ = ["MariaPosition", "MySQLPosition", "Position", "ServerPositions", "gtid_kind_of"]


@dataclass(frozen=True, slots=True)
class _Last:
    """The last transaction of one MariaDB domain; ``server_id`` ``None`` for an upper bound."""

    seq_no: int
    server_id: int | None


class MariaPosition(Mapping[int, _Last]):
    """A MariaDB position: domain id -> last ``seq_no`` (and the server that wrote it)."""

    __slots__ = ("_by_domain",)

    kind = GtidKind.MARIADB

    def __init__(self, by_domain: Mapping[int, _Last]) -> None:
        self._by_domain = {
            domain: last for domain, last in sorted(by_domain.items()) if last.seq_no
        }

    @classmethod
    def of(cls, position: MariaGtidPosition) -> MariaPosition:
        return cls({d: _Last(gtid.seq_no, gtid.server_id) for d, gtid in position.items()})

    def __getitem__(self, domain: int) -> _Last:
        return self._by_domain[domain]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_domain)

    def __len__(self) -> int:
        return len(self._by_domain)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MariaPosition):
            return NotImplemented
        return self._by_domain == other._by_domain

    def __hash__(self) -> int:
        return hash(tuple(self._by_domain.items()))

    def __str__(self) -> str:
        return ",".join(_gtid_text(domain, last) for domain, last in self._by_domain.items())

    def seq_no(self, domain: int) -> int:
        last = self._by_domain.get(domain)
        return 0 if last is None else last.seq_no

    def contains(self, other: Position) -> bool | None:
        if not isinstance(other, MariaPosition):
            return None
        return not other.missing_from(self)

    def missing_from(self, other: MariaPosition) -> dict[int, _Last]:
        """The domains where this position has something ``other`` lacks."""
        missing: dict[int, _Last] = {}
        for domain, mine in self._by_domain.items():
            theirs = other._by_domain.get(domain)
            if theirs is None or _behind(theirs, mine):
                missing[domain] = mine
        return missing

    def lacks(self, other: Position) -> str:
        """In words, what ``other`` has that this position does not ('' if nothing)."""
        if not isinstance(other, MariaPosition):
            return ""
        gtids = other.missing_from(self)
        return ",".join(_gtid_text(domain, last) for domain, last in gtids.items())

    def merged_with(self, other: MariaPosition) -> MariaPosition:
        """Per domain, the higher ``seq_no``; on a tie this position's entry."""
        merged = dict(self._by_domain)
        for domain, last in other._by_domain.items():
            if last.seq_no > self.seq_no(domain):
                merged[domain] = last
        return MariaPosition(merged)

    def without_errant(
        self, errant: ErrantGtids, replicated: MariaPosition | None = None
    ) -> MariaPosition:
        """The replica's legitimate part: in each domain where this position ends with an
        errant GTID, what the replica got through replication there (``replicated``: its
        ``gtid_slave_pos`` and received position), or when that is unknown the bound of what
        came before the errant GTID (``seq_no - 1``, writer unknown)."""
        try:
            errant_position = MariaGtidPosition.parse(errant.gtids)
        except InvalidGtid:
            return self
        kept = dict(self._by_domain)
        for domain, gtid in errant_position.items():
            mine = kept.get(domain)
            if mine is None or (mine.seq_no, mine.server_id) != (gtid.seq_no, gtid.server_id):
                continue
            if replicated is None:
                kept[domain] = _Last(gtid.seq_no - 1, None)
            elif domain in replicated:
                kept[domain] = replicated[domain]
            else:
                del kept[domain]
        return MariaPosition(kept)


class MySQLPosition:
    """A MySQL GTID set."""

    __slots__ = ("gtids",)

    kind = GtidKind.MYSQL

    def __init__(self, gtids: GtidSet) -> None:
        self.gtids = gtids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MySQLPosition):
            return NotImplemented
        return self.gtids == other.gtids

    def __hash__(self) -> int:
        return hash(self.gtids)

    def __str__(self) -> str:
        return str(self.gtids)

    def contains(self, other: Position) -> bool | None:
        if not isinstance(other, MySQLPosition):
            return None
        return self.gtids.contains(other.gtids)

    def lacks(self, other: Position) -> str:
        if not isinstance(other, MySQLPosition):
            return ""
        return str(other.gtids - self.gtids)

    def merged_with(self, other: MySQLPosition) -> MySQLPosition:
        return MySQLPosition(self.gtids | other.gtids)

    def without_errant(
        self, errant: ErrantGtids, replicated: MySQLPosition | None = None
    ) -> MySQLPosition:
        try:
            return MySQLPosition(self.gtids - GtidSet.parse(errant.gtids))
        except InvalidGtid:
            return self


Position = MariaPosition | MySQLPosition


def _behind(theirs: _Last, mine: _Last) -> bool:
    """Whether ``theirs`` lacks ``mine``: a lower ``seq_no``, or the same one written by
    another server (two transactions under one number)."""
    if theirs.seq_no != mine.seq_no:
        return theirs.seq_no < mine.seq_no
    return (
        mine.server_id is not None
        and theirs.server_id is not None
        and mine.server_id != theirs.server_id
    )


def _gtid_text(domain: int, last: _Last) -> str:
    if last.server_id is None:
        return f"{domain}-?-{last.seq_no}"
    return f"{domain}-{last.server_id}-{last.seq_no}"


def gtid_kind_of(snapshot: InstanceSnapshot) -> GtidKind | None:
    """The GTID implementation of a server, from its flavor or, failing that, its GTID state."""
    if snapshot.flavor is Flavor.MARIADB:
        return GtidKind.MARIADB
    if snapshot.flavor in (Flavor.MYSQL, Flavor.PERCONA):
        return GtidKind.MYSQL
    if snapshot.gtid_binlog_pos or snapshot.gtid_current_pos or snapshot.gtid_slave_pos:
        return GtidKind.MARIADB
    if snapshot.gtid_executed:
        return GtidKind.MYSQL
    return None


@dataclass(frozen=True, slots=True)
class ServerPositions:
    """The ``executed``, ``eventual`` and ``binlog`` positions of one server (module docstring);
    each ``None`` when unknown or unparsable."""

    kind: GtidKind | None
    executed: Position | None
    eventual: Position | None
    binlog: Position | None
    replicated: MariaPosition | None = None
    """MariaDB: what came through replication (``gtid_slave_pos`` plus the received position),
    which tells a replica's legitimate transactions from its errant ones."""

    @classmethod
    def of(cls, snapshot: InstanceSnapshot, channel: ReplicationChannel | None) -> ServerPositions:
        kind = gtid_kind_of(snapshot)
        if kind is GtidKind.MARIADB:
            return _maria_positions(snapshot, channel)
        if kind is GtidKind.MYSQL:
            return _mysql_positions(snapshot, channel)
        return cls(None, None, None, None)

    @property
    def must_catch_up(self) -> bool:
        """Whether it has received transactions it has not applied yet."""
        if self.executed is None or self.eventual is None:
            return False
        return self.executed.contains(self.eventual) is False


def _maria(text: str) -> MariaPosition | None:
    if not text.strip():
        return None
    try:
        return MariaPosition.of(MariaGtidPosition.parse(text))
    except InvalidGtid:
        return None


def _maria_positions(
    snapshot: InstanceSnapshot, channel: ReplicationChannel | None
) -> ServerPositions:
    binlog = _maria(snapshot.gtid_binlog_pos)
    executed = _maria(snapshot.gtid_current_pos)
    if executed is None:
        slave = _maria(snapshot.gtid_slave_pos)
        if binlog is not None and slave is not None:
            executed = binlog.merged_with(slave)
        else:
            executed = binlog or slave
    received = _maria(channel.gtid_io_pos) if channel is not None else None
    eventual = _merged(executed, received)
    replicated = _merged(_maria(snapshot.gtid_slave_pos), received)
    return ServerPositions(GtidKind.MARIADB, executed, eventual, binlog or executed, replicated)


def _merged(first: MariaPosition | None, second: MariaPosition | None) -> MariaPosition | None:
    if first is None or second is None:
        return first or second
    return first.merged_with(second)


def _mysql(text: str) -> MySQLPosition | None:
    if not text.strip():
        return None
    try:
        return MySQLPosition(GtidSet.parse(text))
    except InvalidGtid:
        return None


def _mysql_positions(
    snapshot: InstanceSnapshot, channel: ReplicationChannel | None
) -> ServerPositions:
    executed = _mysql(snapshot.gtid_executed)
    if executed is None and channel is not None:
        executed = _mysql(channel.executed_gtid_set)
    eventual = executed
    received = _mysql(channel.retrieved_gtid_set) if channel is not None else None
    if received is not None:
        eventual = received if eventual is None else eventual.merged_with(received)
    return ServerPositions(GtidKind.MYSQL, executed, eventual, executed)
