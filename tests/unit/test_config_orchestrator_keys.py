"""orchestrator's configuration keys (issue 10): keys read under orchestrator's name in another
unit, the API and HTTPS settings, and the environment's ``_FILE`` names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator_shared.analysis import AnalysisOptions
from orchestrator_shared.config import CONVERSIONS, LoadedSettings, Settings, load_settings
from orchestrator_shared.errors import ConfigError

pytestmark = pytest.mark.unit

NO_DEFAULT_FILE = Path("/nonexistent/orchestrator.conf.json")
DAY = 86400


def load(
    tmp_path: Path, document: dict[str, object] | None = None, env: dict[str, str] | None = None
) -> LoadedSettings:
    path = None
    if document is not None:
        path = tmp_path / "orchestrator.conf.json"
        path.write_text(json.dumps(document))
    return load_settings(path, environ=env or {}, default_path=NO_DEFAULT_FILE)


def one_line_error(tmp_path: Path, document: dict[str, object]) -> str:
    """The ConfigError ``document`` stops start-up with, checked to be one line."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, document)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- keys in minutes read into our settings in seconds ------------------------------------------


def test_every_conversion_targets_a_setting_of_ours() -> None:
    for key, conversion in CONVERSIONS.items():
        assert conversion.target in Settings.model_fields, key
        assert key not in Settings.model_fields, key


@pytest.mark.parametrize(
    ("key", "target", "upper"),
    [
        (
            "RecoveryPeriodBlockMinutes",
            "RecoveryPeriodBlockSeconds",
            "RECOVERY_PERIOD_BLOCK_MINUTES",
        ),
        (
            "MasterFailoverLostInstancesDowntimeMinutes",
            "LostInRecoveryDowntimeSeconds",
            "MASTER_FAILOVER_LOST_INSTANCES_DOWNTIME_MINUTES",
        ),
    ],
)
def test_minutes_are_read_as_seconds_from_file_environment_and_secret_file(
    tmp_path: Path, key: str, target: str, upper: str
) -> None:
    from_file = load(tmp_path, {key: 7})
    assert getattr(from_file.settings, target) == 420
    assert from_file.warnings == ()
    for env in ({f"ORCHESTRATOR_{key}": "8"}, {f"ORCHESTRATOR_{upper}": " 8 "}):
        assert getattr(load(tmp_path, env=env).settings, target) == 480, env
    secret = tmp_path / "minutes"
    secret.write_text("9\n")
    from_secret = load(tmp_path, env={f"ORCHESTRATOR_{key}_FILE": str(secret)})
    assert getattr(from_secret.settings, target) == 540


def test_our_key_in_seconds_wins_within_one_source_and_says_so(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "RecoveryPeriodBlockMinutes": 5,
            "RecoveryPeriodBlockSeconds": 30,
            "LostInRecoveryDowntimeSeconds": 120,
            "MasterFailoverLostInstancesDowntimeMinutes": 10,
        },
    )
    assert loaded.settings.RecoveryPeriodBlockSeconds == 30
    assert loaded.settings.LostInRecoveryDowntimeSeconds == 120
    where = tmp_path / "orchestrator.conf.json"
    assert loaded.warnings == (
        f"RecoveryPeriodBlockMinutes in {where} is ignored: RecoveryPeriodBlockSeconds is set "
        "there too",
        f"MasterFailoverLostInstancesDowntimeMinutes in {where} is ignored: "
        "LostInRecoveryDowntimeSeconds is set there too",
    )
    env = {
        "ORCHESTRATOR_RecoveryPeriodBlockMinutes": "5",
        "ORCHESTRATOR_RECOVERY_PERIOD_BLOCK_SECONDS": "45",
    }
    assert load(tmp_path, env=env).settings.RecoveryPeriodBlockSeconds == 45


def test_a_later_source_wins_whichever_key_it_uses(tmp_path: Path) -> None:
    """The environment overrides the file, in minutes or seconds alike."""
    loaded = load(
        tmp_path,
        {"RecoveryPeriodBlockSeconds": 30},
        {"ORCHESTRATOR_RecoveryPeriodBlockMinutes": "2"},
    )
    assert loaded.settings.RecoveryPeriodBlockSeconds == 120
    loaded = load(
        tmp_path,
        {"RecoveryPeriodBlockMinutes": 2},
        {"ORCHESTRATOR_RecoveryPeriodBlockSeconds": "15"},
    )
    assert loaded.settings.RecoveryPeriodBlockSeconds == 15


def test_orchestrators_recovery_period_block_cases(tmp_path: Path) -> None:
    """orchestrator's own test table (config_test.go, TestRecoveryPeriodBlock), given as
    explicit keys: the seconds win, minutes count when the seconds are not given."""
    cases = [
        ({"RecoveryPeriodBlockSeconds": 0, "RecoveryPeriodBlockMinutes": 0}, 0),
        ({"RecoveryPeriodBlockSeconds": 30, "RecoveryPeriodBlockMinutes": 1}, 30),
        ({"RecoveryPeriodBlockMinutes": 2}, 120),
        ({"RecoveryPeriodBlockSeconds": 15, "RecoveryPeriodBlockMinutes": 0}, 15),
        ({}, 3600),
    ]
    for document, seconds in cases:
        assert load(tmp_path, document).settings.RecoveryPeriodBlockSeconds == seconds, document


def test_lost_instances_downtime_of_zero_is_ignored_as_orchestrator_ignores_it(
    tmp_path: Path,
) -> None:
    """orchestrator's sample config says 0, and orchestrator downtimes lost instances anyway:
    0 under its name keeps ours (with a warning); our own key turns the downtime off."""
    loaded = load(tmp_path, {"MasterFailoverLostInstancesDowntimeMinutes": 0})
    assert loaded.settings.LostInRecoveryDowntimeSeconds == DAY
    [warning] = loaded.warnings
    assert warning.startswith("MasterFailoverLostInstancesDowntimeMinutes: 0 in ")
    assert "LostInRecoveryDowntimeSeconds keeps its value" in warning
    ours = load(tmp_path, {"LostInRecoveryDowntimeSeconds": 0}).settings
    assert ours.LostInRecoveryDowntimeSeconds == 0
    block = load(tmp_path, {"RecoveryPeriodBlockMinutes": 0}).settings
    assert block.RecoveryPeriodBlockSeconds == 0  # a real 0 there (no anti-flapping block)


@pytest.mark.parametrize("value", ["soon", -1, 1.5, True, None, "-3", [1]])
def test_a_bad_value_under_orchestrators_key_names_that_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"MasterFailoverLostInstancesDowntimeMinutes": value})
    assert str(caught.value) == (
        "MasterFailoverLostInstancesDowntimeMinutes: expected a whole number of minutes, "
        f"got {value!r}"
    )


def test_bad_minutes_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^RecoveryPeriodBlockMinutes: expected a whole number"):
        load(tmp_path, env={"ORCHESTRATOR_RecoveryPeriodBlockMinutes": "1h"})


# --- keys we do not implement are named, never fatal ----------------------------------------


def test_orchestrator_keys_we_do_not_implement_are_each_a_warning(tmp_path: Path) -> None:
    document = {
        "SSLSkipVerify": False,
        "DiscoveryPollSeconds": 5,
        "AgentsUseSSL": False,
        "UseSSL": False,
        "SSLCertFile": "",
        "SSLValidOUs": [],
    }
    loaded = load(tmp_path, document)
    where = tmp_path / "orchestrator.conf.json"
    assert loaded.warnings == tuple(
        f"unknown setting {key!r} in {where} is ignored"
        for key in ("SSLSkipVerify", "DiscoveryPollSeconds", "AgentsUseSSL")
    )


# --- the environment's names ending in _FILE ----------------------------------------------------


def test_a_setting_named_with_file_is_a_plain_value_unless_the_name_without_it_is_a_setting(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "cert-path"
    secret.write_text("/etc/orchestrator/from-secret.pem\n")
    settings = load(
        tmp_path,
        env={
            "ORCHESTRATOR_SSL_PRIVATE_KEY_FILE": "/etc/orchestrator/key.pem",
            "ORCHESTRATOR_SSL_CERT_FILE": "/etc/orchestrator/cert.pem",
            "ORCHESTRATOR_ETCD_CA_CERT_FILE": "/etc/etcd/ca.pem",
            "ORCHESTRATOR_SQLite3DataFile": "/var/lib/orchestrator.db",
        },
    ).settings
    assert settings.SSLPrivateKeyFile == "/etc/orchestrator/key.pem"
    assert settings.SSLCertFile == "/etc/orchestrator/cert.pem"
    assert settings.EtcdCACertFile == "/etc/etcd/ca.pem"
    assert settings.SQLite3DataFile == "/var/lib/orchestrator.db"
    from_secret = load(tmp_path, env={"ORCHESTRATOR_SSLCertFile_FILE": str(secret)}).settings
    assert from_secret.SSLCertFile == "/etc/orchestrator/from-secret.pem"


def test_a_secret_file_wins_over_the_plain_variable(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    for env in (
        {"ORCHESTRATOR_HTTPAuthPassword_FILE": str(secret), "ORCHESTRATOR_HTTPAuthPassword": "x"},
        {"ORCHESTRATOR_HTTPAuthPassword": "x", "ORCHESTRATOR_HTTPAuthPassword_FILE": str(secret)},
    ):
        assert load(tmp_path, env=env).settings.HTTPAuthPassword == "from-file"


# --- HTTPS and the API's keys ---------------------------------------------------------------


def test_api_defaults_are_orchestrators() -> None:
    settings = Settings()
    assert (settings.UseSSL, settings.UseMutualTLS, settings.SSLValidOUs) == (False, False, ())
    assert (settings.StatusEndpoint, settings.StatusOUVerify) == ("/api/status", False)
    assert settings.ReasonableReplicationLagSeconds == 10
    assert settings.CandidateInstanceExpireMinutes == 60


def test_https_settings_from_an_orchestrator_config(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "UseSSL": True,
            "SSLCertFile": "/etc/ssl/orc.pem",
            "SSLPrivateKeyFile": "/etc/ssl/orc.key",
            "SSLPrivateKeyPassword": "pem-passphrase",
            "UseMutualTLS": True,
            "SSLCAFile": "/etc/ssl/ca.pem",
            "SSLValidOUs": ["dba", "ops"],
            "StatusEndpoint": "/api/lb-check",
            "StatusOUVerify": True,
        },
    )
    settings = loaded.settings
    assert settings.UseSSL and settings.UseMutualTLS and settings.StatusOUVerify
    assert settings.SSLValidOUs == ("dba", "ops")
    assert settings.StatusEndpoint == "/api/lb-check"
    assert "pem-passphrase" not in repr(settings)
    env = {"ORCHESTRATOR_SSLValidOUs": "dba, ops", "ORCHESTRATOR_USE_SSL": "false"}
    assert load(tmp_path, env=env).settings.SSLValidOUs == ("dba", "ops")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"UseSSL": True}, "UseSSL: needs SSLCertFile and SSLPrivateKeyFile"),
        ({"UseSSL": True, "SSLCertFile": "c.pem"}, "UseSSL: needs SSLCertFile and"),
        ({"UseMutualTLS": True, "SSLCAFile": "ca.pem"}, "UseMutualTLS: needs UseSSL"),
        (
            {"UseSSL": True, "SSLCertFile": "c", "SSLPrivateKeyFile": "k", "UseMutualTLS": True},
            "UseMutualTLS: needs SSLCAFile, the CA that signs the clients' certificates",
        ),
        ({"StatusEndpoint": "api/status"}, "StatusEndpoint: expected a path such as"),
        ({"ReasonableReplicationLagSeconds": -1}, "ReasonableReplicationLagSeconds: Input"),
        ({"CandidateInstanceExpireMinutes": 0}, "CandidateInstanceExpireMinutes: Input should"),
        ({"SSLValidOUs": "dba"}, "SSLValidOUs: expected a JSON list"),
    ],
)
def test_api_settings_that_cannot_work_stop_start_up_with_one_line(
    tmp_path: Path, document: dict[str, object], expected: str
) -> None:
    message = one_line_error(tmp_path, document)
    assert message.startswith(expected), message


def test_lag_thresholds_reach_the_analysis() -> None:
    """``ReasonableLockedSemiSyncMasterSeconds`` 0 (orchestrator's default) falls back to
    ``ReasonableReplicationLagSeconds``, as in orchestrator."""
    options = AnalysisOptions.from_settings(Settings(ReasonableReplicationLagSeconds=25))
    assert options.reasonable_replication_lag_seconds == 25
    assert options.reasonable_locked_semi_sync_master_seconds == 25
    explicit = Settings(ReasonableReplicationLagSeconds=25, ReasonableLockedSemiSyncMasterSeconds=4)
    assert AnalysisOptions.from_settings(explicit).reasonable_locked_semi_sync_master_seconds == 4
    assert (
        AnalysisOptions.from_settings(Settings()).reasonable_locked_semi_sync_master_seconds == 10
    )
