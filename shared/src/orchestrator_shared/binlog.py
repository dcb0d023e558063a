"""Binary log coordinates: a place in a server's binlog (or relay log), ``file:position``.

A server writes its binary log to numbered files, ``mysql-bin.000123``: a *base name* shared by
the whole log (its *family*) and a sequence number, zero-padded to at least six digits, that grows
by one at every rotation. A position is a byte offset in the file; the first event starts at
offset 4, after the magic header.

Ordering follows the log, not the text: coordinates sort by (base name, file number, position),
so ``mysql-bin.999999`` comes before ``mysql-bin.1000000``. Coordinates of different families
(``mysql-bin`` and ``relay-bin``, or two servers with different ``log_bin_basename``) still sort,
by base name, but that order means nothing; check ``same_log_family`` before reading an order
between them as "further along".

An empty ``file`` means "no coordinates": what a replica reports before it ever connected (with
position 0, or 4 on MariaDB after ``CHANGE MASTER``). ``BinlogCoordinates.EMPTY`` is
``('', 0)``; every empty value has ``is_empty``, prints as ``''`` and sorts before any file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Self

from orchestrator_shared.errors import InvalidBinlogCoordinates

__all__ = ["FIRST_EVENT_POSITION", "BinlogCoordinates"]

FIRST_EVENT_POSITION = 4
"""Offset of the first event in every binlog file (after the 4-byte magic header)."""

_MAX_POSITION = 2**64 - 1
_LOG_FILE = re.compile(r"([^\s:]+)\.([0-9]+)")


class _Problem(ValueError):
    """Internal: what is wrong, without the quoted input (the caller adds that)."""


@dataclass(frozen=True, slots=True, order=True)
class BinlogCoordinates:
    """A ``file`` such as ``mysql-bin.000123`` and a byte ``position`` in it."""

    file: str = field(compare=False)
    position: int = field(compare=False)
    # Equality, hashing and order all use this key; it is a function of (file, position) that
    # holds file, so equal keys mean equal coordinates.
    _order_key: tuple[str, int, int, str] = field(init=False, repr=False)

    EMPTY: ClassVar[BinlogCoordinates]

    def __post_init__(self) -> None:
        try:
            _check_position(self.position)
            if not isinstance(self.file, str):
                raise _Problem(f"file must be a str, not {type(self.file).__name__}")
            basename, number = _split_file(self.file) if self.file else ("", -1)
        except _Problem as problem:
            shown = f"{self.file}:{self.position}"
            raise InvalidBinlogCoordinates(
                f"invalid binlog coordinates {shown!r}: {problem}"
            ) from None
        object.__setattr__(self, "_order_key", (basename, number, self.position, self.file))

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``file:position``, e.g. ``mysql-bin.000123:456``; whitespace around is ignored."""
        stripped = text.strip()
        try:
            if not stripped:
                raise _Problem("empty")
            if ":" not in stripped:
                raise _Problem("missing ':position'")
            file, position_text = stripped.rsplit(":", 1)
            if not file:
                raise _Problem("empty file name")
            _split_file(file)
            position = _parse_position(position_text)
        except _Problem as problem:
            raise InvalidBinlogCoordinates(
                f"invalid binlog coordinates {text!r}: {problem}"
            ) from None
        return cls(file, position)

    def __str__(self) -> str:
        return f"{self.file}:{self.position}" if self.file else ""

    @property
    def is_empty(self) -> bool:
        """Whether the file is empty: "no coordinates" (see the module docstring)."""
        return not self.file

    @property
    def log_basename(self) -> str:
        """The family of the file: ``mysql-bin`` for ``mysql-bin.000123``; ``''`` when empty."""
        return self._order_key[0]

    @property
    def file_number(self) -> int:
        """The sequence number of the file: 123 for ``mysql-bin.000123``; -1 when empty."""
        return self._order_key[1]

    def same_log_family(self, other: BinlogCoordinates) -> bool:
        """Whether both name files of the same log, so that their order is meaningful."""
        return not self.is_empty and self.log_basename == other.log_basename

    def next_file(self) -> BinlogCoordinates:
        """The start of the following file: ``mysql-bin.000124:4`` after ``mysql-bin.000123``.

        The number keeps its zero padding width (and grows past it, as the server does).
        """
        if self.is_empty:
            raise InvalidBinlogCoordinates("empty binlog coordinates have no next file")
        basename, number = _split_file(self.file)
        width = len(self.file) - len(basename) - 1
        return BinlogCoordinates(f"{basename}.{number + 1:0{width}d}", FIRST_EVENT_POSITION)


def _split_file(file: str) -> tuple[str, int]:
    match = _LOG_FILE.fullmatch(file)
    if match is None:
        raise _Problem(f"file {file!r} is not basename.number (like mysql-bin.000123)")
    basename, digits = match.groups()
    if len(digits) > 20:
        raise _Problem(f"file number {digits!r} is too long")
    return basename, int(digits)


def _parse_position(text: str) -> int:
    if not text:
        raise _Problem("empty position")
    if not text.isascii() or not text.isdigit():
        raise _Problem(f"position {text!r} is not a number")
    if len(text.lstrip("0")) > 20:
        raise _Problem("position is out of range")
    position = int(text)
    _check_position(position)
    return position


def _check_position(position: object) -> None:
    if isinstance(position, bool) or not isinstance(position, int):
        raise _Problem(f"position must be an int, not {type(position).__name__}")
    if not 0 <= position <= _MAX_POSITION:
        raise _Problem(f"position must be 0..{_MAX_POSITION}")


BinlogCoordinates.EMPTY = BinlogCoordinates("", 0)
