"""Configuration: defaults, file, environment, secret files, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.unit

NO_DEFAULT_FILE = Path("/nonexistent/orchestrator.conf.json")


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(json.dumps(document))
    return path


def load(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    return load_settings(path, environ=env or {}, default_path=NO_DEFAULT_FILE).settings


def test_defaults_need_no_file() -> None:
    loaded = load_settings(None, environ={}, default_path=NO_DEFAULT_FILE)
    assert loaded.source == "defaults"
    settings = loaded.settings
    assert settings.InstancePollSeconds == 5
    assert settings.MySQLConnectTimeoutSeconds == 2
    assert settings.MySQLDiscoveryReadTimeoutSeconds == 10
    assert settings.DiscoverByShowSlaveHosts is False
    assert settings.MasterLivenessCheckIntervalSeconds == 0.5
    assert settings.nats_servers_or_local == ["nats://127.0.0.1:4222"]


def test_file_with_orchestrator_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "MySQLTopologyUser": "orc",
            "MySQLTopologyPassword": "secret",
            "InstancePollSeconds": 1,
            "DiscoverySeeds": ["db1:3306", "[::1]:3307"],
            "DiscoveryIgnoreHostnameFilters": ["^test-"],
            "DataCenterPattern": r"\.(dc[0-9])\.",
            "NATSServers": ["nats://10.0.0.1:4222"],
            "SlaveLagQuery": "select 3",
        },
    )
    settings = load(path)
    assert settings.MySQLTopologyUser == "orc"
    assert settings.InstancePollSeconds == 1
    assert settings.seed_keys == (InstanceKey("db1", 3306), InstanceKey("::1", 3307))
    assert settings.ReplicationLagQuery == "select 3"  # legacy synonym
    assert settings.NATSServers == ("nats://10.0.0.1:4222",)
    assert "secret" not in repr(settings)


def test_unknown_keys_are_warnings_not_errors(tmp_path: Path) -> None:
    path = write(tmp_path, {"InstancePollSeconds": 2, "RaftEnabled": True})
    loaded = load_settings(path, environ={}, default_path=NO_DEFAULT_FILE)
    assert loaded.settings.InstancePollSeconds == 2
    assert loaded.warnings == (f"unknown setting 'RaftEnabled' in {path} is ignored",)


def test_environment_overrides_file_in_either_spelling(tmp_path: Path) -> None:
    path = write(tmp_path, {"InstancePollSeconds": 2, "MySQLTopologyUser": "file"})
    settings = load(
        path,
        {
            "ORCHESTRATOR_INSTANCE_POLL_SECONDS": "3",
            "ORCHESTRATOR_MySQLTopologyUser": "env",
            "ORCHESTRATOR_DiscoverySeeds": "a:1, b:2",
            "ORCHESTRATOR_NATSSERVERS": '["nats://127.0.0.1:5000"]',
            "ORCHESTRATOR_DiscoverByShowSlaveHosts": "true",
            "UNRELATED": "x",
        },
    )
    assert settings.InstancePollSeconds == 3
    assert settings.MySQLTopologyUser == "env"
    assert settings.DiscoverySeeds == ("a:1", "b:2")
    assert settings.NATSServers == ("nats://127.0.0.1:5000",)
    assert settings.DiscoverByShowSlaveHosts is True


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load(None, {"ORCHESTRATOR_MySQLTopologyPassword_FILE": str(secret)})
    assert settings.MySQLTopologyPassword == "s3cret"


def test_credentials_config_file_wins(tmp_path: Path) -> None:
    credentials = tmp_path / "orc.cnf"
    credentials.write_text("[client]\nuser = orc_user\npassword = orc_pass\n")
    path = write(
        tmp_path,
        {"MySQLTopologyUser": "plain", "MySQLTopologyCredentialsConfigFile": str(credentials)},
    )
    settings = load(path)
    assert (settings.MySQLTopologyUser, settings.MySQLTopologyPassword) == ("orc_user", "orc_pass")


@pytest.mark.parametrize(
    ("document", "env", "expected"),
    [
        ({"InstancePollSeconds": 0}, {}, "InstancePollSeconds: Input should be greater than 0"),
        ({"InstancePollSeconds": "often"}, {}, "InstancePollSeconds: Input should be a valid"),
        ({"DiscoverySeeds": ["db1:99999"]}, {}, "DiscoverySeeds: invalid instance key"),
        ({"DiscoveryIgnoreHostnameFilters": ["("]}, {}, "DiscoveryIgnoreHostnameFilters:"),
        ({"NATSServers": ["http://x"]}, {}, "NATSServers: expected nats://host:port URLs"),
        ({"MySQLTopologyUser": 7}, {}, "MySQLTopologyUser: Input should be a valid string"),
        ({}, {"ORCHESTRATOR_MySQLConnectTimeoutSeconds": "-1"}, "MySQLConnectTimeoutSeconds:"),
        ({}, {"ORCHESTRATOR_DiscoverySeeds": "[broken"}, "DiscoverySeeds: expected a JSON list"),
    ],
)
def test_bad_values_name_the_setting_on_one_line(
    tmp_path: Path, document: dict[str, object], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, document), env)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load(broken)
    listing = tmp_path / "list.json"
    listing.write_text("[]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        load(listing)
    with pytest.raises(ConfigError, match="MySQLTopologyPassword: cannot read secret file"):
        load(None, {"ORCHESTRATOR_MySQLTopologyPassword_FILE": str(tmp_path / "nope")})


def test_api_settings_and_cross_checks(tmp_path: Path) -> None:
    settings = load(
        None,
        {
            "ORCHESTRATOR_AuthenticationMethod": "token",
            "ORCHESTRATOR_APITokens": '{"t1": "admin", "t2": "read"}',
            "ORCHESTRATOR_ListenAddress": "127.0.0.1:3000",
        },
    )
    assert settings.APITokens == {"t1": "admin", "t2": "read"}
    assert "t1" not in repr(settings)
    assert load().BackendDB == "sqlite"
    for document, expected in [
        ({"AuthenticationMethod": "basic"}, "AuthenticationMethod: 'basic' needs HTTPAuthUser"),
        ({"AuthenticationMethod": "token"}, "AuthenticationMethod: 'token' needs APITokens"),
        ({"AuthenticationMethod": "kerberos"}, "AuthenticationMethod: Input should be"),
        ({"BackendDB": "postgres"}, "BackendDB: 'postgres' needs PostgreSQLDSN"),
        ({"ListenAddress": "3000"}, "ListenAddress: expected host:port or :port"),
        ({"APITokens": {"t": "root"}}, "APITokens: Input should be 'read' or 'admin'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load(write(tmp_path, document))
        assert str(caught.value).startswith(expected), str(caught.value)
    with pytest.raises(ConfigError, match="APITokens: expected a JSON object"):
        load(None, {"ORCHESTRATOR_APITokens": "t1=admin"})
