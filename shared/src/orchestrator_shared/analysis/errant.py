"""Errant GTIDs: transactions a replica holds that none of its masters ever had.

A replica with errant transactions cannot be promoted safely (its writes would be replayed on, or
missing from, everyone else) and a replica moved below it may fail. Lag is *not* errant: a
replica behind its master holds a subset of what the master has.

MySQL (``GtidSet``)
    errant = replica ``gtid_executed`` minus the union of its masters' ``gtid_executed``, then minus
    every transaction whose source uuid belongs to an upstream server (a master or one of its own
    masters, up the chain). ``gtid_purged`` needs no separate step: MySQL keeps the purged set
    inside ``gtid_executed``, so transactions the master executed and later purged are still
    subtracted. The upstream-uuid step removes transactions the master committed *after* its own
    snapshot was taken but before the replica's (the snapshots are not simultaneous), exactly as
    orchestrator redacts the master's uuid and its ancestry.

MariaDB (``MariaGtidPosition``)
    A position keeps only the last GTID of each domain, so errant means: in some domain the
    replica's own binlog position (``gtid_binlog_pos``, else ``gtid_current_pos``) is *ahead* of
    every master's position (higher ``seq_no``), or at the same ``seq_no`` with another
    ``server_id`` (two different transactions under one number: diverged). A GTID whose
    ``server_id`` is an upstream server's is never errant (it came down the chain after the
    master's snapshot). A replica *behind* in a domain is not errant, even if its last GTID there
    was written locally: positions alone cannot tell that from a demoted master that lags, so the
    verdict errs towards "not errant" (see ``docs/analysis.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import GtidSet, MariaGtid, MariaGtidPosition
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot


@dataclass(frozen=True, slots=True)
class ErrantGtids:
    """The errant transactions found on one replica, as text in the server's own notation."""

    gtids: str
    """A MySQL GTID set, or a MariaDB position holding the errant GTID of each domain."""
    reason: str
    """How they were found, in words."""


def mysql_errant(
    replica: InstanceSnapshot,
    masters: Sequence[InstanceSnapshot],
    *,
    upstream_uuids: Iterable[str] = (),
) -> ErrantGtids | None:
    """The replica's executed GTIDs that no master has and no upstream server wrote."""
    replica_text = replica.gtid_executed or _channel_executed(replica)
    master_texts = [master.gtid_executed for master in masters]
    if not replica_text or not master_texts or not all(master_texts):
        return None  # a master whose executed set is unknown: nothing can be judged
    try:
        executed = GtidSet.parse(replica_text)
        upstream = GtidSet()
        for text in master_texts:
            upstream = upstream | GtidSet.parse(text)
    except InvalidGtid:
        return None
    remaining = executed - upstream
    redacted = {uuid.lower() for uuid in upstream_uuids if uuid}
    errant_sources = {
        source: remaining.intervals(source[0], tag=source[1])
        for source in remaining.sources
        if source[0] not in redacted
    }
    if not errant_sources:
        return None
    errant = GtidSet(errant_sources)
    return ErrantGtids(
        gtids=str(errant),
        reason=f"gtid_executed has {errant} that its master(s) never executed",
    )


def mariadb_errant(
    replica: InstanceSnapshot,
    masters: Sequence[InstanceSnapshot],
    *,
    upstream_server_ids: Iterable[int] = (),
) -> ErrantGtids | None:
    """The domains where the replica's own position is ahead of, or diverged from, every master."""
    positions = [_maria_position(master) for master in masters]
    known = [position for position in positions if position is not None]
    mine = _maria_position(replica)
    if mine is None or not known or len(known) < len(positions):
        return None  # a master whose position is unknown: nothing can be judged
    upstream_ids = set(upstream_server_ids)
    errant: list[MariaGtid] = []
    for domain_id in mine:
        gtid = mine[domain_id]
        if gtid.server_id in upstream_ids:
            continue
        if not any(_covers(position, gtid) for position in known):
            errant.append(gtid)
    if not errant:
        return None
    text = str(MariaGtidPosition(errant))
    return ErrantGtids(
        gtids=text,
        reason=f"binlog position has {text}, ahead of or diverged from its master(s)",
    )


def find_errant(
    replica: InstanceSnapshot,
    masters: Sequence[InstanceSnapshot],
    *,
    upstream: Sequence[InstanceSnapshot] = (),
) -> ErrantGtids | None:
    """Errant GTIDs of ``replica`` against its direct ``masters``, by the replica's flavor.

    Pass *every* master the replica replicates from (all channels): transactions of a master
    left out would look errant. Nothing is reported when a master's GTID state is unknown.

    ``upstream`` is every server above the replica (its masters and theirs); the uuids and server
    ids of those, and of what the replica's channels report about their masters, are exempt.
    """
    chain = [*masters, *upstream]
    if replica.flavor is Flavor.MARIADB or replica.gtid_binlog_pos or replica.gtid_current_pos:
        ids = {server.server_id for server in chain if server.server_id}
        ids.update(channel.master_server_id for channel in replica.channels)
        ids.discard(0)
        return mariadb_errant(replica, masters, upstream_server_ids=ids)
    uuids = {server.server_uuid for server in chain}
    uuids.update(channel.master_uuid for channel in replica.channels)
    return mysql_errant(replica, masters, upstream_uuids=uuids)


def _covers(position: MariaGtidPosition, gtid: MariaGtid) -> bool:
    """Whether a master at ``position`` has (or has gone past) ``gtid`` in its domain."""
    theirs = position.get(gtid.domain_id)
    if theirs is None:
        return False
    if theirs.seq_no > gtid.seq_no:
        return True
    return theirs.seq_no == gtid.seq_no and theirs.server_id == gtid.server_id


def _maria_position(snapshot: InstanceSnapshot) -> MariaGtidPosition | None:
    text = snapshot.gtid_binlog_pos or snapshot.gtid_current_pos
    if not text:
        return None
    try:
        return MariaGtidPosition.parse(text)
    except InvalidGtid:
        return None


def _channel_executed(snapshot: InstanceSnapshot) -> str:
    channel = snapshot.primary_channel
    return channel.executed_gtid_set if channel is not None else ""
