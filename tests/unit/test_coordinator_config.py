"""Coordinator settings: defaults, the timing rules checked together, secrets, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator_adapters.election import ElectionOptions
from orchestrator_adapters.etcd import EtcdOptions
from orchestrator_coordinator.main import cli
from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError

pytestmark = pytest.mark.unit

NO_DEFAULT_FILE = Path("/nonexistent/orchestrator.conf.json")


def load(
    document: dict[str, object], tmp_path: Path, env: dict[str, str] | None = None
) -> Settings:
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(json.dumps(document))
    return load_settings(path, environ=env or {}, default_path=NO_DEFAULT_FILE).settings


def error_of(document: dict[str, object], tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(document, tmp_path)
    return caught.value


def test_defaults_replace_a_crashed_leader_within_a_few_seconds(tmp_path: Path) -> None:
    settings = load({}, tmp_path)
    assert settings.EtcdLeaseTTLSeconds == 3
    assert settings.EtcdKeepAliveIntervalSeconds == 0.5
    assert settings.EtcdRequestTimeoutSeconds == 1.0
    assert settings.EtcdKeyPrefix == "/orchestrator"
    assert settings.etcd_endpoints_or_local == ["http://127.0.0.1:2379"]
    options = ElectionOptions.from_settings(settings)
    assert options.safety_margin == 0.5
    assert options.lease_ttl - options.safety_margin == 2.5  # a cut-off leader stops after this


@pytest.mark.parametrize(
    ("document", "setting", "words"),
    [
        (
            {"EtcdLeaseTTLSeconds": 3, "EtcdKeepAliveIntervalSeconds": 3},
            "EtcdKeepAliveIntervalSeconds",
            "at most a third of EtcdLeaseTTLSeconds",
        ),
        (
            {"EtcdLeaseTTLSeconds": 3, "EtcdKeepAliveIntervalSeconds": 1.5},
            "EtcdKeepAliveIntervalSeconds",
            "got 1.5",
        ),
        (
            {"EtcdLeaseTTLSeconds": 3, "EtcdRequestTimeoutSeconds": 2},
            "EtcdRequestTimeoutSeconds",
            "at most a third",
        ),
        (
            {
                "EtcdLeaseTTLSeconds": 2,
                "EtcdKeepAliveIntervalSeconds": 0.5,
                "EtcdRequestTimeoutSeconds": 0.5,
                "MySQLConnectTimeoutSeconds": 2,
            },
            "EtcdLeaseTTLSeconds",
            "above MySQLConnectTimeoutSeconds",
        ),
        ({"EtcdLeaseTTLSeconds": 0}, "EtcdLeaseTTLSeconds", "greater than 0"),
        ({"EtcdLeaseTTLSeconds": 2.5}, "EtcdLeaseTTLSeconds", "integer"),
        ({"EtcdUser": "orchestrator"}, "EtcdUser", "go together"),
        ({"EtcdCertFile": "/c.pem"}, "EtcdCertFile", "go together"),
        (
            {"EtcdEndpoints": ["http://e1:2379"], "EtcdCACertFile": "/ca.pem"},
            "EtcdEndpoints",
            "https://",
        ),
        ({"EtcdEndpoints": ["e1:2379"]}, "EtcdEndpoints", "http(s)://host:port"),
        ({"EtcdKeyPrefix": "orchestrator/"}, "EtcdKeyPrefix", "absolute key path"),
        ({"CoordinatorListenAddress": "nowhere"}, "CoordinatorListenAddress", "host:port"),
    ],
)
def test_bad_timing_and_etcd_settings_name_the_setting(
    tmp_path: Path, document: dict[str, object], setting: str, words: str
) -> None:
    error = error_of(document, tmp_path)
    assert error.setting == setting
    assert words in str(error)
    assert "\n" not in str(error)


def test_a_consistent_fast_profile_is_accepted(tmp_path: Path) -> None:
    settings = load(
        {
            "EtcdLeaseTTLSeconds": 6,
            "EtcdKeepAliveIntervalSeconds": 2,
            "EtcdRequestTimeoutSeconds": 2,
            "EtcdEndpoints": ["https://e1:2379", "https://e2:2379", "https://e3:2379"],
            "EtcdCACertFile": "/etc/etcd/ca.pem",
            "EtcdUser": "orchestrator",
            "EtcdPassword": "secret",
        },
        tmp_path,
    )
    options = EtcdOptions.from_settings(settings)
    assert options.endpoints == ("https://e1:2379", "https://e2:2379", "https://e3:2379")
    assert options.user == "orchestrator"
    assert "secret" not in repr(settings)
    assert "secret" not in repr(options)


def test_etcd_password_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "etcd-password"
    secret.write_text("s3cret\n")
    settings = load(
        {"EtcdUser": "orchestrator", "EtcdEndpoints": ["https://e1:2379"]},
        tmp_path,
        env={"ORCHESTRATOR_EtcdPassword_FILE": str(secret)},
    )
    assert settings.EtcdPassword == "s3cret"


@pytest.mark.parametrize(
    ("endpoints", "allowed", "refused"),
    [
        ([], False, True),  # the local default is http://
        (["https://e1:2379", "http://e2:2379"], False, True),
        (["http://e1:2379"], True, False),
        (["https://e1:2379"], False, False),
    ],
)
def test_an_etcd_password_over_plain_http_is_refused(
    tmp_path: Path, endpoints: list[str], allowed: bool, refused: bool
) -> None:
    config = {
        "EtcdUser": "orchestrator",
        "EtcdPassword": "etcd-pw-7",
        "EtcdEndpoints": endpoints,
        "EtcdAllowInsecurePassword": allowed,
    }
    if not refused:
        assert load(config, tmp_path).EtcdUser == "orchestrator"
        return
    with pytest.raises(ConfigError) as caught:
        load(config, tmp_path)
    assert caught.value.setting == "EtcdPassword"
    assert "clear text to http://" in caught.value.problem
    assert "EtcdAllowInsecurePassword" in caught.value.problem
    assert "etcd-pw-7" not in str(caught.value)


def test_cli_bad_config_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["orchestrator-coordinator"])
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(json.dumps({"EtcdLeaseTTLSeconds": 3, "EtcdKeepAliveIntervalSeconds": 5}))
    assert cli(["--config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "orchestrator-coordinator: bad configuration: EtcdKeepAliveIntervalSeconds:"
    )
