"""The pure decisions of the moves of many replicas
(``orchestrator_recovery.operations.moves_many_rules``):
the pattern, regroup's pick, take-master's and make-co-master's refusals and statements; and
the ``orchestrator -c`` commands on canned answers shaped like orchestrator's."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator_recovery.operations.moves_many_rules import (
    choose_promoted,
    co_master_refusal,
    co_master_sql,
    selected,
    take_master_refusal,
)
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_cli_client import FakeApi, run, sample
from tests.unit.test_moves_sql import server

pytestmark = pytest.mark.unit

G, M, A, B, C = (InstanceKey("127.0.0.1", port) for port in (3305, 3306, 3307, 3308, 3309))


def test_the_pattern_selects_by_host_port_in_key_order() -> None:
    keys = [C, A, B, A]
    assert selected(keys, "") == [A, B, C]
    assert selected(keys, ":330[79]$") == [A, C]
    assert selected(keys, "nothing") == []
    with pytest.raises(OperationRefused, match="bad pattern"):
        selected(keys, "(")


def test_regroup_promotes_the_most_up_to_date_replica_that_can_be_a_master() -> None:
    behind, ahead = server(A, M, applied="0-1-10"), server(B, M, applied="0-1-12", binlog="0-1-12")
    choice = choose_promoted([behind, ahead])
    assert choice.promoted is not None
    assert choice.promoted.key == B
    assert choice.passed_over == {A: f"less up to date than {B}"}
    # equally up to date: the lower key
    tie = choose_promoted([server(B, M), server(A, M)])
    assert tie.promoted is not None
    assert tie.promoted.key == A


@pytest.mark.parametrize(
    ("unfit", "reason"),
    [
        ({"log_slave_updates": "0"}, "needs log_bin and log_slave_updates"),
        ({"log_bin": "0"}, "needs log_bin and log_slave_updates"),
        ({"SQL_Delay": 3600}, r"is delayed \(SQL_Delay 3600s\)"),
        ({"Slave_SQL_Running": "No"}, "is not replicating"),
        ({"Using_Gtid": "No"}, "does not replicate with GTID"),
        ({"version": "11.4.2-MariaDB"}, r"has a higher version \(11\.4\.2-MariaDB\) than"),
    ],
)
def test_regroup_passes_over_the_most_up_to_date_when_it_cannot_be_a_master(
    unfit: dict[str, Any], reason: str
) -> None:
    best = server(B, M, applied="0-1-20", binlog="0-1-20", **unfit)
    choice = choose_promoted([best, server(A, M), server(C, M)])
    assert choice.promoted is not None
    assert choice.promoted.key == A
    assert re.search(reason, choice.passed_over[B])


def test_regroup_finds_nobody_when_none_fits() -> None:
    choice = choose_promoted([server(A, M, log_bin="0"), server(B, M, Using_Gtid="No")])
    assert choice.promoted is None
    assert set(choice.passed_over) == {A, B}


def test_take_master_needs_a_master_that_replicates() -> None:
    instance = server(A, M)
    assert take_master_refusal(instance, server(M, G)) is None
    why = take_master_refusal(instance, server(M, None))
    assert why is not None
    assert "is not a replica: take-master swaps" in why
    assert take_master_refusal(instance, server(M, A)) == f"{M} is co-master of {A}: cannot take it"
    assert take_master_refusal(instance, server(M, G, Using_Gtid="No")) is not None
    no_log = take_master_refusal(server(A, M, log_slave_updates="0"), server(M, G))
    assert no_log == f"{A} does not have log_slave_updates enabled"
    assert take_master_refusal(server(A, G), server(M, G)) == f"{A} does not replicate from {M}"


def test_make_co_master_refusals() -> None:
    instance, master = server(A, M), server(M, None)
    assert co_master_refusal(instance, master, read_only=True) is None
    cases: list[tuple[Any, Any, bool, str]] = [
        (server(A, None), master, True, f"{A} is not a replica"),
        (instance, server(M, A), True, f"{A} is already co master"),
        (instance, server(M, G), True, "not a direct replica of a cluster master"),
        (instance, master, False, f"instance {A} is not read-only"),
        (server(A, M, Using_Gtid="No"), master, True, "does not replicate with GTID"),
        (server(A, M, log_slave_updates="0"), master, True, "needs log_bin and log_slave_updates"),
        (server(A, M, version="11.4.2-MariaDB"), master, True, "has a higher version"),
        (server(A, M, SQL_Delay=60), master, True, "is delayed"),
        (server(A, M, Slave_IO_Running="No"), master, True, "is not replicating"),
        (server(A, M, Seconds_Behind_Master=300), master, True, "is lagging"),
        (server(A, M, binlog="0-1-10,1-7-3"), master, True, "errant transactions"),
    ]
    for mine, theirs, read_only, reason in cases:
        why = co_master_refusal(mine, theirs, read_only=read_only)
        assert why is not None
        assert reason in why


def test_make_co_master_starts_the_master_from_what_the_instance_logged() -> None:
    with_user = co_master_sql(A, "0-1-10", ("repl", "it's"))
    assert with_user == [
        "SET GLOBAL gtid_slave_pos = '0-1-10'",
        "CHANGE MASTER TO master_host='127.0.0.1', master_port=3307, master_user='repl', "
        "master_password='it\\'s', master_use_gtid=slave_pos",
        "START SLAVE",
    ]
    kept = co_master_sql(A, "", None)
    assert kept[1] == (
        "CHANGE MASTER TO master_host='127.0.0.1', master_port=3307, master_use_gtid=slave_pos"
    )


def instance(key: str, master: str) -> dict[str, Any]:
    body: dict[str, Any] = dict(sample("instance"))
    host, port = key.split(":")
    m_host, m_port = master.split(":")
    body["Key"] = {"Hostname": host, "Port": int(port)}
    body["MasterKey"] = {"Hostname": m_host, "Port": int(m_port)}
    return body


def test_cli_prints_what_orchestrator_client_prints() -> None:
    one, two = instance("h2:22308", "h1:22307"), instance("h3:22309", "h1:22307")
    api = FakeApi(
        {
            "relocate-replicas/h0/22306/h1/22307": (200, {"Code": "OK", "Details": [one, two]}),
            "relocate-replicas/h0/22306/h1/22307?pattern=%3A22309%24": (
                200,
                {"Code": "OK", "Details": [two]},
            ),
            "move-replicas-gtid/h0/22306/h1/22307": (
                200,
                {"Code": "OK", "Details": {"Hostname": "h1", "Port": 22307}},
            ),
            # orchestrator-client's paths: a trailing slash where -d would go
            "move-up-replicas/h1/22307/": (200, {"Code": "OK", "Details": [one]}),
            "repoint-replicas/h1/22307/": (200, {"Code": "OK", "Details": []}),
            "take-siblings/h2/22308": (200, {"Code": "OK", "Details": one}),
            "take-master/h2/22308": (200, {"Code": "OK", "Details": one}),
            "make-co-master/h2/22308": (200, {"Code": "OK", "Details": one}),
            "regroup-replicas/h1/22307": (
                200,
                {"Code": "OK", "Message": "promoted replica: h2:22308, lost: 1, moved: 2"},
            ),
            "regroup-replicas-gtid/h1/22307": (
                409,
                {"Code": "ERROR", "Message": "regroup-replicas-gtid refused: no replicas"},
            ),
        }
    )
    relocate = ["-c", "relocate-replicas", "-i", "h0:22306", "-d", "h1:22307"]
    assert run(relocate, api) == (0, "h2:22308\nh3:22309\n")
    assert run(["-c", "relocate-slaves", "-i", "h0:22306", "-d", "h1:22307"], api)[0] == 0
    assert run([*relocate, "--pattern", ":22309$"], api) == (0, "h3:22309\n")
    gtid = ["-c", "move-slaves-gtid", "-i", "h0:22306", "-d", "h1:22307"]
    assert run(gtid, api) == (0, "h1:22307\n")
    assert run(["-c", "move-up-slaves", "-i", "h1:22307"], api) == (0, "h2:22308\n")
    assert run(["-c", "repoint-replicas", "-i", "h1:22307"], api) == (0, "")
    for command in ("take-siblings", "enslave-siblings", "take-master", "enslave-master"):
        assert run(["-c", command, "-i", "h2:22308"], api) == (0, "h2:22308<h1:22307\n")
    assert run(["-c", "make-co-master", "-i", "h2:22308"], api) == (0, "h2:22308<h1:22307\n")
    regroup = run(["-c", "regroup-slaves", "-i", "h1:22307"], api)
    assert regroup == (0, "h2:22308 lost: 1, moved: 2\n")
    assert run(["-c", "regroup-replicas-gtid", "-i", "h1:22307"], api)[0] == 1
    assert run(["-c", "relocate-replicas", "-i", "h0:22306"], api)[0] == 2  # no -d
    assert all(request.method == "POST" for request in api.requests)
