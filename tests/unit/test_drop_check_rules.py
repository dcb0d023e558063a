"""The web UI's drop checks (``orchestrator_recovery.operations.drop_checks``) on canned servers:
which targets ``relocate`` / ``relocate-replicas`` would refuse, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_recovery.operations.drop_checks import (
    Verdict,
    held_instances,
    masters_of,
    relocate_refusal,
    replicas_of,
    replicas_refusal,
)
from orchestrator_recovery.operations.maintenance import Lock
from orchestrator_recovery.operations.moves_sql import Server, split_variables
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_moves_sql import server

pytestmark = pytest.mark.unit

M, A, B, C, D = (InstanceKey("127.0.0.1", port) for port in (3306, 3307, 3308, 3309, 3310))
LAG = 20


def fleet() -> dict[InstanceKey, Server | str]:
    """M <- {A <- C, B}; D does not answer."""
    return {
        M: server(M, None, binlog="0-1-10", applied=""),
        A: server(A, M),
        B: server(B, M),
        C: server(C, A),
        D: f"cannot read {D}: Can't connect to MySQL server",
    }


def test_the_chain_of_masters_stops_where_nothing_is_known() -> None:
    servers = fleet()
    target = servers[C]
    assert isinstance(target, Server)
    assert masters_of(servers, target) == [A, M]
    assert masters_of({C: target}, target) == [A]


def test_relocate_allows_siblings_and_masters_and_refuses_descendants_and_the_silent() -> None:
    servers = fleet()
    assert relocate_refusal(servers, A, B, LAG) == ""
    assert relocate_refusal(servers, A, M, LAG) == ""
    assert relocate_refusal(servers, C, B, LAG) == ""
    assert relocate_refusal(servers, A, C, LAG) == (
        f"{C} replicates (directly or not) from {A}: cannot move it below its own replica"
    )
    assert relocate_refusal(servers, A, A, LAG) == f"cannot move {A} below itself"
    assert relocate_refusal(servers, A, D, LAG).startswith(f"cannot read {D}")
    assert relocate_refusal(servers, D, A, LAG).startswith(f"cannot read {D}")


def test_relocate_refuses_a_target_that_lacks_transactions_without_waiting() -> None:
    servers = fleet() | {B: server(B, M, binlog="0-1-8", applied="0-1-8")}
    assert "1236" in relocate_refusal(servers, A, B, LAG)


def test_relocate_replicas_names_the_first_replica_refused() -> None:
    servers = fleet()
    replicas = replicas_of(servers, M, [A, B])
    assert replicas == [A, B]
    assert replicas_refusal(servers, M, replicas, M, LAG) == (
        f"cannot relocate the replicas of {M} below {M} itself"
    )
    # below C: B may go, A may not (C is A's own replica)
    assert replicas_refusal(servers, M, replicas, C, LAG) == (
        f"{A}: {C} replicates (directly or not) from {A}: cannot move it below its own replica"
    )
    assert replicas_refusal(servers, A, replicas_of(servers, A, [C]), B, LAG) == ""
    # the only replica is the target itself: nothing to move
    assert "no replica to move" in replicas_refusal(servers, A, [C], C, LAG)
    assert replicas_refusal(servers, A, [C], D, LAG).startswith(f"cannot read {D}")


def test_a_known_replica_that_does_not_answer_refuses_the_move_of_all() -> None:
    servers = fleet()
    replicas = replicas_of(servers, M, [A, B, D])
    assert replicas == [A, B, D]
    assert replicas_refusal(servers, M, replicas, B, LAG).startswith(f"{D}: cannot read {D}")


def test_a_verdict_as_the_api_answers_it() -> None:
    assert Verdict(A).json() == {
        "Key": {"Hostname": "127.0.0.1", "Port": 3307},
        "Allowed": True,
        "Reason": "",
    }
    refused = Verdict(A, "why not").json()
    assert (refused["Allowed"], refused["Reason"]) == (False, "why not")


def test_show_variables_read_as_the_moves_read_them() -> None:
    mariadb = [
        {"Variable_name": "binlog_format", "Value": "ROW"},
        {"Variable_name": "gtid_binlog_pos", "Value": "0-1-10"},
        {"Variable_name": "gtid_slave_pos", "Value": "0-1-9"},
        {"Variable_name": "log_bin", "Value": "ON"},
        {"Variable_name": "log_slave_updates", "Value": "ON"},
        {"Variable_name": "version", "Value": "10.11.6-MariaDB-log"},
    ]
    variables, positions = split_variables(mariadb)
    assert variables == [
        {
            "version": "10.11.6-MariaDB-log",
            "log_bin": "ON",
            "log_slave_updates": "ON",
            "binlog_format": "ROW",
        }
    ]
    assert positions == [{"binlog": "0-1-10", "applied": "0-1-9"}]
    mysql = [
        {"Variable_name": "version", "Value": "8.0.36"},
        {"Variable_name": "gtid_executed", "Value": "uuid:1-10"},
        {"Variable_name": "gtid_purged", "Value": "uuid:1-2"},
    ]
    assert split_variables(mysql)[1] == [{"binlog": "uuid:1-10", "purged": "uuid:1-2"}]
    assert split_variables([]) == ([], [])


def test_locked_instances_are_held_for_everyone_but_the_maintenance_owner() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    locks = [
        Lock(A, "alice", "disk swap", begins_at=now, ends_at=now + timedelta(hours=1)),
        Lock(B, "bob", "relocate", begins_at=now),  # a running operation: busy for all
        Lock(C, "carol", "old", begins_at=now, ends_at=now - timedelta(minutes=1)),  # ended
    ]
    held = held_instances(locks, "ops", now)
    assert set(held) == {A, B}
    assert held[A].startswith(f"{A} is in maintenance (alice, disk swap, until ")
    assert held[B].startswith(f"{B} is busy: relocate requested by bob is running")
    assert set(held_instances(locks, "alice", now)) == {B}  # her own maintenance is hers
