"""One redaction for logs, errors, audit and dumps (orchestrator_shared.redact)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError, OperationRefused
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.logging import configure_logging
from orchestrator_shared.redact import (
    MASK,
    is_secret_setting,
    redact,
    register_secrets,
    secret_values,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("CHANGE MASTER TO master_host='h', MASTER_PASSWORD='pw1x', master_port=3", "pw1x"),
        ("CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD = 'rp-9', SOURCE_HOST='h'", "rp-9"),
        ("CREATE USER 'r'@'%' IDENTIFIED BY 'idby-secret'", "idby-secret"),
        ('ALTER USER x IDENTIFIED WITH mysql_native_password BY "dq-secret"', "dq-secret"),
        ("nats://orc:natspw@127.0.0.1:4222 refused", "natspw"),
        ("host=h password=libpq-pw dbname=x", "libpq-pw"),
        ("http://h/x?user=a&token=qtok123&b=1", "qtok123"),
        ("MYSQL_PASSWORD=envpw\nPATH=/bin", "envpw"),
        ('{"HTTPAuthPassword": "jsonpw", "x": 1}', "jsonpw"),
        ("Authorization: Bearer abcdefgh12345", "abcdefgh12345"),
        ("Authorization: Basic b3JjOnNlY3JldA==", "b3JjOnNlY3JldA=="),
        ("api_secret='quoted one'", "quoted one"),
    ],
)
def test_secrets_by_shape_are_masked(text: str, secret: str) -> None:
    shown = redact(text)
    assert secret not in shown
    assert MASK in shown


def test_ordinary_text_is_kept() -> None:
    for text in (
        "relocated 127.0.0.1:3306 below 127.0.0.1:3307",
        "http://h/x?mail=a@b",
        "master_host='db1', master_port=3306",
        "",
    ):
        assert redact(text) == text


def test_registered_values_are_masked_anywhere() -> None:
    register_secrets(["unshaped-value-42", "ab"])  # too short values are never registered
    assert redact("it said unshaped-value-42 to me") == f"it said {MASK} to me"
    assert redact("ab cd") == "ab cd"


def test_secret_setting_names() -> None:
    for name in ("HTTPAuthPassword", "APITokens", "PostgreSQLDSN", "SomeSecret", "SigningKey"):
        assert is_secret_setting(name)
    for name in ("SSLPrivateKeyFile", "EtcdKeyPrefix", "HTTPAuthUser", "ListenAddress"):
        assert not is_secret_setting(name)
    assert is_secret_setting("Anything", in_repr=False)


def test_secret_values_of_settings() -> None:
    settings = Settings(
        MySQLTopologyPassword="topo-pw",
        APITokens={"tok-one-xyz": "admin"},
        HTTPAuthUser="ops",
    )
    values = secret_values(settings)
    assert "topo-pw" in values
    assert "tok-one-xyz" in values
    assert "ops" not in values


def test_errors_are_redacted() -> None:
    error = OperationRefused("CHANGE MASTER TO master_password='refused-pw'")
    assert "refused-pw" not in str(error)
    config_error = ConfigError("NATSServers", "nats://u:cfgpw@h:1 is unreachable")
    assert "cfgpw" not in str(config_error)


def test_a_bad_secret_setting_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={"ORCHESTRATOR_APITokens": '{"tok-in-error-xyz": "root"}'},
            default_path=_nowhere(),
        )
    assert "APITokens" in str(caught.value)
    assert "tok-in-error-xyz" not in str(caught.value)
    assert "root" not in str(caught.value)


def _nowhere() -> Path:
    return Path("/nonexistent/orchestrator.conf.json")


def test_loading_settings_registers_their_secrets() -> None:
    load_settings(
        environ={"ORCHESTRATOR_MySQLTopologyPassword": "loaded-topo-secret"},
        default_path=_nowhere(),
    )
    assert "loaded-topo-secret" not in redact("connect failed: loaded-topo-secret")


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    register_secrets(["logged-secret-value"])
    configure_logging("test")
    try:
        logging.getLogger("x").warning("connecting to nats://a:urlpw@h:1 with logged-secret-value")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "connecting to" in err
    assert "urlpw" not in err
    assert "logged-secret-value" not in err


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "a." * 100_000,
        '{"' + "x" * 200_000 + '": 1}',
        "x=" * 100_000,
        "ab://" * 40_000,
    ],
)
def test_redaction_is_linear_on_long_lines(text: str) -> None:
    """A log line carrying a long payload must not stall the service (it took seconds once)."""
    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 1.0


def test_audit_events_are_redacted_when_built() -> None:
    event = AuditEvent(type="relocate", message="CHANGE MASTER TO master_password='audit-pw'")
    assert "audit-pw" not in event.message
    assert "audit-pw" not in event.to_json().decode()
