"""``MySQLTopology*`` TLS settings (orchestrator's keys): pairing, files checked when the
settings are loaded (one-line error naming the setting), the warning for files without TLS,
and the context every topology connection gets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from orchestrator_adapters.probe import ProbeOptions
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_shared.config import Settings
from orchestrator_shared.mysql_tls import topology_tls_context
from tests.harness.certificates import TestAuthority
from tests.unit.test_config_orchestrator_keys import load, one_line_error

pytestmark = pytest.mark.unit


def test_tls_is_off_by_default_and_every_client_gets_no_context(tmp_path: Path) -> None:
    settings = load(tmp_path, {}).settings
    assert settings.MySQLTopologyUseMutualTLS is False
    assert topology_tls_context(settings) is None
    assert ProbeOptions.from_settings(settings).tls is None
    assert MySQLAccess.from_settings(settings).tls is None


def test_the_context_verifies_the_server_against_the_ca(tmp_path: Path) -> None:
    authority = TestAuthority(tmp_path / "tls")
    client_cert, client_key = authority.issue("client", usage="clientAuth")
    document: dict[str, object] = {
        "MySQLTopologyUseMutualTLS": True,
        "MySQLTopologySSLCAFile": str(authority.certificate),
        "MySQLTopologySSLCertFile": str(client_cert),
        "MySQLTopologySSLPrivateKeyFile": str(client_key),
    }
    loaded = load(tmp_path, document)
    assert loaded.warnings == ()
    for context in (
        ProbeOptions.from_settings(loaded.settings).tls,
        MySQLAccess.from_settings(loaded.settings).tls,
    ):
        assert context is not None
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
        assert [ca["subject"] for ca in context.get_ca_certs()] == [
            ((("commonName", "orchestrator-test-ca"),),)
        ]
    relaxed = topology_tls_context(
        load(tmp_path, {**document, "MySQLTopologySSLSkipVerify": True}).settings
    )
    assert relaxed is not None
    assert (relaxed.verify_mode, relaxed.check_hostname) == (ssl.CERT_NONE, False)


def test_a_file_that_cannot_be_used_stops_startup_naming_the_setting(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing-ca.pem")
    message = one_line_error(
        tmp_path, {"MySQLTopologyUseMutualTLS": True, "MySQLTopologySSLCAFile": missing}
    )
    assert message.startswith(f"MySQLTopologySSLCAFile: cannot use {missing}: ")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    message = one_line_error(
        tmp_path,
        {
            "MySQLTopologyUseMutualTLS": True,
            "MySQLTopologySSLCertFile": str(junk),
            "MySQLTopologySSLPrivateKeyFile": str(junk),
        },
    )
    assert message.startswith(f"MySQLTopologySSLCertFile: cannot use {junk} with {junk}: ")


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    assert one_line_error(tmp_path, {"MySQLTopologySSLCertFile": "/c.pem"}) == (
        "MySQLTopologySSLCertFile: MySQLTopologySSLCertFile and MySQLTopologySSLPrivateKeyFile "
        "go together"
    )


def test_tls_files_without_tls_are_a_warning(tmp_path: Path) -> None:
    warned = load(tmp_path, {"MySQLTopologySSLCAFile": "/ca.pem"}).warnings
    assert warned == (
        "MySQLTopologySSLCAFile is set but MySQLTopologyUseMutualTLS is not: topology servers "
        "are reached without TLS (as orchestrator does)",
    )


def test_settings_built_in_code_check_pairing_too() -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(MySQLTopologySSLPrivateKeyFile="/k.pem")
