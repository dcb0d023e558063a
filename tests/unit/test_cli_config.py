"""What ``orchestrator -c`` takes from ``-config FILE`` (the API address, credentials),
``dump-config``'s masking rule, and ``--debug`` / ``--stack`` on canned answers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Literal

import httpx
import pytest
from pydantic import Field

from orchestrator_cli.client import run_client
from orchestrator_cli.client_config import (
    MASK,
    client_config,
    mask_dsn,
    mask_text,
    masked_settings,
    secret_settings,
)
from orchestrator_shared.config import LoadedSettings, Settings
from tests.unit.test_cli_client import FakeApi as Api

pytestmark = pytest.mark.unit


def loaded(settings: Settings, source: str = "/etc/orchestrator.conf.json") -> LoadedSettings:
    return LoadedSettings(settings=settings, source=source, warnings=())


# --- the API address and credentials of a configuration ---------------------------------------


TLS = {
    "UseSSL": True,
    "SSLCertFile": "/etc/orch/cert.pem",
    "SSLPrivateKeyFile": "/etc/orch/key.pem",
}


@pytest.mark.parametrize(
    ("settings", "api"),
    [
        (Settings(), "http://127.0.0.1:3000"),
        (Settings(ListenAddress=":3000"), "http://127.0.0.1:3000"),
        (Settings(ListenAddress="0.0.0.0:3001"), "http://127.0.0.1:3001"),
        (Settings(ListenAddress="[::]:3002"), "http://[::1]:3002"),
        (Settings(ListenAddress="[::1]:3003"), "http://[::1]:3003"),
        (Settings(ListenAddress="10.0.0.5:3004"), "http://10.0.0.5:3004"),
        (Settings(ListenAddress=":3000", URLPrefix="/orc/"), "http://127.0.0.1:3000/orc"),
        (Settings(URLPrefix="orc", **TLS), "https://127.0.0.1:3000/orc"),
    ],
)
def test_the_api_address_of_a_configuration(settings: Settings, api: str) -> None:
    assert client_config(loaded(settings)).api == api


def test_basic_credentials_come_from_the_configuration_only_for_basic_methods() -> None:
    basic = Settings(AuthenticationMethod="basic", HTTPAuthUser="ops", HTTPAuthPassword="pw")
    assert client_config(loaded(basic)).basic == ("ops", "pw")
    multi = Settings(AuthenticationMethod="multi", HTTPAuthUser="ops", HTTPAuthPassword="pw")
    assert client_config(loaded(multi)).basic == ("ops", "pw")
    token = Settings(AuthenticationMethod="token", APITokens={"t0k": "admin"})
    assert client_config(loaded(token)).basic is None
    assert client_config(loaded(Settings())).basic is None


# --- dump-config: secrets masked by rule ------------------------------------------------------


class Later(Settings):
    """Settings other parts of the project may add: masked by the rule, with no list to edit."""

    RaftSecret: str = ""
    ConsulAclToken: str = ""
    SomeOtherDSN: str = ""
    HiddenThing: str = Field(default="", repr=False)
    ReadOnlyTokens: dict[str, Literal["read"]] = Field(default_factory=dict)
    WebhookPasswords: tuple[str, ...] = ()
    PlainSetting: str = ""


def test_the_rule_finds_every_secret_setting() -> None:
    assert secret_settings() >= {
        "MySQLTopologyPassword",
        "EtcdPassword",
        "HTTPAuthPassword",
        "APITokens",
        "PostgreSQLDSN",
        "MySQLOrchestratorPassword",
        "SSLPrivateKeyPassword",
    }
    assert secret_settings(Later) - secret_settings() == {
        "RaftSecret",
        "ConsulAclToken",
        "SomeOtherDSN",
        "HiddenThing",
        "ReadOnlyTokens",
        "WebhookPasswords",
    }
    assert "ListenAddress" not in secret_settings()
    assert "MySQLTopologyUser" not in secret_settings()


def test_no_secret_value_reaches_the_dump() -> None:
    secrets = {
        "MySQLTopologyPassword": "s1-topology",
        "EtcdPassword": "s2-etcd",
        "HTTPAuthPassword": "s3-http",
        "MySQLOrchestratorPassword": "s4-backend",
        "RaftSecret": "s5-raft",
        "ConsulAclToken": "s6-consul",
        "HiddenThing": "s7-hidden",
    }
    settings = Later(
        **secrets,
        EtcdUser="etcd-user",
        EtcdAllowInsecurePassword=True,
        AuthenticationMethod="token",
        APITokens={"s8-admin-token": "admin", "s9-read-token": "read"},
        ReadOnlyTokens={"s10-ro": "read"},
        BackendDB="postgres",
        PostgreSQLDSN="postgresql://orch:s11-pg@db.example:5432/orchestrator",
        SomeOtherDSN="orch:s12-go@tcp(db:3306)/orchestrator",
        WebhookPasswords=("s13-hook",),
        NATSServers=("nats://bus:s14-nats@127.0.0.1:4222",),
        PlainSetting="https://user:s15-url@example.com/x",
        PostFailoverProcesses=("curl -s 'https://ops:s16-hook@hooks.example/failover'",),
    )
    dumped = masked_settings(settings)
    text = json.dumps(dumped)
    for number in range(1, 17):
        assert f"s{number}-" not in text, number
    for name in secrets:
        assert dumped[name] == MASK
    assert dumped["APITokens"] == {f"{MASK}1": "admin", f"{MASK}2": "read"}  # roles kept
    assert dumped["ReadOnlyTokens"] == {f"{MASK}1": "read"}
    assert dumped["PostgreSQLDSN"] == f"postgresql://orch:{MASK}@db.example:5432/orchestrator"
    assert dumped["SomeOtherDSN"] == f"orch:{MASK}@tcp(db:3306)/orchestrator"
    assert dumped["WebhookPasswords"] == [MASK]
    assert dumped["NATSServers"] == [f"nats://bus:{MASK}@127.0.0.1:4222"]
    assert dumped["EtcdUser"] == "etcd-user"  # not a secret
    assert dumped["MySQLTopologyUser"] == ""
    assert dumped["ListenAddress"] == "127.0.0.1:3000"


def test_unset_secrets_say_so_and_keys_are_orchestrators() -> None:
    dumped = masked_settings(Settings())
    assert dumped["MySQLTopologyPassword"] == ""
    assert dumped["APITokens"] == {}
    assert list(dumped) == list(Settings.model_fields)
    assert dumped["InstancePollSeconds"] == 5
    assert dumped["RecoverMasterClusterFilters"] == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:p@h/db", f"postgresql://u:{MASK}@h/db"),
        ("postgresql://u:p@ss/w@h:5432/db", f"postgresql://u:{MASK}@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?user=u&password=p&sslmode=require", None),
        ("host=h user=u password=p dbname=d", f"host=h user=u password={MASK} dbname=d"),
        ("host=h password='p q' dbname=d", f"host=h password='{MASK}' dbname=d"),
        ("u:p@tcp(h:3306)/db", f"u:{MASK}@tcp(h:3306)/db"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_dsn_passwords_are_masked_and_the_rest_kept(text: str, masked: str | None) -> None:
    shown = mask_dsn(text)
    if masked is not None:
        assert shown == masked
    assert ":p@" not in shown
    assert "=p " not in shown
    assert "password=p&" not in shown


def test_urls_in_any_text_lose_their_passwords() -> None:
    assert mask_text("see http://a:b@h/x and nats://c:d@n:1") == (
        f"see http://a:{MASK}@h/x and nats://c:{MASK}@n:1"
    )
    assert mask_text("http://h/x?mail=a@b") == "http://h/x?mail=a@b"


# --- run_client: -config, dump-config, --debug, --stack ---------------------------------------


def run(
    *argv: str, api: Api | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    transport = httpx.MockTransport(api or Api({}))
    code = run_client(argv, out=out, err=err, transport=transport, environ=env or {})
    return code, out.getvalue(), err.getvalue()


CLUSTERS = [{"ClusterName": "db1:3306", "ClusterAlias": "sb"}]


def test_config_gives_the_api_address_and_credentials(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                "ListenAddress": ":3999",
                "AuthenticationMethod": "basic",
                "HTTPAuthUser": "ops",
                "HTTPAuthPassword": "pw-in-file",
                "SomeKeyWeDoNotKnow": 1,
            }
        )
    )
    api = Api({"clusters-info": (200, CLUSTERS)})
    assert run("-c", "clusters", "-config", str(config), api=api) == (0, "db1:3306\n", "")
    request = api.requests[-1]
    assert str(request.url) == "http://127.0.0.1:3999/api/clusters-info"
    assert request.headers["Authorization"].startswith("Basic ")
    # the command line and the environment win over the file
    run("-c", "clusters", f"-config={config}", "--api", "http://other:1", api=api)
    assert api.requests[-1].url.host == "other"
    run("-c", "clusters", "-config", str(config), "-b", "me:x", api=api)
    assert api.requests[-1].headers["Authorization"] == httpx.BasicAuth("me", "x")._auth_header
    # ... except that -config names the API more precisely than ORCHESTRATOR_API
    run("-c", "clusters", "-config", str(config), api=api, env={"ORCHESTRATOR_API": "http://e:2"})
    assert api.requests[-1].url.port == 3999


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "bad configuration: config: cannot read"),
        ("{not json", "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"InstancePollSeconds": -1}', "bad configuration: InstancePollSeconds:"),
        ('{"AuthenticationMethod": "basic"}', "needs HTTPAuthUser and HTTPAuthPassword"),
    ],
)
def test_a_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    config = tmp_path / "conf.json"
    if content is not None:
        config.write_text(content)
    for command in (("-c", "clusters"), ("-c", "dump-config")):
        code, out, err = run(*command, "-config", str(config))
        assert (code, out) == (2, ""), command
        assert err.count("\n") == 1, err
        assert message in err
    assert run("-c", "clusters", "-config=")[0] == 2


def test_dump_config_prints_the_effective_settings_masked(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                "MySQLTopologyUser": "orc",
                "MySQLTopologyPassword": "topology-secret",
                "AuthenticationMethod": "token",
                "APITokens": {"the-admin-token": "admin"},
                "SlaveLagQuery": "SELECT 1",  # orchestrator's old name
                "PseudoGTIDPattern": "drop view",  # unknown here: a warning
            }
        )
    )
    env = {"ORCHESTRATOR_InstancePollSeconds": "2", "ORCHESTRATOR_EtcdPassword": "etcd-secret"}
    env |= {"ORCHESTRATOR_EtcdUser": "root", "ORCHESTRATOR_EtcdAllowInsecurePassword": "true"}
    code, out, err = run("-c", "dump-config", "-config", str(config), env=env)
    assert code == 0
    dumped = json.loads(out)
    assert dumped["MySQLTopologyUser"] == "orc"
    assert dumped["MySQLTopologyPassword"] == MASK
    assert dumped["EtcdPassword"] == MASK
    assert dumped["APITokens"] == {f"{MASK}1": "admin"}
    assert dumped["InstancePollSeconds"] == 2  # the environment wins, as for the services
    assert dumped["ReplicationLagQuery"] == "SELECT 1"
    assert "secret" not in out
    assert "the-admin-token" not in out
    assert "unknown setting 'PseudoGTIDPattern'" in err
    assert "secret" not in err


def test_debug_logs_each_call_without_credentials() -> None:
    api = Api({"clusters-info": (200, CLUSTERS)})
    code, out, err = run("-c", "clusters", "-debug", "--api", "http://ops:hunter2@h:3000", api=api)
    assert (code, out) == (0, "db1:3306\n")
    warning, *lines = err.splitlines()
    assert warning.startswith("orchestrator: warning: --api carries a password")
    assert all(line.startswith("orchestrator: debug: ") for line in lines)
    assert "orchestrator: debug: API http://h:3000/api (from --api)" in lines
    assert any(line.endswith("GET http://h:3000/api/clusters-info") for line in lines)
    call = [line for line in lines if "-> 200 OK in " in line]
    assert len(call) == 1
    assert call[0].startswith("orchestrator: debug: GET http://h:3000/api/clusters-info -> 200")
    assert call[0].endswith(" ms")
    assert "hunter2" not in err
    unreachable = run(
        "-c", "clusters", "--api", "http://ops:hunter2@h:3000", api=Api({"x": (200, [])})
    )
    assert unreachable[0] == 1
    assert "hunter2" not in unreachable[2]
    for bad in ("ftp://h/x", "h:3000", "http://h:x", ""):
        code, _, err = run("-c", "clusters", "--api", bad)
        assert code == 2, bad
        assert "--api" in err
    token = run("-c", "clusters", "--debug", api=api, env={"ORCHESTRATOR_AUTH_TOKEN": "t0k3n"})
    assert "credentials: bearer token" in token[2]
    assert "t0k3n" not in token[2]
    assert run("-c", "clusters", api=api)[2] == ""  # quiet without -debug


def test_stack_shows_the_whole_chain() -> None:
    refusal = {"Code": "ERROR", "Message": "move-below refused: instances are not siblings"}
    api = Api({"move-below/a/3306/b/3306": (409, refusal)})
    argv = ("-c", "move-below", "-i", "a:3306", "-d", "b:3306")
    code, out, err = run(*argv, api=api)
    assert (code, out) == (1, "")
    assert err == "orchestrator: move-below refused: instances are not siblings\n"
    code, out, err = run(*argv, "-stack", api=api)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == "orchestrator: move-below refused: instances are not siblings"
    assert "  HTTP 409 Conflict from POST http://127.0.0.1:3000/api/move-below/a/3306/b/3306" in (
        lines
    )
    body = [line for line in lines if line.startswith("  response body: ")]
    assert [json.loads(line.removeprefix("  response body: ")) for line in body] == [refusal]
    assert "  stack:" in lines


def test_stack_shows_why_the_api_could_not_be_reached() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise httpx.ConnectError("connection refused", request=request) from exc

    out, err = io.StringIO(), io.StringIO()
    argv = ["-c", "clusters", "--stack", "--debug"]
    code = run_client(argv, out=out, err=err, transport=httpx.MockTransport(refuse), environ={})
    assert code == 1
    text = err.getvalue()
    assert "orchestrator: cannot reach the API at http://127.0.0.1:3000/api" in text
    assert "  caused by builtins.ConnectionRefusedError: [Errno 111] Connection refused" in text
    assert "-> no answer after" in text
