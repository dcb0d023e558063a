"""``orchestrator -c ...`` against canned API answers (orchestrator's real responses)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_cli.client import run_client

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "orchestrator"


def sample(name: str) -> Any:
    path = SAMPLES / f"{name}.json"
    if not path.exists():
        pytest.fail(f"orchestrator's recorded API answer is missing: {path}")
    return json.loads(path.read_text())


def api_path(request: httpx.Request) -> str:
    """The request's path below ``/api/``, with its query (what :class:`FakeApi` answers by)."""
    path = request.url.path.removeprefix("/api/")
    return path + (f"?{request.url.query.decode()}" if request.url.query else "")


class FakeApi:
    """Answers by path; records requests."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.get(
            api_path(request), (404, {"Code": "ERROR", "Message": "no route"})
        )
        return httpx.Response(status, json=body)


def run(argv: list[str], api: FakeApi, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = run_client(argv, out=out, transport=httpx.MockTransport(api), environ=env or {})
    return code, out.getvalue()


def test_read_commands_print_like_orchestrator_client() -> None:
    api = FakeApi(
        {
            "clusters-info": (200, sample("clusters-info")),
            "instance/127.0.0.1/22307": (200, sample("instance")),
            "instance-replicas/127.0.0.1/22306": (200, sample("instance-replicas")),
            "topology/sb": (200, sample("topology")),
            "cluster/sb": (200, sample("cluster")),
            "master/sb": (200, sample("master")),
            "search?s=22308": (200, sample("search")),
        }
    )
    assert run(["-c", "clusters"], api) == (0, "127.0.0.1:22306\n")
    # orchestrator-client's comma (orchestrator's own CLI uses a tab)
    assert run(["-c", "clusters-alias"], api) == (0, "127.0.0.1:22306,sb\n")
    assert run(["-c", "which-master", "-i", "127.0.0.1:22307"], api) == (0, "127.0.0.1:22306\n")
    code, text = run(["-c", "which-replicas", "-i", "127.0.0.1:22306"], api)
    assert code == 0
    assert text.splitlines() == ["127.0.0.1:22307", "127.0.0.1:22308", "127.0.0.1:22309"]
    code, text = run(["-c", "topology", "-alias", "sb"], api)
    assert code == 0
    assert text == sample("topology")["Details"] + "\n"
    code, text = run(["-c", "which-cluster-instances", "-alias", "sb"], api)
    assert len(text.splitlines()) == 4
    assert run(["-c", "which-cluster-master", "-alias", "sb"], api) == (0, "127.0.0.1:22306\n")
    # the search text: --pattern (orchestrator's CLI) or -i (orchestrator-client); -s is the
    # sibling (orchestrator's synonym of -d), not a search text
    assert run(["-c", "search", "-pattern", "22308"], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "search", "-i", "22308"], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "search", "-s", "22308"], api) == (2, "")
    # legacy "slave" spelling maps to the replica command
    code, text = run(["-c", "which-slaves", "-i", "127.0.0.1:22306"], api)
    assert code == 0
    assert len(text.splitlines()) == 3


def test_errors_are_one_line_and_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi({"cluster-info/nosuch": (404, sample("error-unknown-cluster"))})
    code, text = run(["-c", "which-cluster", "-alias", "nosuch"], api)
    assert code == 1
    assert text == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Unable to determine cluster name" in err
    for argv, message in [
        (["-c", "no-such-command"], "unknown command 'no-such-command'"),
        (["-c", "which-master"], "which-master needs -i host:port"),
        (["-c", "which-master", "-i", "127.0.0.1:99999"], "-i: invalid instance key"),
        (["-c", "topology"], "topology needs -alias or -i host:port"),
        (["-c", "clusters", "stray"], "unexpected arguments: stray"),
    ]:
        code, _ = run(argv, api)
        assert code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert message in err


def test_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    out = io.StringIO()
    code = run_client(
        ["-c", "clusters"], out=out, transport=httpx.MockTransport(refuse), environ={}
    )
    assert code == 1
    assert "cannot reach the API at http://127.0.0.1:3000/api" in capsys.readouterr().err


def test_mutations_post_with_credentials() -> None:
    api = FakeApi(
        {
            # no --duration: the API's default
            "begin-downtime/127.0.0.1/22309/ceo/testing": (200, sample("begin-downtime")),
            "register-candidate/127.0.0.1/22308/prefer": (200, sample("register-candidate")),
        }
    )
    code, text = run(
        ["-c", "begin-downtime", "-i", "127.0.0.1:22309", "--owner", "ceo", "--reason", "testing"],
        api,
        env={"ORCHESTRATOR_AUTH_TOKEN": "s3cret"},
    )
    assert (code, text) == (0, "127.0.0.1:22309\n")
    request = api.requests[-1]
    assert request.method == "POST"
    assert request.headers["Authorization"] == "Bearer s3cret"
    code, text = run(
        ["-c", "register-candidate", "-i", "127.0.0.1:22308", "--api", "http://h:1"],
        api,
        env={"ORCHESTRATOR_AUTH_USER": "ops", "ORCHESTRATOR_AUTH_PASSWORD": "pw"},
    )
    assert (code, text) == (0, "127.0.0.1:22308\n")
    assert api.requests[-1].url.host == "h"
    assert api.requests[-1].headers["Authorization"].startswith("Basic ")


def ok(message: str, details: Any) -> tuple[int, Any]:
    return 200, {"Code": "OK", "Message": message, "Details": details}


def test_recovery_commands_print_like_orchestrator_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    promoted = {"Hostname": "127.0.0.1", "Port": 22308}
    recovery = sample("audit-recovery")[0]  # a TopologyRecovery; its SuccessorKey is 22308
    api = FakeApi(
        {
            "recover/127.0.0.1/22307": ok("Recovery executed on 127.0.0.1:22307", promoted),
            "recover/127.0.0.1/22307/127.0.0.1/22308": ok("Recovery executed", promoted),
            "recover-lite/127.0.0.1/22307": ok("Recovery executed", promoted),
            "recover/127.0.0.1/22309": ok("Recovery executed; no instance promoted", None),
            "force-master-failover/sb": ok("Master failed over", recovery),
            "force-master-failover/127.0.0.1:22307": ok("Master failed over", recovery),
            "ack-recovery/cluster/sb?comment=seen%20it": ok("Acknowledged", "127.0.0.1:22308"),
            "ack-recovery/instance/127.0.0.1/22307?comment=x": ok("Acknowledged", promoted),
            "ack-all-recoveries?comment=all%20ok": ok("Acknowledged all recoveries", "all ok"),
            "disable-global-recoveries": ok("Globally disabled recoveries", "disabled"),
            "enable-global-recoveries": ok("Globally enabled recoveries", "enabled"),
            "check-global-recoveries": ok("Global recoveries enabled", "enabled"),
        }
    )
    i = ["-i", "127.0.0.1:22307"]
    assert run(["-c", "recover", *i], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "recover", *i, "-d", "127.0.0.1:22308"], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "recover-lite", *i], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "recover", "-i", "127.0.0.1:22309"], api) == (0, "")
    assert run(["-c", "force-master-failover", "-alias", "sb"], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "force-master-failover", *i], api) == (0, "127.0.0.1:22308\n")
    assert run(["-c", "ack-cluster-recoveries", "-alias", "sb", "--reason", "seen it"], api) == (
        0,
        "127.0.0.1:22308\n",
    )
    assert run(["-c", "ack-instance-recoveries", *i, "--reason", "x"], api) == (
        0,
        "127.0.0.1:22307\n",
    )
    assert run(["-c", "ack-all-recoveries", "--reason", "all ok"], api) == (0, "all ok\n")
    assert run(["-c", "disable-global-recoveries"], api) == (0, "disabled\n")
    assert run(["-c", "enable-global-recoveries"], api) == (0, "enabled\n")
    assert run(["-c", "check-global-recoveries"], api) == (0, "enabled\n")
    methods = {r.url.path.removeprefix("/api/"): r.method for r in api.requests}
    assert methods["check-global-recoveries"] == "GET"
    assert methods["recover/127.0.0.1/22307"] == methods["ack-all-recoveries"] == "POST"
    # acknowledgements need a reason; a refused recovery is one line and exit 1
    for argv in (["-c", "ack-all-recoveries"], ["-c", "ack-cluster-recoveries", "-alias", "sb"]):
        assert run(argv, api) == (2, "")
        assert "needs --reason" in capsys.readouterr().err
    refused = FakeApi(
        {
            "recover/127.0.0.1/22307": (
                409,
                {"Code": "ERROR", "Message": "recover refused: not failed", "Details": None},
            ),
            "force-master-failover/sb": ok("Master failed over", {"SuccessorKey": None}),
        }
    )
    assert run(["-c", "recover", *i], refused) == (1, "")
    assert capsys.readouterr().err == "orchestrator: recover refused: not failed\n"
    assert run(["-c", "force-master-failover", "-alias", "sb"], refused) == (1, "")
    assert "no successor was promoted" in capsys.readouterr().err


def test_credentials_from_files_and_a_warning_for_the_command_line(tmp_path: Path) -> None:
    api = FakeApi(
        {"register-candidate/127.0.0.1/22308/prefer": (200, sample("register-candidate"))}
    )
    argv = ["-c", "register-candidate", "-i", "127.0.0.1:22308"]
    secret = tmp_path / "password"
    secret.write_text("pw-from-file\n")
    token = tmp_path / "token"
    token.write_text("tok-from-file\n")

    def call(extra: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_client(
            argv + extra, out=out, err=err, transport=httpx.MockTransport(api), environ=env
        )
        return (
            code,
            api.requests[-1].headers.get("Authorization", "") if code == 0 else "",
            (err.getvalue()),
        )

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    code, sent, warned = call([], {"ORCHESTRATOR_AUTH_USER": "ops", **_file(secret)})
    assert (code, sent, warned) == (0, basic("ops", "pw-from-file"), "")
    code, sent, warned = call(["-b", "ops"], _file(secret))
    assert (code, sent, warned) == (0, basic("ops", "pw-from-file"), "")
    code, sent, warned = call([], {"ORCHESTRATOR_AUTH_TOKEN_FILE": str(token)})
    assert (code, sent, warned) == (0, "Bearer tok-from-file", "")
    code, sent, warned = call(["-b", "ops:on-the-line"], {})
    assert (code, sent) == (0, basic("ops", "on-the-line"))
    assert warned.startswith("orchestrator: warning: -b carries a password")
    assert "on-the-line" not in warned
    code, _, warned = call(["--api", "http://ops:in-url@h:1"], {})
    assert "--api carries a password" in warned
    assert "in-url" not in warned
    code, _, warned = call(
        [], {"ORCHESTRATOR_AUTH_USER": "ops", "ORCHESTRATOR_AUTH_PASSWORD": "x", **_file(secret)}
    )
    assert code == 2
    assert warned == (
        "orchestrator: set ORCHESTRATOR_AUTH_PASSWORD or ORCHESTRATOR_AUTH_PASSWORD_FILE, "
        "not both\n"
    )
    code, _, warned = call(
        [], {"ORCHESTRATOR_AUTH_USER": "ops", "ORCHESTRATOR_AUTH_PASSWORD_FILE": "/nonexistent"}
    )
    assert code == 2
    assert warned.startswith("orchestrator: ORCHESTRATOR_AUTH_PASSWORD_FILE: cannot read")


def _file(path: Path) -> dict[str, str]:
    return {"ORCHESTRATOR_AUTH_PASSWORD_FILE": str(path)}
