"""``galera_target_refusal``: which Galera nodes a replica may be moved under by hand."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator_recovery.operations.moves_sql import Server, galera_target_refusal
from orchestrator_recovery.sql import Positions
from orchestrator_shared.instance_key import InstanceKey

pytestmark = pytest.mark.unit

TARGET = Server(
    key=InstanceKey.parse("127.0.0.1:22307"),
    version="10.11.6-MariaDB",
    log_bin=True,
    log_slave_updates=True,
    binlog_format="ROW",
    replica=None,
    positions=Positions(),
)


def status(
    cluster: str = "Primary", state: str = "Synced", ready: str = "ON"
) -> list[dict[str, str]]:
    return [
        {"Variable_name": "wsrep_provider_name", "Value": "Galera"},
        {"Variable_name": "wsrep_cluster_status", "Value": cluster},
        {"Variable_name": "wsrep_local_state_comment", "Value": state},
        {"Variable_name": "wsrep_ready", "Value": ready},
    ]


def test_a_server_that_is_no_galera_node_and_a_healthy_node_are_fine() -> None:
    assert galera_target_refusal(TARGET, []) is None  # MySQL
    no_provider = [
        {"Variable_name": "wsrep_provider_name", "Value": ""},
        {"Variable_name": "wsrep_cluster_status", "Value": "Disconnected"},
        {"Variable_name": "wsrep_ready", "Value": "OFF"},
    ]
    assert galera_target_refusal(TARGET, no_provider) is None  # MariaDB without wsrep
    assert galera_target_refusal(TARGET, status()) is None


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (status(cluster="non-Primary"), "is not in the primary component (non-Primary)"),
        (status(state="Donor/Desynced"), "is not Synced (Donor/Desynced)"),
        (status(ready="OFF"), "is not ready (wsrep_ready=OFF)"),
    ],
)
def test_an_unhealthy_node_is_refused_with_why(rows: list[dict[str, str]], reason: str) -> None:
    why = galera_target_refusal(TARGET, rows)
    assert why == f"127.0.0.1:22307 is a Galera node that {reason}"


def test_a_node_without_log_slave_updates_would_lose_the_other_nodes_writes() -> None:
    why = galera_target_refusal(dataclasses.replace(TARGET, log_slave_updates=False), status())
    assert why is not None and "misses the transactions of the other nodes" in why
