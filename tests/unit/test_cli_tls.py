"""``orchestrator -c`` and an ``https://`` API: bad trust settings are one line and exit 2
(the TLS handshakes themselves are in tests/integration/test_api_https.py)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from orchestrator_cli.client import run_client

pytestmark = pytest.mark.unit

MISSING = "/nonexistent/ca.pem"


def clusters(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[{"ClusterName": "db:3306"}])


def run(api: str, env: dict[str, str]) -> int:
    out = io.StringIO()
    argv = ["-c", "clusters", "--api", api]
    return run_client(argv, out=out, transport=httpx.MockTransport(clusters), environ=env)


def test_trust_settings_matter_only_for_https() -> None:
    assert run("http://127.0.0.1:3000", {"ORCHESTRATOR_CA_FILE": MISSING}) == 0


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"ORCHESTRATOR_CA_FILE": MISSING},
            f"orchestrator: ORCHESTRATOR_CA_FILE: cannot read {MISSING}: No such file or directory",
        ),
        (
            {"CURL_CA_BUNDLE": MISSING},
            f"orchestrator: CURL_CA_BUNDLE: cannot read {MISSING}: No such file or directory",
        ),
        (
            {"ORCHESTRATOR_CLIENT_KEY_FILE": "/etc/client.key"},
            "orchestrator: ORCHESTRATOR_CLIENT_KEY_FILE: needs ORCHESTRATOR_CLIENT_CERT_FILE, "
            "the certificate it goes with",
        ),
    ],
)
def test_bad_trust_settings_are_one_line_and_exit_2(
    env: dict[str, str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("https://orchestrator.example:3000", env) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_file_without_a_certificate_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    assert run("https://orchestrator.example:3000", {"ORCHESTRATOR_CA_FILE": str(not_pem)}) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"orchestrator: ORCHESTRATOR_CA_FILE: {not_pem} holds no PEM certificate"
    ]
