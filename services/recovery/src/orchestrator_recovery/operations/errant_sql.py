"""Errant GTIDs on MariaDB: the statements of :mod:`orchestrator_recovery.operations.errant`
beside pure decisions, which unit tests feed directly (nothing here touches a server).

A GTID of the instance's binary log is errant when its master has neither it nor anything later
in its domain (the master's ``gtid_binlog_pos`` does not cover it) and it was not written by a
server up the chain (its ``server_id`` is not one of theirs): the rule of
:mod:`orchestrator_shared.analysis.errant`. The analysis looks at the last GTID of each domain
only; the operations read the binary log itself, so they find every errant transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator_recovery.sql import int_value, quote, text_value
from orchestrator_shared.errors import InvalidGtid
from orchestrator_shared.gtid import MariaGtid, MariaGtidPosition

Row = Mapping[str, Any]

RESET_MASTER = "RESET MASTER"
GTID_SQL = (
    "SELECT @@global.version AS version, @@global.server_id AS server_id, "
    "@@global.read_only AS read_only, @@global.log_bin AS log_bin, "
    "@@global.gtid_binlog_pos AS binlog, @@global.gtid_slave_pos AS applied, "
    "@@global.gtid_binlog_state AS state, @@global.gtid_strict_mode AS strict"
)
# Binlogged on the cluster master under an errant GTID, it changes nothing that matters
# anywhere (it empties the host cache, which is refilled on the next connection) and needs only
# the RELOAD privilege the topology user has. MariaDB logs FLUSH statements unless LOCAL.
PLACEHOLDER_STATEMENT = "FLUSH HOSTS"


def list_position(gtids: Iterable[MariaGtid]) -> MariaGtidPosition:
    """A binlog state (several GTIDs per domain) as a position: the highest of each domain."""
    last: dict[int, MariaGtid] = {}
    for gtid in gtids:
        if gtid.domain_id not in last or gtid.seq_no > last[gtid.domain_id].seq_no:
            last[gtid.domain_id] = gtid
    return MariaGtidPosition(last.values())


# --- errant GTIDs -----------------------------------------------------------------------------

_GTID_EVENT = re.compile(r"\bGTID (\d+-\d+-\d+)")


@dataclass(frozen=True, slots=True)
class GtidState:
    """One server's GTID variables (MariaDB)."""

    version: str
    server_id: int
    read_only: bool
    log_bin: bool
    binlog: MariaGtidPosition
    applied: MariaGtidPosition
    state: tuple[MariaGtid, ...]  # gtid_binlog_state: last GTID per domain and server id
    strict: bool

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.version.lower()


def _flag(value: Any) -> bool:
    return text_value(value).strip().upper() in {"1", "ON", "YES", "TRUE"}


def parse_gtid_list(text: str) -> tuple[MariaGtid, ...]:
    """``0-1-10,0-3-12`` (``gtid_binlog_state``) or ``[0-1-10,0-3-12]`` (a Gtid_list event):
    several GTIDs per domain are allowed, unlike a position."""
    inner = text.strip().removeprefix("[").removesuffix("]").replace("\n", "")
    return tuple(MariaGtid.parse(part) for part in inner.split(",") if part.strip())


def parse_gtid_state(rows: Iterable[Row]) -> GtidState:
    """:data:`GTID_SQL`'s row; InvalidGtid on a position MariaDB would not print."""
    row = next(iter(rows), None)
    if row is None:
        raise InvalidGtid("no answer to the GTID variables query")
    return GtidState(
        version=text_value(row.get("version")),
        server_id=int_value(row.get("server_id")),
        read_only=_flag(row.get("read_only")),
        log_bin=_flag(row.get("log_bin")),
        binlog=MariaGtidPosition.parse(text_value(row.get("binlog")).replace("\n", "")),
        applied=MariaGtidPosition.parse(text_value(row.get("applied")).replace("\n", "")),
        state=parse_gtid_list(text_value(row.get("state"))),
        strict=_flag(row.get("strict")),
    )


def is_errant(gtid: MariaGtid, master: MariaGtidPosition, upstream: frozenset[int]) -> bool:
    """Not written up the chain, and the master has neither it nor anything later in its
    domain (same rule as the analysis' ``mariadb_errant``)."""
    if gtid.server_id in upstream:
        return False
    theirs = master.get(gtid.domain_id)
    if theirs is None:
        return True
    if theirs.seq_no != gtid.seq_no:
        return theirs.seq_no < gtid.seq_no
    return theirs.server_id != gtid.server_id


def errant_position(
    binlog: MariaGtidPosition, master: MariaGtidPosition, upstream: frozenset[int]
) -> MariaGtidPosition:
    """The errant last GTIDs of ``binlog`` (empty: no errant transaction), as the analysis
    reports them (``GtidErrant``)."""
    return MariaGtidPosition(gtid for gtid in binlog.values() if is_errant(gtid, master, upstream))


def gtid_of_event(row: Row) -> MariaGtid | None:
    """The GTID of a ``SHOW BINLOG EVENTS`` row of type ``Gtid`` (``BEGIN GTID 0-1-8``)."""
    if text_value(row.get("Event_type")) != "Gtid":
        return None
    match = _GTID_EVENT.search(text_value(row.get("Info")))
    return MariaGtid.parse(match.group(1)) if match else None


def gtid_list_of(rows: Iterable[Row]) -> tuple[MariaGtid, ...] | None:
    """The ``Gtid_list`` event at a binary log's start: the binlog state before the file."""
    for row in rows:
        if text_value(row.get("Event_type")) == "Gtid_list":
            return parse_gtid_list(text_value(row.get("Info")))
    return None


def binlog_events_sql(name: str, *, limit: int, start: int | None = None) -> str:
    """``SHOW BINLOG EVENTS`` always with a ``LIMIT``: a binary log can hold millions of
    events, read a page at a time (``FROM`` the position where the previous page ended)."""
    sql = f"SHOW BINLOG EVENTS IN {quote(name)}"
    if start is not None:
        sql = f"{sql} FROM {int(start)}"
    return f"{sql} LIMIT {int(limit)}"


def next_page_start(rows: Sequence[Row]) -> int | None:
    """Where the page after ``rows`` starts: the last event's ``End_log_pos``."""
    return int_value(rows[-1].get("End_log_pos")) if rows else None


def state_without(
    state: Iterable[MariaGtid],
    master: MariaGtidPosition,
    upstream: frozenset[int],
    applied: MariaGtidPosition,
) -> str:
    """``gtid_binlog_state`` for ``SET GLOBAL gtid_binlog_state`` right after ``RESET MASTER``
    (MariaDB's gtid_purged): the former state without its errant GTIDs, then, in each domain
    where the replica applied more than that state holds, what it applied (listed last, so it
    is the domain's position: a replica later placed below this instance finds it)."""
    kept = [gtid for gtid in state if not is_errant(gtid, master, upstream)]
    for gtid in applied.values():
        last = max((k.seq_no for k in kept if k.domain_id == gtid.domain_id), default=-1)
        if gtid.seq_no > last:
            kept = [
                k for k in kept if (k.domain_id, k.server_id) != (gtid.domain_id, gtid.server_id)
            ]
            kept.append(gtid)
    return ",".join(str(gtid) for gtid in kept)


def inject_refusal(errant: Iterable[MariaGtid], master: GtidState) -> str | None:
    """Why the cluster master cannot take these GTIDs, or None.

    Under ``gtid_strict_mode`` (and for the replicas to keep order) each injected GTID must be
    beyond the master's position in its domain: an errant GTID that *diverged* (the master
    already has its sequence number, from another server) cannot be given to the master.
    """
    if not master.is_mariadb:
        return "the cluster master is not MariaDB"
    if master.read_only:
        return "the cluster master is read-only (no writeable master to inject on)"
    if not master.log_bin:
        return "the cluster master has no binary log"
    for gtid in errant:
        if master.binlog.seq_no(gtid.domain_id) >= gtid.seq_no:
            theirs = master.binlog.get(gtid.domain_id)
            return (
                f"{gtid} diverged from the cluster master (it is at {theirs} in domain "
                f"{gtid.domain_id}): a transaction cannot be injected under that number"
            )
    return None


def would_break(injected: Iterable[MariaGtid], member: GtidState) -> str | None:
    """Why a replica of the cluster would stop if the master logged ``injected``, or None:
    under ``gtid_strict_mode`` it refuses a GTID whose sequence number is not beyond its own
    binary log's in that domain (it has errant transactions of its own there)."""
    lowest: dict[int, MariaGtid] = {}
    for gtid in injected:
        if gtid.domain_id not in lowest or gtid.seq_no < lowest[gtid.domain_id].seq_no:
            lowest[gtid.domain_id] = gtid
    for domain_id, gtid in sorted(lowest.items()):
        mine = member.binlog.get(domain_id)
        if mine is not None and mine.seq_no >= gtid.seq_no and member.strict:
            return (
                f"is at {mine} in domain {domain_id}: it would stop on the injected {gtid} "
                "(gtid_strict_mode); clear its own errant GTIDs first"
            )
    return None


def inject_sql(gtid: MariaGtid) -> tuple[str, ...]:
    """The session settings that make the master log its next transaction as ``gtid``, and
    that transaction. Own-server_id events are skipped by the replica that has them already
    (``replicate_same_server_id`` off), and the others apply a statement that changes nothing."""
    return (
        f"SET SESSION gtid_domain_id = {gtid.domain_id}, SESSION server_id = {gtid.server_id}, "
        f"SESSION gtid_seq_no = {gtid.seq_no}",
        PLACEHOLDER_STATEMENT,
    )


def not_logged(injected: Iterable[MariaGtid], state: Iterable[MariaGtid]) -> list[MariaGtid]:
    """The injected GTIDs the master's ``gtid_binlog_state`` does not show (its entry for the
    domain and server id is missing or lower): e.g. the session was lost between the SET and
    the statement, which the master then logged under a GTID of its own."""
    last = {(gtid.domain_id, gtid.server_id): gtid.seq_no for gtid in state}
    return [
        gtid for gtid in injected if last.get((gtid.domain_id, gtid.server_id), -1) < gtid.seq_no
    ]
