"""``BackendDB`` as orchestrator spells it, and the MySQL store's ``MySQLOrchestrator*``
settings: credentials file, ``${ENV}`` password, TLS pairing, one-line errors, no secret in
``repr``; they reach the store (``MySQLBackend``) and the children of ``orchestrator up``."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from orchestrator_api.store.mysql import MySQLBackend, tls_context
from orchestrator_cli.local_stack import api_settings, common_settings
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError, StoreError
from tests.unit.test_config_orchestrator_keys import load as loaded
from tests.unit.test_config_orchestrator_keys import one_line_error

pytestmark = pytest.mark.unit

MYSQL = {
    "MySQLOrchestratorHost": "backend.example",
    "MySQLOrchestratorDatabase": "orchestrator",
    "MySQLOrchestratorUser": "orc_server_user",
    "MySQLOrchestratorPassword": "orc_server_password",
}


def load(
    tmp_path: Path, document: dict[str, object], env: dict[str, str] | None = None
) -> Settings:
    return loaded(tmp_path, document, env).settings


def test_orchestrator_backend_names(tmp_path: Path) -> None:
    assert load(tmp_path, {}).BackendDB == "sqlite"  # no file, no server: the embedded store
    assert load(tmp_path, {"BackendDB": "sqlite3"}).BackendDB == "sqlite"
    assert load(tmp_path, {"BackendDB": "sqlite"}).BackendDB == "sqlite"
    assert load(tmp_path, {"BackendDB": "mysql", **MYSQL}).BackendDB == "mysql"
    assert load(tmp_path, {"BackendDB": "MySQL", **MYSQL}).BackendDB == "mysql"
    # orchestrator's default is mysql: its configurations name the host and omit BackendDB
    assert load(tmp_path, MYSQL).BackendDB == "mysql"
    assert load(tmp_path, {"BackendDB": "sqlite3", **MYSQL}).BackendDB == "sqlite"
    assert load(tmp_path, {"BackendDB": ""}).BackendDB == "sqlite"
    assert load(tmp_path, {"BackendDB": "", **MYSQL}).BackendDB == "mysql"
    env = {f"ORCHESTRATOR_{key}": str(value) for key, value in MYSQL.items()}
    assert load(tmp_path, {}, env).BackendDB == "mysql"


def test_an_orchestrator_configuration_with_a_mysql_backend(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            **MYSQL,
            "BackendDB": "mysql",
            "MySQLOrchestratorPort": 3307,
            "MySQLOrchestratorUseMutualTLS": True,
            "MySQLOrchestratorSSLCAFile": "/etc/ssl/ca.pem",
            "MySQLOrchestratorSSLCertFile": "/etc/ssl/client.pem",
            "MySQLOrchestratorSSLPrivateKeyFile": "/etc/ssl/client.key",
            "MySQLOrchestratorSSLSkipVerify": False,
            "MySQLOrchestratorMaxPoolConnections": 16,
            "MySQLOrchestratorReadTimeoutSeconds": 12,
            "MySQLOrchestratorRejectReadOnly": True,
            "MySQLConnectTimeoutSeconds": 1,
        },
    )
    backend = MySQLBackend.from_settings(settings)
    assert backend == MySQLBackend(
        host="backend.example",
        port=3307,
        database="orchestrator",
        user="orc_server_user",
        password="orc_server_password",
        use_tls=True,
        ssl_ca_file="/etc/ssl/ca.pem",
        ssl_cert_file="/etc/ssl/client.pem",
        ssl_key_file="/etc/ssl/client.key",
        max_connections=16,
        connect_timeout=1,
        read_timeout=12,
        reject_read_only=True,
    )
    assert backend.where == "backend.example:3307/orchestrator"
    assert backend.schema_lock == "orchestrator.schema.orchestrator"
    for text in (repr(settings), repr(backend)):
        assert "orc_server_password" not in text
    defaults = MySQLBackend.from_settings(load(tmp_path, MYSQL))
    assert (defaults.port, defaults.max_connections, defaults.read_timeout) == (3306, 128, 30)
    assert (defaults.connect_timeout, defaults.use_tls, defaults.reject_read_only) == (
        2,
        False,
        False,
    )


def test_credentials_file_and_environment_password(tmp_path: Path) -> None:
    credentials = tmp_path / "orchestrator-backend.cnf"
    credentials.write_text("[client]\nuser = from_file\npassword = file_secret\n")
    document = {**MYSQL, "MySQLOrchestratorCredentialsConfigFile": str(credentials)}
    settings = load(tmp_path, document)
    assert (settings.MySQLOrchestratorUser, settings.MySQLOrchestratorPassword) == (
        "from_file",
        "file_secret",
    )
    assert settings.MySQLTopologyUser == ""  # the topology credentials are separate
    with_env = load(
        tmp_path, {**MYSQL, "MySQLOrchestratorPassword": "${ORC_DB_PASS}"}, {"ORC_DB_PASS": "s3"}
    )
    assert with_env.MySQLOrchestratorPassword == "s3"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {**MYSQL, "MySQLOrchestratorPassword": "${ORC_DB_PASS}"})
    assert str(caught.value) == (
        "MySQLOrchestratorPassword: names the environment variable ORC_DB_PASS, not set"
    )
    missing = {**MYSQL, "MySQLOrchestratorCredentialsConfigFile": str(tmp_path / "none.cnf")}
    with pytest.raises(ConfigError, match=r"^MySQLOrchestratorCredentialsConfigFile: cannot read"):
        load(tmp_path, missing)
    credentials.write_text("[mysql]\nuser = x\n")
    with pytest.raises(
        ConfigError, match=r"MySQLOrchestratorCredentialsConfigFile: .* no \[client\]"
    ):
        load(tmp_path, document)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"BackendDB": "mysql"}, "BackendDB: 'mysql' needs MySQLOrchestratorHost"),
        (
            {**MYSQL, "MySQLOrchestratorDatabase": ""},
            "BackendDB: 'mysql' needs MySQLOrchestratorDatabase",
        ),
        ({**MYSQL, "MySQLOrchestratorUser": ""}, "BackendDB: 'mysql' needs MySQLOrchestratorUser"),
        ({**MYSQL, "MySQLOrchestratorPort": 0}, "MySQLOrchestratorPort: Input should be greater"),
        ({**MYSQL, "MySQLOrchestratorDatabase": "orc db"}, "MySQLOrchestratorDatabase: expected"),
        (
            {**MYSQL, "MySQLOrchestratorReadTimeoutSeconds": 0},
            "MySQLOrchestratorReadTimeoutSeconds:",
        ),
        (
            {**MYSQL, "MySQLOrchestratorMaxPoolConnections": 0},
            "MySQLOrchestratorMaxPoolConnections:",
        ),
        (
            {**MYSQL, "MySQLOrchestratorUseMutualTLS": True, "MySQLOrchestratorSSLCertFile": "c"},
            "MySQLOrchestratorSSLCertFile: MySQLOrchestratorSSLCertFile and "
            "MySQLOrchestratorSSLPrivateKeyFile go together",
        ),
        ({"BackendDB": "oracle"}, "BackendDB: Input should be 'sqlite', 'postgres' or 'mysql'"),
    ],
)
def test_bad_mysql_store_settings_stop_start_up_with_one_line(
    tmp_path: Path, document: dict[str, object], expected: str
) -> None:
    message = one_line_error(tmp_path, document)
    assert message.startswith(expected), message
    assert "orc_server_password" not in message


def test_tls_files_without_tls_are_a_warning(tmp_path: Path) -> None:
    warned = loaded(tmp_path, {**MYSQL, "MySQLOrchestratorSSLCAFile": "/ca.pem"}).warnings
    assert warned == (
        "MySQLOrchestratorSSLCAFile is set but MySQLOrchestratorUseMutualTLS is not: the MySQL "
        "store is reached without TLS (as orchestrator does)",
    )
    tls = {**MYSQL, "MySQLOrchestratorSSLCAFile": "/ca.pem", "MySQLOrchestratorUseMutualTLS": True}
    assert loaded(tmp_path, tls).warnings == ()


def test_tls_context_names_the_file_it_cannot_use(tmp_path: Path) -> None:
    backend = MySQLBackend(host="h", database="d", user="u")
    assert tls_context(backend) is None
    assert tls_context(MySQLBackend(host="h", database="d", user="u", use_tls=True)) is not None
    relaxed = tls_context(
        MySQLBackend(host="h", database="d", user="u", use_tls=True, ssl_skip_verify=True)
    )
    assert relaxed is not None
    assert (relaxed.verify_mode, relaxed.check_hostname) == (ssl.CERT_NONE, False)
    with pytest.raises(StoreError, match=r"^MySQLOrchestratorSSLCAFile: cannot use"):
        tls_context(
            MySQLBackend(
                host="h", database="d", user="u", use_tls=True, ssl_ca_file=str(tmp_path / "x")
            )
        )
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(StoreError, match=r"^MySQLOrchestratorSSLCertFile: cannot use"):
        tls_context(
            MySQLBackend(
                host="h",
                database="d",
                user="u",
                use_tls=True,
                ssl_cert_file=str(tmp_path / "cert.pem"),
                ssl_key_file=str(tmp_path / "cert.pem"),
            )
        )


def test_orchestrator_up_hands_the_store_settings_to_the_api(tmp_path: Path) -> None:
    settings = load(tmp_path, {**MYSQL, "MySQLOrchestratorPort": 3307})
    document = api_settings(
        common_settings(
            settings, nats_servers=[], etcd_endpoints=[], seeds=[], sandbox_credentials=True
        ),
        tmp_path,
    )
    child = Settings.model_validate(document)
    assert MySQLBackend.from_settings(child) == MySQLBackend.from_settings(settings)
    assert child.BackendDB == "mysql"


def test_the_topology_password_may_name_an_environment_variable(tmp_path: Path) -> None:
    document = {"MySQLTopologyUser": "orc", "MySQLTopologyPassword": "${ORC_TOPOLOGY_PASS}"}
    settings = load(tmp_path, document, {"ORC_TOPOLOGY_PASS": "t0p"})
    assert settings.MySQLTopologyPassword == "t0p"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, document)
    assert str(caught.value) == (
        "MySQLTopologyPassword: names the environment variable ORC_TOPOLOGY_PASS, not set"
    )
