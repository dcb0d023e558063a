"""``orchestrator up`` with a config that serves the API over HTTPS and wants client
certificates: it reaches its API over TLS, prints the https URL, and refuses to start what it
could not follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.certificates import TestAuthority
from tests.harness.ports import free_port, nobody_listens
from tests.integration.test_api_https import CLIENT_VARIABLES
from tests.integration.test_local_stack import free_base_port, mariadbd_pids_under

pytestmark = pytest.mark.integration


def up(
    tmp_path: Path, config: dict[str, Any], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(json.dumps(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_VARIABLES)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli.main", "up", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, **env},
    )


def https_config(tmp_path: Path, port: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A mutual-TLS API config, and the environment giving ``up`` its client certificate."""
    authority = TestAuthority(tmp_path / "pki")
    cert, key = authority.issue("server")
    client, client_key = authority.issue("dba", usage="clientAuth", subject="/OU=dba/CN=up")
    config = {
        "ListenAddress": f"127.0.0.1:{port}",
        "UseSSL": True,
        "SSLCertFile": str(cert),
        "SSLPrivateKeyFile": str(key),
        "UseMutualTLS": True,
        "SSLCAFile": str(authority.certificate),
        "SSLValidOUs": ["dba"],
    }
    env = {
        "ORCHESTRATOR_CLIENT_CERT_FILE": str(client),
        "ORCHESTRATOR_CLIENT_KEY_FILE": str(client_key),
    }
    return config, env


def test_up_follows_an_https_api_with_its_client_certificate(tmp_path: Path) -> None:
    base, port = free_base_port(2), free_port()
    config, env = https_config(tmp_path, port)
    directory = (tmp_path / "sb").resolve()
    result = up(
        tmp_path,
        config,
        "--sandbox",
        str(directory),
        "--nodes",
        "2",
        "--base-port",
        str(base),
        "--once",
        "--timeout",
        "60",
        **env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    url = f"https://127.0.0.1:{port}"
    assert any(line.startswith(f"orchestrator-topology-api on {url} (log: ") for line in lines)
    assert (
        f"try: ORCHESTRATOR_CA_FILE={config['SSLCertFile']} uv run orchestrator -c clusters "
        f"--api {url}"
    ) in lines
    # the topology it printed came through the API, over mutual TLS
    last_header = len(lines) - 1 - lines[::-1].index(f"cluster 127.0.0.1:{base}")
    assert lines[last_header + 1].startswith(f"127.0.0.1:{base}   [0s,ok,")
    assert lines[last_header + 2].startswith(f"+ 127.0.0.1:{base + 1} [0s,ok,")
    assert "Traceback" not in result.stderr
    assert mariadbd_pids_under(directory) == []
    assert nobody_listens(port)


def test_up_refuses_what_it_could_not_serve_or_follow_before_starting_anything(
    tmp_path: Path,
) -> None:
    port = free_port()
    config, env = https_config(tmp_path, port)
    directory = (tmp_path / "sb").resolve()
    without_certificate = up(tmp_path, config, "--sandbox", str(directory))
    assert without_certificate.returncode == 2
    assert without_certificate.stderr.splitlines() == [
        "orchestrator: bad configuration: UseMutualTLS: orchestrator up follows the topology "
        "through the API, so it needs a client certificate: set ORCHESTRATOR_CLIENT_CERT_FILE "
        "(and ORCHESTRATOR_CLIENT_KEY_FILE)"
    ]
    missing = str(tmp_path / "gone.key")
    broken = up(
        tmp_path, {**config, "SSLPrivateKeyFile": missing}, "--sandbox", str(directory), **env
    )
    assert broken.returncode == 2
    assert broken.stderr.splitlines() == [
        f"orchestrator: bad configuration: SSLPrivateKeyFile: cannot read {missing}: "
        "No such file or directory"
    ]
    assert not directory.exists()  # nothing was started
