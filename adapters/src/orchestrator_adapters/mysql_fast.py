"""A faster aiomysql connection for the probe's hot path.

Profiling discovery at 1,000 probes/s (docs/benchmarks.md) showed most of its CPU in aiomysql
reading replies in pure Python, and most of that in two places:

* **column definitions.** A probe's batch returns ~120 packets, ~75 of them column definitions
  (62 for ``SHOW ALL SLAVES STATUS`` alone, even on a master with no replication), and they are
  byte-for-byte the same on every probe. :class:`_CachedResult` parses each distinct set once and
  reuses the parsed fields, converters and cursor description (a small LRU shared by every
  connection, keyed by the raw bytes and the connection's decoding settings).
* **packet framing.** aiomysql awaits ``readexactly`` twice per packet even when the whole packet
  is already buffered. :meth:`FastConnection._read_packet` slices a complete packet straight out
  of the buffer and falls back to aiomysql's own code otherwise (large or split packets, an
  unexpected sequence number, a packet that has not fully arrived).

Both reach into aiomysql internals (``MySQLResult``, ``Connection._read_query_result``,
``_read_packet``, ``StreamReader._buffer``), so aiomysql is pinned to 0.3.x; the simulated-fleet
and sandbox integration tests exercise this path against real servers and catch a change.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any

import aiomysql
from aiomysql.connection import MySQLResult
from pymysql.connections import MAX_PACKET_LEN, TEXT_TYPES
from pymysql.constants import FIELD_TYPE
from pymysql.converters import through
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

from orchestrator_adapters.mysql_client import GuardedConnection, connect_guarded

_HEADER = struct.Struct("<HBB")
_CACHE_SIZE = 256

# (encoding, use_unicode, raw column-definition bytes) -> (fields, converters, description)
_Parsed = tuple[list[Any], list[tuple[str | None, Any]], tuple[Any, ...]]
_descriptions: OrderedDict[tuple[str, bool, bytes], _Parsed] = OrderedDict()


def _parse_descriptions(
    raw: list[bytes], *, encoding: str, use_unicode: bool, decoders: dict[int, Any]
) -> _Parsed:
    """What aiomysql's ``MySQLResult._get_descriptions`` computes, from raw packets."""
    fields: list[Any] = []
    converters: list[tuple[str | None, Any]] = []
    description = []
    for data in raw:
        field = FieldDescriptorPacket(data, encoding)
        fields.append(field)
        description.append(field.description())
        field_type = field.type_code
        column_encoding: str | None
        if not use_unicode:
            column_encoding = None
        elif field_type == FIELD_TYPE.JSON:
            column_encoding = encoding
        elif field_type in TEXT_TYPES:
            column_encoding = None if field.charsetnr == 63 else encoding
        else:
            column_encoding = "ascii"
        converter = decoders.get(field_type)
        converters.append((column_encoding, None if converter is through else converter))
    return fields, converters, tuple(description)


class _CachedResult(MySQLResult):  # type: ignore[misc]
    async def _get_descriptions(self) -> None:
        conn = self.connection
        raw = [(await conn._read_packet())._data for _ in range(self.field_count)]
        key = (conn.encoding, bool(conn.use_unicode), b"\x00".join(raw))
        parsed = _descriptions.get(key)
        if parsed is None:
            parsed = _parse_descriptions(
                raw, encoding=conn.encoding, use_unicode=conn.use_unicode, decoders=conn.decoders
            )
            _descriptions[key] = parsed
            if len(_descriptions) > _CACHE_SIZE:
                _descriptions.popitem(last=False)
        else:
            _descriptions.move_to_end(key)
        self.fields, self.converters, self.description = parsed
        eof_packet = await conn._read_packet()
        if not eof_packet.is_eof_packet():
            raise aiomysql.InternalError("protocol error: expected EOF after column definitions")


class FastConnection(GuardedConnection):
    """aiomysql's connection with cached column definitions and buffered packet reads (and
    the TLS and authentication rules of :class:`GuardedConnection`)."""

    async def _read_query_result(self, unbuffered: bool = False) -> None:
        if unbuffered:
            await super()._read_query_result(unbuffered=True)
            return
        self._result = None
        result = _CachedResult(self)
        await result.read()
        self._result = result
        self._affected_rows = result.affected_rows
        if result.server_status is not None:
            self.server_status = result.server_status

    async def _read_packet(self, packet_type: type[MysqlPacket] = MysqlPacket) -> MysqlPacket:
        reader = self._reader
        buffer = getattr(reader, "_buffer", None)
        if buffer is not None and len(buffer) >= 4:
            low, high, sequence = _HEADER.unpack_from(buffer)
            length = low + (high << 16)
            end = 4 + length
            expected: int = self._next_seq_id  # type: ignore[has-type]
            if length < MAX_PACKET_LEN and len(buffer) >= end and sequence == expected:
                data = bytes(buffer[4:end])
                del buffer[:end]
                reader._maybe_resume_transport()
                self._next_seq_id = (sequence + 1) % 256
                packet = packet_type(data, self._encoding)
                if packet.is_error_packet():
                    if self._result is not None and self._result.unbuffered_active is True:
                        self._result.unbuffered_active = False
                    packet.raise_for_error()
                return packet
        packet_read: MysqlPacket = await super()._read_packet(packet_type)
        return packet_read


async def connect(**kwargs: Any) -> FastConnection:
    """Like ``aiomysql.connect`` (same keyword arguments), returning a :class:`FastConnection`."""
    conn: FastConnection = await connect_guarded(FastConnection, **kwargs)
    return conn
