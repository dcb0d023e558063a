"""A simulated fleet of MariaDB 10.11 servers that speaks the MySQL wire protocol.

Thousands of real ``mariadbd`` cannot run on one small machine; discovery only needs servers
that *answer* like them. This process listens on ``clusters * cluster_size`` loopback ports
(``base_port`` upwards) and answers each like one MariaDB 10.11 instance of a cluster of one
master and ``cluster_size - 1`` replicas::

    cluster c, member m  ->  port = base_port + c * cluster_size + m     (m = 0: the master)
                             server_id = port

Replicas replicate from their master with GTID (``Using_Gtid: Slave_Pos``, both threads
``Yes``, ``read_only=ON``); the master lists them in ``SHOW SLAVE HOSTS`` (Host 127.0.0.1, their
port) and as binlog dump threads in the processlist. GTID positions, binlog coordinates and
``Uptime`` move with time (``--trx-per-second`` per cluster), recomputed at most every
``--refresh-seconds``.

What it answers (everything else gets an ERR packet, as a real server would for bad SQL):

* the handshake: a protocol-41 greeting offering ``mysql_native_password``; any user and
  password are accepted; ``CLIENT_MULTI_STATEMENTS``/``MULTI_RESULTS`` are offered;
* ``COM_QUERY`` with one or several statements (a multi-statement batch is answered as
  consecutive result sets chained by ``SERVER_MORE_RESULTS_EXISTS``, stopping at the first
  statement that fails, exactly as MariaDB does): ``SHOW [GLOBAL] VARIABLES|STATUS`` with
  ``WHERE Variable_name IN (...)`` / ``LIKE``, ``SHOW MASTER STATUS`` (``SHOW BINLOG STATUS``),
  ``SHOW ALL SLAVES STATUS`` / ``SHOW SLAVE STATUS`` (and the ``REPLICA`` spellings),
  ``SHOW SLAVE HOSTS``, the binlog-dump-threads ``SELECT`` on ``information_schema.processlist``,
  ``SELECT 1``, ``SELECT @@var, ...``; ``SET``/``BEGIN``/``COMMIT``/``ROLLBACK`` get an OK packet;
* ``COM_PING``, ``COM_INIT_DB`` (OK), ``COM_QUIT``.

Column names, types, lengths and flags are the ones a real MariaDB 10.11.19 sends (recorded
from ``mariadbd`` with PyMySQL). Responses are built from pre-encoded column definitions and
cached per instance and statement batch until the dynamic values next change, so one probe
costs the simulator a dictionary lookup and a socket write most of the time.

Usage::

    python tests/harness/simfleet.py --base-port 30000 --clusters 1000 --cluster-size 5 \
        [--processes 2]

prints ``ready`` on stdout once every port listens, then serves until SIGTERM/SIGINT. With
``--processes K`` the clusters are split over K worker processes (each a child of this one,
killed with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

SERVER_VERSION = "10.11.19-MariaDB-0+deb12u1-log"
VERSION_COMMENT = "Debian 12"
LOOPBACK = "127.0.0.1"

# --- protocol constants ----------------------------------------------------------------------

COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_PING = 0x0E

SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_MORE_RESULTS_EXISTS = 0x0008

CLIENT_LONG_PASSWORD = 1
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_NO_SCHEMA = 1 << 4
CLIENT_ODBC = 1 << 6
CLIENT_LOCAL_FILES = 1 << 7
CLIENT_IGNORE_SPACE = 1 << 8
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_IGNORE_SIGPIPE = 1 << 12
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21

# What MariaDB 10.11 offers, minus compression, TLS and CLIENT_DEPRECATE_EOF (so every client
# reads classic EOF packets, which keeps one encoding per response).
SERVER_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_NO_SCHEMA
    | CLIENT_ODBC
    | CLIENT_LOCAL_FILES
    | CLIENT_IGNORE_SPACE
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_IGNORE_SIGPIPE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)
AUTH_PLUGIN = b"mysql_native_password"
UTF8MB4_GENERAL_CI = 45
BINARY_CHARSET = 63
MAX_PACKET = 0xFFFFFF

# Column types and flags as MariaDB sends them.
T_LONG, T_DOUBLE, T_LONGLONG, T_VAR_STRING = 3, 5, 8, 253
F_TEXT = 1  # NOT_NULL
F_NUM = 161  # NOT_NULL | UNSIGNED | BINARY
F_IS = 4097  # information_schema: NOT_NULL | NO_DEFAULT_VALUE


def lenenc_int(value: int) -> bytes:
    if value < 251:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def lenenc_str(value: bytes) -> bytes:
    return lenenc_int(len(value)) + value


def frame(payloads: Sequence[bytes], first_seq: int) -> bytes:
    """Packets on the wire: 3-byte length, 1-byte sequence id, payload."""
    parts: list[bytes] = []
    pack = struct.Struct("<I").pack
    seq = first_seq
    for payload in payloads:
        parts.append(pack(len(payload) | (seq << 24)))
        parts.append(payload)
        seq = (seq + 1) & 0xFF
    return b"".join(parts)


def ok_payload(status: int = SERVER_STATUS_AUTOCOMMIT) -> bytes:
    return b"\x00\x00\x00" + struct.pack("<HH", status, 0)


def eof_payload(status: int) -> bytes:
    return b"\xfe" + struct.pack("<HH", 0, status)


def err_payload(errno: int, sqlstate: str, message: str) -> bytes:
    return b"\xff" + struct.pack("<H", errno) + b"#" + sqlstate.encode() + message.encode()[:500]


# --- column definitions (recorded from MariaDB 10.11.19, utf8mb4 results) --------------------


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: int = T_VAR_STRING
    length: int = 80
    flags: int = F_TEXT
    decimals: int = 39
    table: str = ""
    org_name: str = ""
    schema: str = ""

    @property
    def is_text(self) -> bool:
        return self.type == T_VAR_STRING

    def payload(self, charset: int) -> bytes:
        """Protocol::ColumnDefinition41."""
        return b"".join(
            (
                lenenc_str(b"def"),
                lenenc_str(self.schema.encode()),
                lenenc_str(self.table.encode()),
                lenenc_str(self.table.encode()),
                lenenc_str(self.name.encode()),
                lenenc_str(self.org_name.encode()),
                b"\x0c",
                struct.pack(
                    "<HIBHB",
                    charset if self.is_text else BINARY_CHARSET,
                    self.length,
                    self.type,
                    self.flags,
                    self.decimals,
                ),
                b"\x00\x00",
            )
        )


class ColumnSet:
    """The columns of one kind of result; their packets are framed once per position.

    A result set's head (column count, column definitions, EOF) is the bulk of a response and
    the same for every instance; only its packets' sequence ids and the EOF's status depend on
    where it sits in the response, so it is cached framed per (charset, first seq, status).
    """

    def __init__(self, *columns: Column) -> None:
        self.columns = columns
        self._framed: dict[tuple[int, int, int], bytes] = {}

    def framed_head(self, charset: int, seq: int, status: int) -> bytes:
        key = (charset, seq, status)
        head = self._framed.get(key)
        if head is None:
            payloads = [lenenc_int(len(self.columns))]
            payloads += [column.payload(charset) for column in self.columns]
            payloads.append(eof_payload(status))
            head = frame(payloads, seq)
            self._framed[key] = head
        return head


def _text(name: str, length: int = 80) -> Column:
    return Column(name, T_VAR_STRING, length)


def _num(name: str, length: int = 10, type_: int = T_LONGLONG) -> Column:
    return Column(name, type_, length, F_NUM, 0)


def _long(name: str, length: int = 10) -> Column:
    return _num(name, length, T_LONG)


def _name_value(table: str) -> ColumnSet:
    schema = "information_schema"
    return ColumnSet(
        Column("Variable_name", T_VAR_STRING, 256, F_IS, 0, table, "VARIABLE_NAME", schema),
        Column("Value", T_VAR_STRING, 16384, F_IS, 0, table, "VARIABLE_VALUE", schema),
    )


VARIABLES_COLUMNS = _name_value("SESSION_VARIABLES")
STATUS_COLUMNS = _name_value("SESSION_STATUS")
MASTER_STATUS_COLUMNS = ColumnSet(
    _text("File", 2048),
    _num("Position", 20),
    _text("Binlog_Do_DB", 1020),
    _text("Binlog_Ignore_DB", 1020),
)
SLAVE_HOSTS_COLUMNS = ColumnSet(
    _long("Server_id"), _text("Host"), _long("Port", 7), _long("Master_id")
)
SELECT_ONE_COLUMNS = ColumnSet(Column("1", T_LONG, 1, 129, 0))
ALL_SLAVES_COLUMNS = ColumnSet(
    _text("Connection_name", 768),
    _text("Slave_SQL_State", 120),
    _text("Slave_IO_State", 120),
    _text("Master_Host", 3064),
    _text("Master_User", 1540),
    _long("Master_Port", 7),
    _long("Connect_Retry"),
    _text("Master_Log_File", 2048),
    _num("Read_Master_Log_Pos"),
    _text("Relay_Log_File", 2048),
    _num("Relay_Log_Pos"),
    _text("Relay_Master_Log_File", 2048),
    _text("Slave_IO_Running", 12),
    _text("Slave_SQL_Running", 12),
    _text("Replicate_Do_DB"),
    _text("Replicate_Ignore_DB"),
    _text("Replicate_Do_Table"),
    _text("Replicate_Ignore_Table", 92),
    _text("Replicate_Wild_Do_Table", 96),
    _text("Replicate_Wild_Ignore_Table", 112),
    _long("Last_Errno", 4),
    _text("Last_Error"),
    _long("Skip_Counter"),
    _num("Exec_Master_Log_Pos"),
    _num("Relay_Log_Space"),
    _text("Until_Condition", 24),
    _text("Until_Log_File", 2048),
    _num("Until_Log_Pos"),
    _text("Master_SSL_Allowed", 28),
    _text("Master_SSL_CA_File", 2048),
    _text("Master_SSL_CA_Path", 2048),
    _text("Master_SSL_Cert", 2048),
    _text("Master_SSL_Cipher", 2048),
    _text("Master_SSL_Key", 2048),
    _num("Seconds_Behind_Master"),
    _text("Master_SSL_Verify_Server_Cert", 12),
    _long("Last_IO_Errno", 4),
    _text("Last_IO_Error"),
    _long("Last_SQL_Errno", 4),
    _text("Last_SQL_Error"),
    _text("Replicate_Ignore_Server_Ids", 2048),
    _long("Master_Server_Id", 8),
    _text("Master_SSL_Crl", 2048),
    _text("Master_SSL_Crlpath", 2048),
    _text("Using_Gtid", 44),
    _text("Gtid_IO_Pos", 120),
    _text("Replicate_Do_Domain_Ids", 2048),
    _text("Replicate_Ignore_Domain_Ids", 2048),
    _text("Parallel_Mode", 48),
    _long("SQL_Delay"),
    _long("SQL_Remaining_Delay", 8),
    _text("Slave_SQL_Running_State"),
    _num("Slave_DDL_Groups", 20),
    _num("Slave_Non_Transactional_Groups", 20),
    _num("Slave_Transactional_Groups", 20),
    _text("Replicate_Rewrite_DB", 92),
    _long("Retried_transactions"),
    _num("Max_relay_log_size"),
    _long("Executed_log_entries"),
    _long("Slave_received_heartbeats"),
    Column("Slave_heartbeat_period", T_DOUBLE, 10, 129, 3),
    _text("Gtid_Slave_Pos", 24),
)
# SHOW SLAVE STATUS: the default connection only, without the ALL-only leading/trailing columns.
SLAVE_STATUS_SLICE = slice(2, 56)
SLAVE_STATUS_COLUMNS = ColumnSet(*ALL_SLAVES_COLUMNS.columns[SLAVE_STATUS_SLICE])

# --- the fleet ---------------------------------------------------------------------------------

BINLOG_FILE_BYTES = 1 << 30
BYTES_PER_TRX = 402
FIRST_EVENT_POS = 4 + 252


@dataclass(frozen=True, slots=True)
class FleetLayout:
    base_port: int
    clusters: int
    cluster_size: int

    @property
    def instances(self) -> int:
        return self.clusters * self.cluster_size

    def port(self, cluster: int, member: int) -> int:
        return self.base_port + cluster * self.cluster_size + member

    def locate(self, port: int) -> tuple[int, int]:
        offset = port - self.base_port
        return divmod(offset, self.cluster_size)


@dataclass(frozen=True, slots=True)
class Dynamic:
    """The values that move: one GTID sequence per cluster, uptime, derived coordinates."""

    seq: int
    uptime: int

    @property
    def binlog_file(self) -> str:
        index = 1 + (FIRST_EVENT_POS + self.seq * BYTES_PER_TRX) // BINLOG_FILE_BYTES
        return f"mysql-bin.{index:06d}"

    @property
    def binlog_pos(self) -> int:
        return (FIRST_EVENT_POS + self.seq * BYTES_PER_TRX) % BINLOG_FILE_BYTES + 4


Row = tuple[str | None, ...]


@dataclass
class Instance:
    """One simulated server. Everything static is computed once; rows are rebuilt per epoch."""

    layout: FleetLayout
    cluster: int
    member: int
    trx_per_second: float
    started: float
    # (query, charset) -> (epoch, response bytes)
    cache: dict[tuple[bytes, int], tuple[int, bytes]] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.layout.port(self.cluster, self.member)

    @property
    def server_id(self) -> int:
        return self.port

    @property
    def is_master(self) -> bool:
        return self.member == 0

    @property
    def master_port(self) -> int:
        return self.layout.port(self.cluster, 0)

    @property
    def replica_ports(self) -> list[int]:
        if not self.is_master:
            return []
        return [self.layout.port(self.cluster, m) for m in range(1, self.layout.cluster_size)]

    def dynamic(self, now: float) -> Dynamic:
        elapsed = now - self.started
        seq = 1000 + self.cluster * 7 + int(elapsed * self.trx_per_second)
        if not self.is_master:
            seq -= self.member % 2  # some replicas one transaction behind, as in real life
        return Dynamic(seq=seq, uptime=86400 + self.cluster * 13 + self.member + int(elapsed))

    def gtid(self, dyn: Dynamic) -> str:
        return f"0-{self.master_port}-{dyn.seq}"

    def variables(self, dyn: Dynamic) -> dict[str, str]:
        gtid = self.gtid(dyn)
        return {
            "binlog_format": "ROW",
            "binlog_row_image": "FULL",
            "gtid_binlog_pos": gtid,
            "gtid_current_pos": gtid,
            "gtid_domain_id": "0",
            "gtid_slave_pos": "" if self.is_master else gtid,
            "gtid_strict_mode": "ON",
            "hostname": f"sim-{self.port}",
            "log_bin": "ON",
            "log_slave_updates": "ON",
            "max_connections": "151",
            "port": str(self.port),
            "read_only": "OFF" if self.is_master else "ON",
            "report_host": LOOPBACK,
            "report_port": str(self.port),
            "rpl_semi_sync_master_enabled": "OFF",
            "rpl_semi_sync_master_timeout": "10000",
            "rpl_semi_sync_slave_enabled": "OFF",
            "server_id": str(self.server_id),
            "version": SERVER_VERSION,
            "version_comment": VERSION_COMMENT,
        }

    def status(self, dyn: Dynamic) -> dict[str, str]:
        return {
            "Rpl_semi_sync_master_clients": "0",
            "Rpl_semi_sync_master_status": "OFF",
            "Rpl_semi_sync_slave_status": "OFF",
            "Threads_connected": "3",
            "Uptime": str(dyn.uptime),
        }

    def master_status(self, dyn: Dynamic) -> list[Row]:
        return [(dyn.binlog_file, str(dyn.binlog_pos), "", "")]

    def all_slaves_status(self, dyn: Dynamic) -> list[Row]:
        if self.is_master:
            return []
        gtid, pos, log = self.gtid(dyn), str(dyn.binlog_pos), dyn.binlog_file
        applied = str(dyn.seq - 1000)
        waiting = "Slave has read all relay log; waiting for more updates"
        relay_log = f"sim-{self.port}-relay-bin.000002"
        return [
            (
                "", waiting, "Waiting for master to send event", LOOPBACK, "repl",
                str(self.master_port), "60", log, pos, relay_log, "871", log, "Yes", "Yes",
                "", "", "", "", "", "", "0", "", "0", pos, "1177", "None", "", "0", "No",
                "", "", "", "", "", "0", "No", "0", "", "0", "", "", str(self.master_port),
                "", "", "Slave_Pos", gtid, "", "", "optimistic", "0", None, waiting, "1", "0",
                applied, "", "0", "1073741824", str(int(applied) * 3), "0", "30.000", gtid,
            )
        ]  # fmt: skip

    def slave_hosts(self) -> list[Row]:
        return [
            (str(port), LOOPBACK, str(port), str(self.server_id)) for port in self.replica_ports
        ]

    def dump_thread_hosts(self) -> list[Row]:
        return [(LOOPBACK,) for _ in self.replica_ports]


# --- statements ---------------------------------------------------------------------------------


class Kind(Enum):
    VARIABLES = "variables"
    STATUS = "status"
    MASTER_STATUS = "master status"
    ALL_SLAVES = "all slaves status"
    SLAVE_STATUS = "slave status"
    SLAVE_HOSTS = "slave hosts"
    DUMP_THREADS = "dump threads"
    SELECT_ONE = "select 1"
    SELECT_VARS = "select @@"
    OK = "ok"
    WAIT = "wait"  # SELECT ... SLEEP(n): never answered (held, as a long SLEEP is)
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Statement:
    kind: Kind
    # VARIABLES/STATUS: the names asked for (lowercase), None = all; LIKE: a regex.
    names: frozenset[str] | None = None
    like: str | None = None
    # DUMP_THREADS: the column alias; SELECT_VARS: the expressions; ERROR: the message.
    labels: tuple[str, ...] = ()
    columns: ColumnSet | None = None


_SPACE = re.compile(r"\s+")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_SHOW_NAMED = re.compile(
    r"^show (?:global |session )?(variables|status)(?: where variable_name in \((.*)\)"
    r"| like '(.*)')?$"
)
_SELECTED = r"@@[\w.]+(?:\s+as\s+\w+)?"  # @@global.version [AS version]
_SELECT_VARS = re.compile(rf"^select ({_SELECTED}(?:\s*,\s*{_SELECTED})*)$", re.IGNORECASE)
_ALIAS = re.compile(r"\s+as\s+", re.IGNORECASE)
_DUMP_ALIAS = re.compile(r"\bas (\w+) from information_schema\.processlist", re.IGNORECASE)
_OK_PREFIXES = ("set ", "begin", "commit", "rollback", "start transaction", "use ")


def split_statements(sql: str) -> list[str]:
    """Split a multi-statement query on the semicolons outside quotes."""
    pieces: list[str] = []
    start = 0
    quote = ""
    i = 0
    while i < len(sql):
        char = sql[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == ";":
            pieces.append(sql[start:i])
            start = i + 1
        i += 1
    pieces.append(sql[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def _like_regex(pattern: str) -> str:
    return "^" + re.escape(pattern.lower()).replace("%", ".*").replace("_", ".") + "$"


def classify(statement: str) -> Statement:
    text = _SPACE.sub(" ", statement).strip().lower()
    named = _SHOW_NAMED.match(text)
    if named:
        kind = Kind.VARIABLES if named.group(1) == "variables" else Kind.STATUS
        if named.group(2) is not None:
            return Statement(kind, names=frozenset(_QUOTED.findall(named.group(2))))
        if named.group(3) is not None:
            return Statement(kind, like=_like_regex(named.group(3)))
        return Statement(kind)
    simple = {
        "show master status": Kind.MASTER_STATUS,
        "show binlog status": Kind.MASTER_STATUS,
        "show all slaves status": Kind.ALL_SLAVES,
        "show all replicas status": Kind.ALL_SLAVES,
        "show slave status": Kind.SLAVE_STATUS,
        "show replica status": Kind.SLAVE_STATUS,
        "show slave hosts": Kind.SLAVE_HOSTS,
        "show replica hosts": Kind.SLAVE_HOSTS,
        "select 1": Kind.SELECT_ONE,
    }
    if text in simple:
        return Statement(simple[text])
    if "information_schema.processlist" in text and "binlog dump" in text:
        found = _DUMP_ALIAS.search(_SPACE.sub(" ", statement).strip())
        alias = found.group(1) if found else "host"
        column = Column(alias, T_VAR_STRING, 256, 0)
        return Statement(Kind.DUMP_THREADS, labels=(alias,), columns=ColumnSet(column))
    selected = _SELECT_VARS.match(_SPACE.sub(" ", statement).strip())
    if selected:
        exprs = tuple(part.strip() for part in selected.group(1).split(","))
        return Statement(Kind.SELECT_VARS, labels=exprs)
    if text.startswith(_OK_PREFIXES) or text in ("begin", "commit", "rollback"):
        return Statement(Kind.OK)
    if text.startswith("select") and "sleep(" in text:
        return Statement(Kind.WAIT)
    return Statement(
        Kind.ERROR,
        labels=(
            f"You have an error in your SQL syntax; simfleet does not answer '{statement[:80]}'",
        ),
    )


class PlanCache:
    """Query text -> its classified statements (probes repeat the same few queries)."""

    def __init__(self, limit: int = 4096) -> None:
        self._plans: dict[bytes, tuple[Statement, ...]] = {}
        self._limit = limit

    def plan(self, query: bytes) -> tuple[Statement, ...]:
        plan = self._plans.get(query)
        if plan is None:
            text = query.decode("utf-8", errors="replace")
            pieces = split_statements(text)
            plan = tuple(classify(piece) for piece in pieces)
            if len(self._plans) >= self._limit:
                self._plans.clear()
            self._plans[query] = plan
        return plan


# --- responses ----------------------------------------------------------------------------------


_LENENC_MEMO: dict[str, bytes] = {}
_LENENC_MEMO_LIMIT = 200_000


def _lenenc_value(value: str) -> bytes:
    encoded = _LENENC_MEMO.get(value)
    if encoded is None:
        encoded = lenenc_str(value.encode())
        if len(_LENENC_MEMO) >= _LENENC_MEMO_LIMIT:
            _LENENC_MEMO.clear()
        _LENENC_MEMO[value] = encoded
    return encoded


class Wire:
    """A response being assembled: packets with running sequence ids."""

    _header = struct.Struct("<I").pack

    def __init__(self, first_seq: int = 1) -> None:
        self.parts: list[bytes] = []
        self.seq = first_seq

    def packet(self, payload: bytes) -> None:
        self.parts.append(self._header(len(payload) | (self.seq << 24)))
        self.parts.append(payload)
        self.seq = (self.seq + 1) & 0xFF

    def result_set(
        self, columns: ColumnSet, rows: Sequence[Row], charset: int, status: int
    ) -> None:
        self.parts.append(columns.framed_head(charset, self.seq, status))
        self.seq = (self.seq + len(columns.columns) + 2) & 0xFF
        memo = _LENENC_MEMO
        for row in rows:
            self.packet(
                b"".join(b"\xfb" if v is None else (memo.get(v) or _lenenc_value(v)) for v in row)
            )
        self.packet(eof_payload(status))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


# SELECT @@read_only answers 1, where SHOW VARIABLES says ON.
_SELECTED_BOOLEANS = {"ON": "1", "OFF": "0"}


def _value_column(label: str, value: str) -> Column:
    if value.isdigit():
        return Column(label, T_LONGLONG, max(len(value), 1), 128, 0)
    return Column(label, T_VAR_STRING, max(len(value), 1) * 4, 0, 39)


def _named_rows(values: dict[str, str], statement: Statement) -> list[Row]:
    """SHOW VARIABLES/STATUS rows: the names asked for, sorted as MariaDB sorts them."""
    if statement.names is not None:
        names = statement.names
        chosen = [(k, v) for k, v in values.items() if k.lower() in names]
    elif statement.like is not None:
        like = re.compile(statement.like)
        chosen = [(k, v) for k, v in values.items() if like.match(k.lower())]
    else:
        chosen = list(values.items())
    chosen.sort(key=lambda kv: kv[0].lower())
    return list(chosen)


def _selected_variables(
    variables: dict[str, str], exprs: tuple[str, ...]
) -> tuple[ColumnSet, list[Row]] | bytes:
    """``SELECT @@a, @@b AS c``: one row; an ERR packet for a variable the server does not
    have. A column is named by its alias, or by its expression as written."""
    values: list[str] = []
    labels: list[str] = []
    for selected in exprs:
        expr, _, alias = (part.strip() for part in _ALIAS.sub(" as ", selected).partition(" as "))
        name = expr[2:].lower().removeprefix("global.").removeprefix("session.")
        if name not in variables:
            return err_payload(1193, "HY000", f"Unknown system variable '{name}'")
        value = variables[name]
        values.append(_SELECTED_BOOLEANS.get(value, value))
        labels.append(alias or expr)
    columns = ColumnSet(*(_value_column(e, v) for e, v in zip(labels, values, strict=True)))
    return columns, [tuple(values)]


CACHED_QUERIES_PER_INSTANCE = 8


class Responder:
    """Builds (and caches per instance and epoch) the bytes answering one COM_QUERY."""

    def __init__(self, refresh_seconds: float) -> None:
        self.refresh = refresh_seconds
        self.plans = PlanCache()
        self.clock: Callable[[], float] = time.monotonic

    def answer(self, instance: Instance, query: bytes, charset: int) -> bytes:
        """The bytes to send; none for a statement that waits (discovery's liveness
        connection keeps one running: it ends when the connection does)."""
        plan = self.plans.plan(query)
        if any(statement.kind is Kind.WAIT for statement in plan):
            return b""
        now = self.clock()
        epoch = int(now / self.refresh)
        key = (query, charset)
        cached = instance.cache.get(key)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        # Every answer within one epoch shows the same state, as if taken at its start.
        data = self._response(instance, plan, charset, epoch * self.refresh)
        if len(instance.cache) >= CACHED_QUERIES_PER_INSTANCE:
            instance.cache.clear()  # someone is sending ad-hoc queries: do not grow
        instance.cache[key] = (epoch, data)
        return data

    def _response(
        self, instance: Instance, plan: tuple[Statement, ...], charset: int, now: float
    ) -> bytes:
        wire = Wire(first_seq=1)
        if not plan:
            wire.packet(err_payload(1065, "42000", "Query was empty"))
            return wire.bytes()
        dyn = instance.dynamic(now)
        last = len(plan) - 1
        for index, statement in enumerate(plan):
            more = index < last
            status = SERVER_STATUS_AUTOCOMMIT | (SERVER_MORE_RESULTS_EXISTS if more else 0)
            result = self._result(instance, statement, dyn)
            if result is None:
                wire.packet(ok_payload(status))
            elif isinstance(result, bytes):
                wire.packet(result)  # an error ends the batch, as in MariaDB
                break
            else:
                columns, rows = result
                wire.result_set(columns, rows, charset, status)
        return wire.bytes()

    @staticmethod
    def _result(
        instance: Instance, statement: Statement, dyn: Dynamic
    ) -> tuple[ColumnSet, Sequence[Row]] | bytes | None:
        kind = statement.kind
        if kind is Kind.VARIABLES:
            return VARIABLES_COLUMNS, _named_rows(instance.variables(dyn), statement)
        if kind is Kind.STATUS:
            return STATUS_COLUMNS, _named_rows(instance.status(dyn), statement)
        if kind is Kind.MASTER_STATUS:
            return MASTER_STATUS_COLUMNS, instance.master_status(dyn)
        if kind is Kind.ALL_SLAVES:
            return ALL_SLAVES_COLUMNS, instance.all_slaves_status(dyn)
        if kind is Kind.SLAVE_STATUS:
            rows = [row[SLAVE_STATUS_SLICE] for row in instance.all_slaves_status(dyn)]
            return SLAVE_STATUS_COLUMNS, rows
        if kind is Kind.SLAVE_HOSTS:
            return SLAVE_HOSTS_COLUMNS, instance.slave_hosts()
        if kind is Kind.DUMP_THREADS:
            assert statement.columns is not None
            return statement.columns, instance.dump_thread_hosts()
        if kind is Kind.SELECT_ONE:
            return SELECT_ONE_COLUMNS, [("1",)]
        if kind is Kind.SELECT_VARS:
            return _selected_variables(instance.variables(dyn), statement.labels)
        if kind is Kind.OK:
            return None
        return err_payload(1064, "42000", statement.labels[0])


# --- connections --------------------------------------------------------------------------------


class MariaDBConnection(asyncio.Protocol):
    """One client connection to one simulated instance."""

    _next_id = 1

    def __init__(self, instance: Instance, responder: Responder) -> None:
        self.instance = instance
        self.responder = responder
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.authenticated = False
        self.charset = UTF8MB4_GENERAL_CI

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        conn_id = MariaDBConnection._next_id
        MariaDBConnection._next_id = (conn_id + 1) & 0xFFFFFFFF or 1
        salt = os.urandom(20).translate(_PRINTABLE)
        caps = SERVER_CAPABILITIES
        greeting = b"".join(
            (
                b"\x0a",
                b"5.5.5-" + SERVER_VERSION.encode() + b"\x00",
                struct.pack("<I", conn_id),
                salt[:8],
                b"\x00",
                struct.pack("<HBHH", caps & 0xFFFF, 8, SERVER_STATUS_AUTOCOMMIT, caps >> 16),
                bytes((21,)),
                b"\x00" * 10,
                salt[8:],
                b"\x00",
                AUTH_PLUGIN + b"\x00",
            )
        )
        transport.write(frame([greeting], 0))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 4:
            length = buffer[0] | buffer[1] << 8 | buffer[2] << 16
            if len(buffer) < 4 + length:
                return
            seq = buffer[3]
            payload = bytes(buffer[4 : 4 + length])
            del buffer[: 4 + length]
            if length == MAX_PACKET:
                self._reply_error(seq, 1153, "08S01", "Got a packet bigger than simfleet takes")
                self._close()
                return
            self._handle(seq, payload)
            if self.transport is None or self.transport.is_closing():
                return

    def _handle(self, seq: int, payload: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if not self.authenticated:
            # HandshakeResponse41: client flags (4), max packet (4), charset (1), ... any
            # user and password are accepted.
            if len(payload) >= 9:
                self.charset = payload[8] or UTF8MB4_GENERAL_CI
            self.authenticated = True
            transport.write(frame([ok_payload()], seq + 1))
            return
        command = payload[0] if payload else -1
        if command == COM_QUERY:
            transport.write(self.responder.answer(self.instance, payload[1:], self.charset))
        elif command in (COM_PING, COM_INIT_DB):
            transport.write(_OK_SEQ1)
        elif command == COM_QUIT:
            self._close()
        else:
            self._reply_error(seq, 1047, "08S01", "Unknown command")

    def _reply_error(self, seq: int, errno: int, sqlstate: str, message: str) -> None:
        if self.transport is not None:
            self.transport.write(frame([err_payload(errno, sqlstate, message)], seq + 1))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


_PRINTABLE = bytes(33 + (b % 94) for b in range(256))
_OK_SEQ1 = frame([ok_payload()], 1)

# --- processes ----------------------------------------------------------------------------------


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(
    layout: FleetLayout,
    clusters: range,
    *,
    host: str = LOOPBACK,
    trx_per_second: float = 10.0,
    refresh_seconds: float = 1.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Listen for every instance of ``clusters`` until cancelled."""
    loop = asyncio.get_running_loop()
    responder = Responder(refresh_seconds)
    started = time.monotonic()
    servers: list[asyncio.Server] = []
    try:
        for cluster in clusters:
            for member in range(layout.cluster_size):
                instance = Instance(layout, cluster, member, trx_per_second, started)
                server = await loop.create_server(
                    functools.partial(MariaDBConnection, instance, responder),
                    host,
                    instance.port,
                    backlog=256,
                    reuse_address=True,
                )
                servers.append(server)
        if on_ready is not None:
            on_ready()
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()


def _set_parent_death_signal() -> None:
    """Linux: die with the parent (prctl PR_SET_PDEATHSIG, SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _run_single(args: argparse.Namespace, clusters: range) -> int:
    layout = FleetLayout(args.base_port, args.clusters, args.cluster_size)

    def ready() -> None:
        print("ready", flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(
                layout,
                clusters,
                host=args.host,
                trx_per_second=args.trx_per_second,
                refresh_seconds=args.refresh_seconds,
                on_ready=ready,
            )

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"simfleet: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    """Split the clusters over ``--processes`` children; ready when all are."""
    count = min(args.processes, args.clusters)
    bounds = [args.clusters * i // count for i in range(count + 1)]
    children: list[subprocess.Popen[str]] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for i in range(count):
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--base-port", str(args.base_port),
                "--clusters", str(args.clusters),
                "--cluster-size", str(args.cluster_size),
                "--host", args.host,
                "--trx-per-second", str(args.trx_per_second),
                "--refresh-seconds", str(args.refresh_seconds),
                "--only-clusters", f"{bounds[i]}:{bounds[i + 1]}",
            ]  # fmt: skip
            children.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    text=True,
                    # Single-threaded here, so preexec_fn is safe.
                    preexec_fn=_set_parent_death_signal,  # noqa: PLW1509
                )
            )
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                print("simfleet: a worker failed to start", file=sys.stderr, flush=True)
                return 1
        print("ready", flush=True)
        while not stop:
            if any(child.poll() is not None for child in children):
                print("simfleet: a worker exited", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 5
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="simfleet",
        description="Simulated MariaDB 10.11 clusters answering the MySQL protocol on loopback.",
    )
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--clusters", type=int, required=True)
    parser.add_argument("--cluster-size", type=int, default=5, help="1 master + N-1 replicas")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--trx-per-second", type=float, default=10.0, help="per cluster")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=1.0,
        help="how often GTID positions, coordinates and Uptime move",
    )
    parser.add_argument("--only-clusters", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cluster_size < 1 or args.clusters < 1 or args.processes < 1:
        parser.error("--clusters, --cluster-size and --processes must be positive")
    last_port = args.base_port + args.clusters * args.cluster_size - 1
    if args.base_port < 1 or last_port > 65535:
        parser.error(f"ports {args.base_port}-{last_port} are out of range")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed = args.clusters * args.cluster_size * 2 + 64
    limit = raise_file_limit()
    if args.only_clusters:
        start, stop = (int(part) for part in args.only_clusters.split(":"))
        return _run_single(args, range(start, stop))
    if limit < needed // args.processes:
        print(
            f"simfleet: warning: RLIMIT_NOFILE {limit} is low for {needed} sockets",
            file=sys.stderr,
        )
    if args.processes == 1:
        return _run_single(args, range(args.clusters))
    return _run_workers(args)


if __name__ == "__main__":
    sys.exit(main())
