"""orchestrator's small JSON values: InstanceKey, BinlogCoordinates, sql.NullInt64, Go strings."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Coordinates

__all__ = [
    "LogType",
    "binlog_coordinates_json",
    "go_quote_ascii",
    "instance_key_json",
    "instance_keys_json",
    "null_int64",
]


class LogType(IntEnum):
    """``BinlogCoordinates.Type``: which log the coordinates point into."""

    BINARY_LOG = 0
    RELAY_LOG = 1


def instance_key_json(key: InstanceKey | None) -> dict[str, Any]:
    """``{"Hostname", "Port"}``; no key (a master's ``MasterKey``) is ``{"", 0}`` as in Go.

    IPv6 hosts are written bare (``::1``), as orchestrator stores them.
    """
    if key is None:
        return {"Hostname": "", "Port": 0}
    return {"Hostname": key.host, "Port": key.port}


def instance_keys_json(keys: Iterable[InstanceKey]) -> list[dict[str, Any]]:
    """An ``InstanceKeyMap``: an array of InstanceKey, sorted by host then port."""
    return [instance_key_json(key) for key in sorted(set(keys))]


def binlog_coordinates_json(
    coordinates: Coordinates | BinlogCoordinates | None,
    log_type: LogType = LogType.BINARY_LOG,
) -> dict[str, Any]:
    """``{"LogFile", "LogPos", "Type"}``; no coordinates are ``{"", 0, type}``."""
    if coordinates is None:
        return {"LogFile": "", "LogPos": 0, "Type": int(log_type)}
    return {
        "LogFile": coordinates.file,
        "LogPos": coordinates.position,
        "Type": int(log_type),
    }


def null_int64(value: int | None) -> dict[str, Any]:
    """Go's ``sql.NullInt64``: ``{"Int64": n, "Valid": true}``, or ``{"Int64": 0, "Valid": false}``
    for NULL."""
    if value is None:
        return {"Int64": 0, "Valid": False}
    return {"Int64": value, "Valid": True}


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote_ascii(text: str) -> str:
    """Go's ``strconv.QuoteToASCII``, which orchestrator applies to ``Last_SQL_Error`` and
    ``Last_IO_Error`` before storing them (an empty error stays ``""``, not ``'""'``)."""
    if not text:
        return ""
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            parts.append(_GO_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            parts.append(f"\\x{code:02x}")
        elif code < 0x80:
            parts.append(char)
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)
