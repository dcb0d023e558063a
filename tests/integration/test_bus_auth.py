"""Every service's NATS connection (``connect_nats``) against a real nats-server that demands
credentials and TLS: a user and password, an nkey, a client certificate checked against the CA;
refused credentials say so without ever showing a password."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.nats_auth import NatsAuth, nats_auth
from tests.harness.certificates import TestAuthority
from tests.harness.nats import NatsServer
from tests.harness.process import start_with_fresh_ports
from tests.unit.test_config_orchestrator_keys import load

pytestmark = pytest.mark.integration


def _server(tmp_path: Path, config: str) -> Iterator[NatsServer]:
    path = tmp_path / "nats-server.conf"
    path.write_text(config)
    server = start_with_fresh_ports(lambda: NatsServer(config_file=path))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = tmp_path / "recovery.nk"
    path.write_bytes(seed + b"\n")
    return path


@pytest.fixture
def password_server(tmp_path: Path, seed_file: Path) -> Iterator[NatsServer]:
    public = nkeys.from_seed(bytearray(seed_file.read_bytes().strip())).public_key.decode()
    yield from _server(
        tmp_path,
        "authorization {\n"
        '  users = [{user: "api", password: "right-pw"}, {nkey: "' + public + '"}]\n'
        "}\n",
    )


async def _round_trip(server: NatsServer, auth: NatsAuth, servers: list[str] | None = None) -> None:
    nc = await connect_nats(servers or [server.url], name="test", auth=auth)
    try:
        subscription = await nc.subscribe("probe.subject")
        await nc.publish("probe.subject", b"hello")
        assert (await subscription.next_msg(timeout=2)).data == b"hello"
    finally:
        await nc.close()


async def test_a_user_and_password_from_a_secret_file_and_an_nkey_connect(
    tmp_path: Path, password_server: NatsServer, seed_file: Path
) -> None:
    secret = tmp_path / "nats-password"
    secret.write_text("right-pw\n")
    env = {"ORCHESTRATOR_NATSUser": "api", "ORCHESTRATOR_NATSPassword_FILE": str(secret)}
    await _round_trip(password_server, nats_auth(load(tmp_path, None, env).settings))
    by_seed = nats_auth(load(tmp_path, {"NATSNKeySeedFile": str(seed_file)}).settings)
    await _round_trip(password_server, by_seed)
    # the URL form works too
    url = password_server.url.replace("nats://", "nats://api:right-pw@")
    await _round_trip(password_server, NatsAuth(), servers=[url])


async def test_refused_credentials_are_reported_without_the_password(
    password_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrator_adapters.nats_client")
    url = password_server.url.replace("nats://", "nats://api:wrong-url-pw@")
    for servers, auth in (
        ([password_server.url], NatsAuth(user="api", password="wrong-pw")),
        ([password_server.url], NatsAuth()),
        ([url], NatsAuth()),
    ):
        caplog.clear()
        # nats-py retries refused credentials forever: the service keeps waiting, and says why
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connect_nats(servers, name="test", auth=auth), 2)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings, "a refused connection is not logged"
        assert all("ization" in text for text in warnings)  # Authorization violation
        logged = caplog.text
        assert "wrong-pw" not in logged and "wrong-url-pw" not in logged


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[NatsServer, TestAuthority]]:
    authority = TestAuthority(tmp_path / "ca")
    cert, key = authority.issue("nats-server")
    yield from (
        (server, authority)
        for server in _server(
            tmp_path,
            "tls {\n"
            f'  cert_file: "{cert}"\n  key_file: "{key}"\n  ca_file: "{authority.certificate}"\n'
            "  verify: true\n  timeout: 2\n}\n",
        )
    )


async def test_tls_with_a_client_certificate_checked_against_the_ca(
    tmp_path: Path, tls_server: tuple[NatsServer, TestAuthority]
) -> None:
    server, authority = tls_server
    cert, key = authority.issue("orchestrator-recovery", usage="clientAuth")
    document = {
        "NATSCAFile": str(authority.certificate),
        "NATSCertFile": str(cert),
        "NATSKeyFile": str(key),
    }
    tls_url = server.url.replace("nats://", "tls://")
    await _round_trip(server, nats_auth(load(tmp_path, document).settings), servers=[tls_url])
    # without a client certificate the server refuses the handshake: the client keeps waiting
    no_client_cert = nats_auth(load(tmp_path, {"NATSCAFile": str(authority.certificate)}).settings)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connect_nats([tls_url], name="test", auth=no_client_cert), 2)
