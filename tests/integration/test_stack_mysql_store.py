"""The whole stack (4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api, two
recovery workers) with an orchestrator-style configuration whose store is MySQL: ``BackendDB:
"mysql"`` and the ``MySQLOrchestrator*`` keys, credentials in a ``[client]`` file, pointing at a
MariaDB server of its own (not the sandbox); and ``orchestrator up`` with such a configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import harness
from tests.harness.ports import free_port
from tests.integration.api_support import run_cli
from tests.integration.stack_support import StackFactory
from tests.integration.test_local_stack import free_base_port
from tests.integration.test_recovery_stack import (
    api_get,
    check_new_topology,
    fail_master,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_the_stack_serves_the_fleet_from_a_mysql_store_and_keeps_its_recoveries(
    make_stack: StackFactory,
    mariadb_db: harness.MariadbDatabase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    credentials = tmp_path / "orchestrator-backend.cnf"
    credentials.write_text(f"[client]\nuser={mariadb_db.user}\npassword={mariadb_db.password}\n")
    stack = make_stack(
        BackendDB="mysql",
        MySQLOrchestratorHost=mariadb_db.host,
        MySQLOrchestratorPort=mariadb_db.port,
        MySQLOrchestratorDatabase=mariadb_db.name,
        MySQLOrchestratorCredentialsConfigFile=str(credentials),
    )
    sandbox = stack.sandbox
    master = sandbox.master.key
    events = await fail_master(stack, lambda: sandbox.kill(0), timeout=30)
    successor = sandbox.nodes[check_new_topology(stack, events)]
    wait_until(
        lambda: (
            (found := api_get(stack, f"/api/master/{successor.key}"))
            and found["Key"]["Port"] == successor.port
        ),
        timeout=15,
        what="the API shows the new master",
    )
    recovered = api_get(stack, "/api/audit-recovery")
    assert recovered and recovered[0]["IsSuccessful"] is True
    assert recovered[0]["SuccessorKey"]["Port"] == successor.port
    capsys.readouterr()
    assert run_cli(stack.api, "-c", "which-cluster-master", "-i", successor.key) == (
        0,
        f"{successor.key}\n",
    )
    # what the API served is in the MariaDB database
    stored = mariadb_db.sql("SELECT instance_key FROM instances ORDER BY instance_key")
    assert sorted(row[0] for row in stored) == sorted(node.key for node in sandbox.nodes)
    assert mariadb_db.sql("SELECT instance_key, successor_key, is_successful FROM recoveries") == [
        (master, successor.key, 1)
    ]


def test_orchestrator_up_runs_on_a_mysql_store(
    mariadb_db: harness.MariadbDatabase, tmp_path: Path
) -> None:
    base, port = free_base_port(4), free_port()
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                "ListenAddress": f"127.0.0.1:{port}",
                # an orchestrator configuration: no BackendDB, orchestrator's default is mysql
                "MySQLOrchestratorHost": mariadb_db.host,
                "MySQLOrchestratorPort": mariadb_db.port,
                "MySQLOrchestratorDatabase": mariadb_db.name,
                "MySQLOrchestratorUser": mariadb_db.user,
                "MySQLOrchestratorPassword": "${ORCHESTRATOR_TEST_STORE_PASSWORD}",
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator_cli.main", "up", "--config", str(config),
         "--sandbox", str(tmp_path / "sb"), "--base-port", str(base), "--once",
         "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ORCHESTRATOR_TEST_STORE_PASSWORD": mariadb_db.password},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"cluster 127.0.0.1:{base}" in result.stdout
    stored = mariadb_db.sql("SELECT instance_key FROM instances ORDER BY instance_key")
    assert [row[0] for row in stored] == [f"127.0.0.1:{base + n}" for n in range(4)]
    assert mariadb_db.password not in result.stdout + result.stderr
