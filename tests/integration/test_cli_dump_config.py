"""The real ``orchestrator`` entry point, run as a process: ``-c dump-config`` prints the
effective configuration with every secret masked, ``-config FILE`` is validated (one line, exit
2) and names the API the command calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_cli.client_config import MASK
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration


def orchestrator(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean | (env or {}),
    )


def test_dump_config_masks_every_secret(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                "MySQLTopologyUser": "orchestrator",
                "MySQLTopologyPassword": "topology-pw-1",
                "AuthenticationMethod": "token",
                "APITokens": {"admin-token-2": "admin", "read-token-3": "read"},
                "BackendDB": "postgres",
                "PostgreSQLDSN": "postgresql://orc:pg-pw-4@db.example:5432/orchestrator",
                "NATSServers": ["nats://bus:nats-pw-5@127.0.0.1:4222"],
                "ListenAddress": ":3000",
                "InstancePollSeconds": 3,
            }
        )
    )
    secret_file = tmp_path / "etcd-password"
    secret_file.write_text("etcd-pw-6\n")
    env = {"ORCHESTRATOR_EtcdUser": "root", "ORCHESTRATOR_EtcdPassword_FILE": str(secret_file)}
    env["ORCHESTRATOR_EtcdEndpoints"] = '["https://127.0.0.1:2379"]'  # a password needs TLS
    done = orchestrator("-c", "dump-config", "-config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    for secret in ("pw-1", "token-2", "token-3", "pw-4", "pw-5", "pw-6"):
        assert secret not in done.stdout
        assert secret not in done.stderr
    dumped = json.loads(done.stdout)
    assert dumped["MySQLTopologyUser"] == "orchestrator"
    assert dumped["MySQLTopologyPassword"] == MASK
    assert dumped["EtcdPassword"] == MASK
    assert dumped["APITokens"] == {f"{MASK}1": "admin", f"{MASK}2": "read"}
    assert dumped["PostgreSQLDSN"] == f"postgresql://orc:{MASK}@db.example:5432/orchestrator"
    assert dumped["NATSServers"] == [f"nats://bus:{MASK}@127.0.0.1:4222"]
    assert dumped["InstancePollSeconds"] == 3
    assert dumped["EtcdUser"] == "root"


def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    done = orchestrator("-c", "dump-config", f"-config={missing}")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"orchestrator: bad configuration: config: cannot read {missing}: "
        "No such file or directory\n"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"InstancePollSeconds": "often"}')
    done = orchestrator("-config", str(broken), "-c", "clusters")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("orchestrator: bad configuration: InstancePollSeconds:")
    assert done.stderr.count("\n") == 1


def test_the_config_names_the_api_the_command_calls(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(json.dumps({"ListenAddress": f":{port}"}))
    done = orchestrator("-c", "clusters", "-config", str(config), "-debug", "-ignore-raft-setup")
    assert (done.returncode, done.stdout) == (1, "")
    lines = done.stderr.splitlines()
    assert f"orchestrator: debug: API http://127.0.0.1:{port}/api (from -config {config})" in lines
    assert lines[-1].startswith(
        f"orchestrator: cannot reach the API at http://127.0.0.1:{port}/api"
    )
