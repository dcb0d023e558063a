"""A server asking for the topology password in clear never gets it (issue 12, §2).

A minimal asyncio server speaking the MySQL handshake (as tests/harness/simfleet.py does) plays a
malicious or downgraded server: it asks for ``mysql_clear_password`` or ``dialog`` (in the
greeting or in an authentication switch), or leaves TLS out when the client requires it. It
records every byte the client sends; the probe, the recovery link and the liveness link must
fail with a clear error and the password must not be among those bytes. A control server that
switches to ``mysql_native_password`` shows the same client does log in when nothing is wrong.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pymysql
import pytest
from pymysql.constants import CLIENT

from orchestrator_adapters.mysql_client import connect_guarded
from orchestrator_adapters.probe import ConnectionPool, LivenessLink, ProbeOptions, Prober
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_shared.errors import ProbeError
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-topology-password"
CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS
    | CLIENT.MULTI_RESULTS
    | CLIENT.PLUGIN_AUTH
)
_OK = b"\x00\x00\x00\x02\x00\x00\x00"  # OK, 0 rows, no insert id, autocommit, no warnings


def _frame(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload) | (seq << 24)) + payload


@dataclass
class FakeServer:
    """``greeting_plugin`` is offered in the greeting; ``switch_to`` (if set) is asked for
    in an AuthSwitchRequest after the client's first answer."""

    greeting_plugin: bytes
    switch_to: bytes | None = None
    offer_tls: bool = False
    received: bytearray = field(default_factory=bytearray)
    logged_in: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)  # type: ignore[arg-type]
        self.writers.append(writer)
        salt = bytes(33 + b % 94 for b in os.urandom(20))  # printable, no NUL
        caps = CAPABILITIES | (CLIENT.SSL if self.offer_tls else 0)
        greeting = b"".join(
            (
                b"\x0a5.5.5-10.11.0-MariaDB\x00",
                struct.pack("<I", 7),
                salt[:8],
                b"\x00",
                struct.pack("<HBHH", caps & 0xFFFF, 45, 2, caps >> 16),
                bytes((21,)),
                b"\x00" * 10,
                salt[8:],
                b"\x00",
                self.greeting_plugin + b"\x00",
            )
        )
        writer.write(_frame(greeting, 0))
        switched = False
        try:
            while True:
                header = await reader.readexactly(4)
                length = header[0] | header[1] << 8 | header[2] << 16
                payload = await reader.readexactly(length)
                self.received += header + payload
                seq = header[3]
                if self.switch_to is not None and not switched:
                    switched = True
                    writer.write(
                        _frame(b"\xfe" + self.switch_to + b"\x00" + salt + b"\x00", seq + 1)
                    )
                elif payload[:1] == b"\x01":  # COM_QUIT
                    break
                else:  # the login, then any statement
                    self.logged_in += 1
                    writer.write(_frame(_OK, seq + 1))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: FakeServer) -> AsyncIterator[InstanceKey]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        yield InstanceKey("127.0.0.1", port)
    finally:
        listener.close()
        await listener.wait_closed()
        for writer in server.writers:  # every connection ends before the test does
            writer.close()
        if server.handlers:
            await asyncio.wait(server.handlers, timeout=5)


def options(tls: ssl.SSLContext | None = None) -> ProbeOptions:
    return ProbeOptions(
        user="orchestrator",
        password=PASSWORD,
        connect_timeout=2,
        deadline=5,
        pool_size=1,
        trust_show_slave_hosts=False,
        tls=tls,
    )


CLEARTEXT_SERVERS = {
    "switch-to-clear-password": FakeServer(b"mysql_native_password", b"mysql_clear_password"),
    "greeting-clear-password": FakeServer(b"mysql_clear_password"),
    "switch-to-dialog": FakeServer(b"mysql_native_password", b"dialog"),
    "greeting-dialog": FakeServer(b"dialog"),
}


@pytest.mark.parametrize("name", sorted(CLEARTEXT_SERVERS))
async def test_a_cleartext_request_gets_no_password_from_any_client(name: str) -> None:
    server = CLEARTEXT_SERVERS[name]
    async with serving(server) as key:
        prober = Prober(options(), ConnectionPool(options()))
        try:
            snapshot = await prober.probe(key)
        finally:
            prober.close()
        assert not snapshot.probe.ok
        assert snapshot.probe.errno == 2059
        assert snapshot.probe.error is not None
        assert "clear text" in snapshot.probe.error
        assert "without TLS" in snapshot.probe.error

        link = LivenessLink(key, options(), timeout=2)
        with pytest.raises(ProbeError, match="password in clear text"):
            await link.check()
        link.close()

        async with Links(
            MySQLAccess(user="orchestrator", password=PASSWORD), statement_timeout=2
        ) as links:
            with pytest.raises(StatementFailed, match="password in clear text") as failed:
                await links.connect(key)
        assert failed.value.errno == 2059
    if server.switch_to is not None:  # the clients did answer the greeting (scrambled)
        assert server.received
    assert PASSWORD.encode() not in server.received
    assert server.logged_in == 0


async def test_a_server_without_tls_is_refused_when_tls_is_required() -> None:
    server = FakeServer(b"mysql_native_password")
    async with serving(server) as key:
        required = options(ssl.create_default_context())
        prober = Prober(required, ConnectionPool(required))
        try:
            snapshot = await prober.probe(key)
        finally:
            prober.close()
    assert not snapshot.probe.ok
    assert snapshot.probe.errno == 2026
    assert snapshot.probe.error == (
        "TLS is required (MySQLTopologyUseMutualTLS) but the server does not offer it"
    )
    assert server.received == b"" and server.logged_in == 0


async def test_the_same_client_logs_in_with_a_scrambled_password() -> None:
    server = FakeServer(b"mysql_native_password", b"mysql_native_password")
    async with serving(server) as key:
        conn = await connect_guarded(
            host=key.host, port=key.port, user="orchestrator", password=PASSWORD
        )
        try:
            await conn.ping(reconnect=False)
        finally:
            conn.close()
    assert server.logged_in >= 2  # the login and the ping
    assert PASSWORD.encode() not in server.received


async def test_a_refused_handshake_is_a_mysql_error_not_a_traceback() -> None:
    async with serving(FakeServer(b"mysql_clear_password")) as key:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            await connect_guarded(host=key.host, port=key.port, user="u", password=PASSWORD)
    assert refused.value.args[0] == 2059
    assert PASSWORD not in str(refused.value)
