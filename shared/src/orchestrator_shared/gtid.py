"""GTIDs of MariaDB and MySQL, as immutable values with the algebra failover needs.

The two servers name transactions differently, so they get different types.

MariaDB: ``MariaGtid`` and ``MariaGtidPosition``
    A MariaDB GTID is ``domain-server-seq`` (``0-101-2347``): the replication domain, the
    ``server_id`` of the server that committed the transaction, and a sequence number that grows
    within the domain. A *position* (``@@gtid_binlog_pos``, ``@@gtid_slave_pos``,
    ``@@gtid_current_pos``) holds the last GTID of each domain, at most one per domain, written
    ``0-101-2347,1-102-5``. Two positions are compared domain by domain on ``seq_no`` (a domain
    missing on one side counts as ``seq_no`` 0); the outcome is a ``GtidRelation``:

    - ``EQUAL``: every domain at the same ``seq_no``;
    - ``AHEAD`` / ``BEHIND``: some domains ahead (behind) and none the other way;
    - ``DIVERGED``: some ahead *and* some behind, or one domain at the same ``seq_no`` from two
      different ``server_id`` values (two different transactions under one number).

MySQL: ``GtidSet``
    A MySQL GTID is ``uuid:n`` (or, since MySQL 8.3/8.4, tagged ``uuid:tag:n``); a server reports
    *sets* of them (``@@gtid_executed``, ``@@gtid_purged``) as closed intervals per source,
    ``3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11,8a94f357-...:1-3``. A ``GtidSet`` keys its
    intervals by ``(uuid, tag)``, with tag ``''`` for untagged GTIDs, and supports union,
    difference, intersection and containment. It prints like MySQL does: uuids lowercased and
    sorted, each once, untagged intervals first, then each tag (lowercased, sorted) followed by
    its intervals (``uuid:1-5:tag_a:1-3``); adjacent intervals merged; ``7`` rather than ``7-7``.

Text that is neither raises ``InvalidGtid`` with the offending text quoted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self, TypeAlias

from orchestrator_shared.errors import InvalidGtid

__all__ = [
    "GtidInterval",
    "GtidRelation",
    "GtidSet",
    "GtidSetIntervals",
    "GtidSource",
    "MariaGtid",
    "MariaGtidPosition",
]

_MAX_UINT32 = 2**32 - 1
_MAX_UINT64 = 2**64 - 1
_MAX_GNO = 2**63 - 1
"""The largest MySQL transaction number (``GNO``)."""

_MARIA_GTID = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TAG = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_INTERVAL = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?")

GtidInterval: TypeAlias = tuple[int, int]
"""A closed interval ``(start, end)`` of MySQL transaction numbers, ``1 <= start <= end``."""

GtidSource: TypeAlias = tuple[str, str]
"""The ``(uuid, tag)`` a MySQL GTID belongs to; ``tag`` is ``''`` for untagged GTIDs."""

GtidSetIntervals: TypeAlias = (
    Mapping[str, Iterable[GtidInterval]]
    | Mapping[GtidSource, Iterable[GtidInterval]]
    | Mapping[str | GtidSource, Iterable[GtidInterval]]
)
"""What ``GtidSet(...)`` is built from: uuid (untagged) or ``(uuid, tag)`` -> intervals."""


class _Problem(ValueError):
    """Internal: what is wrong, without the quoted input (the caller adds that)."""


class GtidRelation(enum.Enum):
    """How one GTID position relates to another (see the module docstring)."""

    EQUAL = "equal"
    AHEAD = "ahead"
    BEHIND = "behind"
    DIVERGED = "diverged"


# --------------------------------------------------------------------------------------------
# MariaDB


@dataclass(frozen=True, slots=True)
class MariaGtid:
    """One MariaDB GTID, ``domain_id-server_id-seq_no``."""

    domain_id: int
    server_id: int
    seq_no: int

    def __post_init__(self) -> None:
        try:
            _check_uint("domain_id", self.domain_id, _MAX_UINT32)
            _check_uint("server_id", self.server_id, _MAX_UINT32)
            _check_uint("seq_no", self.seq_no, _MAX_UINT64)
        except _Problem as problem:
            shown = f"{self.domain_id}-{self.server_id}-{self.seq_no}"
            raise InvalidGtid(f"invalid MariaDB GTID {shown!r}: {problem}") from None

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``domain-server-seq``, e.g. ``0-101-2347``; surrounding whitespace is ignored."""
        try:
            numbers = _parse_maria_numbers(text.strip())
        except _Problem as problem:
            raise InvalidGtid(f"invalid MariaDB GTID {text!r}: {problem}") from None
        return cls(*numbers)

    def __str__(self) -> str:
        return f"{self.domain_id}-{self.server_id}-{self.seq_no}"


class MariaGtidPosition(Mapping[int, MariaGtid]):
    """An immutable MariaDB GTID position: domain id -> the last ``MariaGtid`` of that domain.

    Iterates domains in ascending order. Equal positions hash equal; a position never equals a
    plain ``dict``.
    """

    __slots__ = ("_by_domain",)

    _by_domain: dict[int, MariaGtid]

    def __init__(self, gtids: Iterable[MariaGtid] = ()) -> None:
        by_domain: dict[int, MariaGtid] = {}
        for gtid in gtids:
            if gtid.domain_id in by_domain:
                raise InvalidGtid(
                    f"invalid MariaDB GTID position: domain {gtid.domain_id} appears twice "
                    f"({by_domain[gtid.domain_id]} and {gtid})"
                )
            by_domain[gtid.domain_id] = gtid
        self._by_domain = dict(sorted(by_domain.items()))

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``0-1-100,1-2-5`` as MariaDB prints it; the empty string is the empty position.

        Whitespace and newlines around the commas are ignored.
        """
        if not text.strip():
            return cls()
        gtids: list[MariaGtid] = []
        seen: dict[int, str] = {}
        for part in text.split(","):
            piece = part.strip()
            try:
                if not piece:
                    raise _Problem("empty GTID between commas")
                numbers = _parse_maria_numbers(piece)
                if numbers[0] in seen:
                    raise _Problem(
                        f"domain {numbers[0]} appears twice ({seen[numbers[0]]}, {piece})"
                    )
            except _Problem as problem:
                raise InvalidGtid(f"invalid MariaDB GTID position {text!r}: {problem}") from None
            seen[numbers[0]] = piece
            gtids.append(MariaGtid(*numbers))
        return cls(gtids)

    def __getitem__(self, domain_id: int) -> MariaGtid:
        return self._by_domain[domain_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_domain)

    def __len__(self) -> int:
        return len(self._by_domain)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MariaGtidPosition):
            return NotImplemented
        return self._by_domain == other._by_domain

    def __hash__(self) -> int:
        return hash(tuple(self._by_domain.values()))

    def __str__(self) -> str:
        return ",".join(str(gtid) for gtid in self._by_domain.values())

    def __repr__(self) -> str:
        return f"MariaGtidPosition({str(self)!r})"

    @property
    def domains(self) -> frozenset[int]:
        """The domain ids present in this position."""
        return frozenset(self._by_domain)

    def seq_no(self, domain_id: int) -> int:
        """The sequence number reached in ``domain_id``; 0 when the domain is absent."""
        gtid = self._by_domain.get(domain_id)
        return 0 if gtid is None else gtid.seq_no

    def compare(self, other: MariaGtidPosition) -> GtidRelation:
        """How this position relates to ``other`` (see the module docstring)."""
        ahead = behind = False
        for domain_id in self.domains | other.domains:
            mine, theirs = self.seq_no(domain_id), other.seq_no(domain_id)
            if mine > theirs:
                ahead = True
            elif mine < theirs:
                behind = True
            elif self._conflicts(other, domain_id):
                return GtidRelation.DIVERGED
        if ahead and behind:
            return GtidRelation.DIVERGED
        if ahead:
            return GtidRelation.AHEAD
        if behind:
            return GtidRelation.BEHIND
        return GtidRelation.EQUAL

    def contains(self, other: MariaGtidPosition) -> bool:
        """Whether this position has everything ``other`` has: ``AHEAD`` or ``EQUAL``."""
        return self.compare(other) in (GtidRelation.AHEAD, GtidRelation.EQUAL)

    def domains_ahead_of(self, other: MariaGtidPosition) -> set[int]:
        """The domains where this position has a higher ``seq_no`` than ``other``."""
        return {
            domain_id
            for domain_id in self._by_domain
            if self.seq_no(domain_id) > other.seq_no(domain_id)
        }

    def merged_with(self, other: MariaGtidPosition) -> MariaGtidPosition:
        """Per domain, the GTID with the higher ``seq_no``; on a tie this position's GTID."""
        merged = dict(self._by_domain)
        for domain_id, gtid in other._by_domain.items():
            if gtid.seq_no > self.seq_no(domain_id) or domain_id not in merged:
                merged[domain_id] = gtid
        return MariaGtidPosition(merged.values())

    def _conflicts(self, other: MariaGtidPosition, domain_id: int) -> bool:
        mine, theirs = self._by_domain.get(domain_id), other._by_domain.get(domain_id)
        return (
            mine is not None
            and theirs is not None
            and mine.seq_no > 0
            and mine.server_id != theirs.server_id
        )


def _parse_maria_numbers(text: str) -> tuple[int, int, int]:
    match = _MARIA_GTID.fullmatch(text)
    if match is None:
        raise _Problem(f"{text!r} is not domain-server-seq")
    domain_id, server_id, seq_no = (_bounded_int(group) for group in match.groups())
    _check_uint("domain_id", domain_id, _MAX_UINT32)
    _check_uint("server_id", server_id, _MAX_UINT32)
    _check_uint("seq_no", seq_no, _MAX_UINT64)
    return domain_id, server_id, seq_no


def _bounded_int(digits: str) -> int:
    # int() refuses very long digit strings with a plain ValueError; every number here fits in
    # 20 digits.
    if len(digits.lstrip("0")) > 20:
        raise _Problem(f"number {digits!r} is out of range")
    return int(digits)


def _check_uint(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise _Problem(f"{name} must be 0..{maximum}")


# --------------------------------------------------------------------------------------------
# MySQL


class GtidSet:
    """An immutable set of MySQL GTIDs: ``(uuid, tag)`` -> sorted, merged closed intervals."""

    __slots__ = ("_intervals",)

    _intervals: dict[GtidSource, tuple[GtidInterval, ...]]

    def __init__(
        self,
        intervals: GtidSetIntervals | None = None,
    ) -> None:
        """Build from ``{uuid or (uuid, tag): [(start, end), ...]}``; intervals may overlap."""
        collected: dict[GtidSource, list[GtidInterval]] = {}
        items: Iterable[tuple[str | GtidSource, Iterable[GtidInterval]]] = (
            intervals.items() if intervals is not None else ()
        )
        for key, ranges in items:
            uuid, tag = (key, "") if isinstance(key, str) else key
            try:
                source = (_normalize_uuid(uuid), _normalize_tag(tag))
                checked = [_check_interval(interval) for interval in ranges]
            except _Problem as problem:
                raise InvalidGtid(f"invalid GTID set for {key!r}: {problem}") from None
            collected.setdefault(source, []).extend(checked)
        self._intervals = _normalized(collected)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse MySQL's text form, e.g. ``uuid:1-5:7,\\nuuid2:tag:1-3``; ``''`` is empty.

        Whitespace (including the newlines MySQL prints after commas) is ignored, as are empty
        entries between commas, as MySQL does.
        """
        collected: dict[GtidSource, list[GtidInterval]] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            try:
                for source, interval in _parse_uuid_set(part):
                    collected.setdefault(source, []).append(interval)
            except _Problem as problem:
                raise InvalidGtid(f"invalid GTID set {text!r}: {problem}") from None
        result = cls.__new__(cls)
        result._intervals = _normalized(collected)
        return result

    @property
    def is_empty(self) -> bool:
        """Whether the set holds no GTID at all."""
        return not self._intervals

    @property
    def sources(self) -> tuple[GtidSource, ...]:
        """The ``(uuid, tag)`` pairs present, sorted."""
        return tuple(self._intervals)

    @property
    def transaction_count(self) -> int:
        """The number of GTIDs in the set (``len()`` as an unbounded int)."""
        return sum(end - start + 1 for ranges in self._intervals.values() for start, end in ranges)

    def intervals(self, uuid: str, *, tag: str = "") -> tuple[GtidInterval, ...]:
        """The intervals of ``uuid`` (and ``tag``); ``()`` when the set has none."""
        try:
            source = (_normalize_uuid(uuid), _normalize_tag(tag))
        except _Problem as problem:
            raise InvalidGtid(f"invalid GTID source {uuid!r}: {problem}") from None
        return self._intervals.get(source, ())

    def union(self, other: GtidSet) -> GtidSet:
        """Every GTID in either set."""
        collected: dict[GtidSource, list[GtidInterval]] = {
            source: list(ranges) for source, ranges in self._intervals.items()
        }
        for source, ranges in other._intervals.items():
            collected.setdefault(source, []).extend(ranges)
        return _from_normalized(_normalized(collected))

    def subtract(self, other: GtidSet) -> GtidSet:
        """The GTIDs of this set that are not in ``other``."""
        result: dict[GtidSource, tuple[GtidInterval, ...]] = {}
        for source, ranges in self._intervals.items():
            remaining = _subtract(ranges, other._intervals.get(source, ()))
            if remaining:
                result[source] = remaining
        return _from_normalized(result)

    def intersection(self, other: GtidSet) -> GtidSet:
        """The GTIDs in both sets."""
        result: dict[GtidSource, tuple[GtidInterval, ...]] = {}
        for source, ranges in self._intervals.items():
            common = _intersect(ranges, other._intervals.get(source, ()))
            if common:
                result[source] = common
        return _from_normalized(result)

    def contains(self, other: GtidSet) -> bool:
        """Whether every GTID of ``other`` is in this set (superset, not necessarily strict)."""
        return other.subtract(self).is_empty

    def __or__(self, other: GtidSet) -> GtidSet:
        return self.union(other)

    def __sub__(self, other: GtidSet) -> GtidSet:
        return self.subtract(other)

    def __and__(self, other: GtidSet) -> GtidSet:
        return self.intersection(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GtidSet):
            return NotImplemented
        return self._intervals == other._intervals

    def __hash__(self) -> int:
        return hash(tuple(self._intervals.items()))

    def __len__(self) -> int:
        return self.transaction_count

    def __bool__(self) -> bool:
        return not self.is_empty

    def __str__(self) -> str:
        parts: list[str] = []
        current_uuid = ""
        for (uuid, tag), ranges in self._intervals.items():
            if uuid != current_uuid:
                parts.append(("," if parts else "") + uuid)
                current_uuid = uuid
            if tag:
                parts.append(f":{tag}")
            parts.extend(
                f":{start}" if start == end else f":{start}-{end}" for start, end in ranges
            )
        return "".join(parts)

    def __repr__(self) -> str:
        return f"GtidSet({str(self)!r})"


def _from_normalized(intervals: dict[GtidSource, tuple[GtidInterval, ...]]) -> GtidSet:
    result = GtidSet.__new__(GtidSet)
    result._intervals = dict(sorted(intervals.items()))
    return result


def _normalized(
    collected: Mapping[GtidSource, list[GtidInterval]],
) -> dict[GtidSource, tuple[GtidInterval, ...]]:
    return {source: _merge(ranges) for source, ranges in sorted(collected.items()) if ranges}


def _merge(ranges: Iterable[GtidInterval]) -> tuple[GtidInterval, ...]:
    merged: list[GtidInterval] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def _subtract(
    ranges: tuple[GtidInterval, ...], removed: tuple[GtidInterval, ...]
) -> tuple[GtidInterval, ...]:
    result: list[GtidInterval] = []
    first = 0
    for start, end in ranges:
        while first < len(removed) and removed[first][1] < start:
            first += 1
        cursor = start
        index = first
        while index < len(removed) and removed[index][0] <= end and cursor <= end:
            removed_start, removed_end = removed[index]
            if removed_start > cursor:
                result.append((cursor, removed_start - 1))
            cursor = max(cursor, removed_end + 1)
            index += 1
        if cursor <= end:
            result.append((cursor, end))
    return tuple(result)


def _intersect(
    left: tuple[GtidInterval, ...], right: tuple[GtidInterval, ...]
) -> tuple[GtidInterval, ...]:
    result: list[GtidInterval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start <= end:
            result.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return tuple(result)


def _parse_uuid_set(text: str) -> Iterator[tuple[GtidSource, GtidInterval]]:
    """The ``(source, interval)`` pairs of one ``uuid[:tag]:interval[:interval...]`` entry."""
    pieces = [piece.strip() for piece in text.split(":")]
    uuid = _normalize_uuid(pieces[0])
    if len(pieces) == 1:
        raise _Problem(f"{text.strip()!r} has no transaction numbers after the uuid")
    tag = ""
    awaiting_interval = False
    for piece in pieces[1:]:
        match = _INTERVAL.fullmatch(piece)
        if match is not None:
            start_digits, end_digits = match.groups()
            start = _bounded_int(start_digits)
            end = start if end_digits is None else _bounded_int(end_digits)
            yield (uuid, tag), _check_interval((start, end))
            awaiting_interval = False
            continue
        if awaiting_interval:
            raise _Problem(f"tag {tag!r} of {uuid} has no transaction numbers")
        if not piece:
            raise _Problem(f"empty field after {uuid}")
        tag = _normalize_tag(piece)
        awaiting_interval = True
    if awaiting_interval:
        raise _Problem(f"tag {tag!r} of {uuid} has no transaction numbers")


def _normalize_uuid(uuid: object) -> str:
    if not isinstance(uuid, str):
        raise _Problem(f"uuid must be a str, not {type(uuid).__name__}")
    lowered = uuid.strip().lower()
    if not _UUID.fullmatch(lowered):
        raise _Problem(f"{uuid!r} is not a uuid")
    return lowered


def _normalize_tag(tag: object) -> str:
    if not isinstance(tag, str):
        raise _Problem(f"tag must be a str, not {type(tag).__name__}")
    lowered = tag.lower()
    if lowered and not (tag.isascii() and _TAG.fullmatch(lowered)):
        raise _Problem(
            f"{tag!r} is neither an interval nor a tag (a letter or '_', then up to 31 "
            "letters, digits or '_')"
        )
    return lowered


def _check_interval(interval: object) -> GtidInterval:
    if not (isinstance(interval, tuple) and len(interval) == 2):
        raise _Problem(f"interval {interval!r} is not a (start, end) pair")
    start, end = interval
    for number in (start, end):
        if isinstance(number, bool) or not isinstance(number, int):
            raise _Problem(f"interval {interval!r} must hold ints")
        if not 1 <= number <= _MAX_GNO:
            raise _Problem(f"transaction number {number} is out of 1..{_MAX_GNO}")
    if start > end:
        raise _Problem(f"interval {start}-{end} has start > end")
    return start, end
