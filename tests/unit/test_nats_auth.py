"""NATS client authentication and TLS settings (docs/security.md, The bus): files checked when
the settings are loaded (one-line error naming the setting), the options every connection gets,
and server URLs' passwords redacted."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest

from orchestrator_shared.nats_auth import ANONYMOUS, nats_auth, redact_url, redact_urls, scrub
from tests.harness.certificates import TestAuthority
from tests.unit.test_config_orchestrator_keys import load, one_line_error

pytestmark = pytest.mark.unit


def test_nothing_configured_is_anonymous_without_tls(tmp_path: Path) -> None:
    auth = nats_auth(load(tmp_path, {}).settings)
    assert auth == ANONYMOUS
    assert auth.connect_options() == {}


def test_user_and_password_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "nats-password"
    secret.write_text("s3cret-pw\n")
    env = {"ORCHESTRATOR_NATSUser": "api", "ORCHESTRATOR_NATSPassword_FILE": str(secret)}
    settings = load(tmp_path, None, env).settings
    auth = nats_auth(settings)
    assert auth.connect_options() == {"user": "api", "password": "s3cret-pw"}
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in repr(auth)
    assert auth.secrets == ("s3cret-pw",)


def test_a_password_without_a_user_is_refused(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, {"NATSPassword": "x"})
    assert message == "NATSPassword: NATSUser must be set with it"


def test_an_nkey_seed_file_is_checked_and_passed_on(tmp_path: Path) -> None:
    seed_file = tmp_path / "service.nk"
    seed_file.write_bytes(nkeys.from_seed(_fresh_seed()).seed + b"\n")
    auth = nats_auth(load(tmp_path, {"NATSNKeySeedFile": str(seed_file)}).settings)
    assert auth.connect_options() == {"nkeys_seed": str(seed_file)}
    bad = tmp_path / "bad.nk"
    bad.write_text("SUNOTASEED\n")
    message = one_line_error(tmp_path, {"NATSNKeySeedFile": str(bad)})
    assert message == f"NATSNKeySeedFile: {bad} does not hold an nkey seed (SU...)"
    missing = one_line_error(tmp_path, {"NATSNKeySeedFile": str(tmp_path / "none.nk")})
    assert missing.startswith("NATSNKeySeedFile: cannot read")


def test_a_creds_file_must_hold_a_jwt_and_a_seed(tmp_path: Path) -> None:
    creds = tmp_path / "service.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n"
    )
    auth = nats_auth(load(tmp_path, {"NATSCredsFile": str(creds)}).settings)
    assert auth.connect_options() == {"user_credentials": str(creds)}
    junk = tmp_path / "junk.creds"
    junk.write_text("hello")
    assert one_line_error(tmp_path, {"NATSCredsFile": str(junk)}) == (
        f"NATSCredsFile: {junk} is not a NATS credentials file (a user JWT and its seed)"
    )
    both = {"NATSCredsFile": str(creds), "NATSNKeySeedFile": str(creds)}
    assert one_line_error(tmp_path, both) == (
        "NATSNKeySeedFile: set NATSCredsFile or NATSNKeySeedFile, not both"
    )


def test_tls_with_a_ca_and_a_client_certificate(tmp_path: Path) -> None:
    authority = TestAuthority(tmp_path / "ca")
    cert, key = authority.issue("client", usage="clientAuth")
    document = {
        "NATSCAFile": str(authority.certificate),
        "NATSCertFile": str(cert),
        "NATSKeyFile": str(key),
    }
    tls = nats_auth(load(tmp_path, document).settings).connect_options()["tls"]
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode is ssl.CERT_REQUIRED and tls.check_hostname
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("nothing")
    assert one_line_error(tmp_path, {"NATSCAFile": str(not_a_ca)}).startswith(
        f"NATSCAFile: cannot use {not_a_ca}"
    )
    assert one_line_error(tmp_path, {"NATSKeyFile": str(key)}) == (
        "NATSKeyFile: NATSCertFile must be set with it"
    )
    assert one_line_error(tmp_path, {"NATSCertFile": str(authority.certificate)}).startswith(
        "NATSCertFile: cannot use"
    )


def test_a_url_password_is_redacted() -> None:
    assert redact_url("nats://alice:s3cret@10.0.0.1:4222") == "nats://***@10.0.0.1:4222"
    assert redact_url("tls://tok3n@host:4222") == "tls://***@host:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert redact_urls(["nats://a:b@h:1", "nats://h:2"]) == "nats://***@h:1, nats://h:2"


def test_scrub_removes_urls_passwords_and_configured_secrets() -> None:
    servers = ["nats://alice:s3cret@h:4222", "nats://tok3n@g:4222"]
    text = "nats: cannot reach nats://alice:s3cret@h:4222 (s3cret, tok3n, pw9)"
    cleaned = scrub(text, servers, ["pw9"])
    assert cleaned == "nats: cannot reach nats://***@h:4222 (***, ***, ***)"


def test_a_bad_server_url_is_reported_without_its_password(tmp_path: Path) -> None:
    message = one_line_error(tmp_path, {"NATSServers": ["http://alice:s3cret@h:4222"]})
    assert "s3cret" not in message
    assert message.startswith("NATSServers: expected nats://host:port URLs")


def _fresh_seed() -> bytearray:
    """A user nkey seed made here from 32 random bytes."""
    return bytearray(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
