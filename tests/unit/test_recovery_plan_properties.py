"""Properties of recovery planning over generated clusters (MariaDB positions, MySQL sets)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.recovery import (
    MasterPlan,
    PlanOptions,
    Refusal,
    RefusalCode,
    RelocationPlan,
    plan_intermediate_master_recovery,
    plan_master_recovery,
)
from orchestrator_shared.recovery.facts import ServerFacts
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_recovery_plan_scenarios import server

pytestmark = pytest.mark.unit

FAILED = "db1:3301"
UUID_MASTER = "00000000-0000-0000-0000-000000003301"
UUID_OLD = "00000000-0000-0000-0000-000000009999"
OPTIONS = PlanOptions(
    recover_master_cluster_filters=("*",),
    recover_intermediate_master_cluster_filters=("*",),
    fail_on_lag_seconds=60,
)


def _uuid(port: int) -> str:
    return f"00000000-0000-0000-0000-{port:012d}"


@st.composite
def _replica_fields(draw: st.DrawFn, port: int, flavor: str) -> dict[str, Any]:
    applied = draw(st.integers(99, 102))
    received = applied + draw(st.sampled_from([0, 0, 0, 1, 2]))
    other_domain = draw(st.sampled_from([0, 2, 2, 2, 3]))
    errant = draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0
    fields: dict[str, Any] = {
        "master": FAILED,
        "ok": draw(st.integers(0, 11)) != 0,
        "sql_delay": 600 if draw(st.integers(0, 11)) == 0 else 0,
        "log_bin": draw(st.integers(0, 11)) != 0,
        "log_slave_updates": draw(st.integers(0, 11)) != 0,
        "promotion_rule": draw(
            st.sampled_from(["", "", "", "prefer", "prefer_not", "must_not", "must"])
        ),
        "dc": draw(st.sampled_from(["east", "west"])),
        "lag": draw(st.sampled_from([None, 0, 5, 5, 5, 120])),
    }
    if flavor == "mariadb":
        position = [f"0-3301-{applied}"] + ([f"1-3301-{other_domain}"] if other_domain else [])
        replicated = ",".join(position)
        if errant:
            position.append(f"5-{port}-{errant}")
        fields.update(
            gtid=",".join(position),
            gtid_slave_pos=replicated,
            gtid_io_pos=f"0-3301-{received}",
            using_gtid=draw(
                st.sampled_from(["Slave_Pos", "Slave_Pos", "Slave_Pos", "Current_Pos", "No"])
            ),
            version=draw(st.sampled_from(["10.11.6-MariaDB"] * 5 + ["10.6.4-MariaDB"])),
        )
    else:
        executed = f"{UUID_OLD}:1-{10 + other_domain},{UUID_MASTER}:1-{applied}"
        if errant:
            executed += f",{_uuid(port)}:1-{errant}"
        fields.update(
            gtid_executed=executed,
            retrieved=f"{UUID_MASTER}:1-{received}",
            auto_position=draw(st.integers(0, 9)) != 0,
            version=draw(st.sampled_from(["8.0.36"] * 5 + ["8.4.0"])),
        )
    return fields


@st.composite
def clusters(draw: st.DrawFn) -> tuple[InstanceSnapshot, list[InstanceSnapshot]]:
    flavor = draw(st.sampled_from(["mariadb", "mysql"]))
    count = draw(st.integers(1, 6))
    if flavor == "mariadb":
        failed = server(FAILED, gtid="0-3301-95,1-3301-1", dc="east")
    else:
        failed = server(
            FAILED,
            version="8.0.36",
            server_uuid=UUID_MASTER,
            gtid_executed=f"{UUID_OLD}:1-13,{UUID_MASTER}:1-95",
            dc="east",
        )
    replicas = [
        server(f"db{index + 2}:{3302 + index}", draw(_replica_fields(3302 + index, flavor)))
        for index in range(count)
    ]
    return failed, replicas


def _facts(snapshot: InstanceSnapshot, failed: InstanceSnapshot) -> ServerFacts:
    return ServerFacts.of(snapshot, master=failed, candidates={})


def _plan(failed: InstanceSnapshot, replicas: list[InstanceSnapshot]) -> MasterPlan | Refusal:
    return plan_master_recovery(failed, replicas, cluster=FAILED, options=OPTIONS)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_successor_is_eligible_and_has_everything(
    cluster: tuple[InstanceSnapshot, list[InstanceSnapshot]],
) -> None:
    failed, replicas = cluster
    result = _plan(failed, replicas)
    keys = {snap.instance_key for snap in replicas}
    if isinstance(result, Refusal):
        assert result.code in (RefusalCode.NO_CANDIDATE, RefusalCode.DATA_LOSS)
        assert set(result.rejected) == keys
        return
    by_key = {snap.instance_key: snap for snap in replicas}
    successor = _facts(by_key[result.successor], failed)
    snap = successor.snapshot
    assert snap.probe.ok
    assert successor.sql_delay == 0
    assert successor.errant is None
    assert snap.log_bin and snap.log_slave_updates
    assert snap.promotion_rule != "must_not"
    assert successor.uses_gtid
    assert successor.lag_seconds is None or successor.lag_seconds < 60
    eventual = successor.positions.eventual
    assert eventual is not None
    # Nothing the cluster holds on a reachable replica is lost.
    for snapshot in replicas:
        other = _facts(snapshot, failed)
        if other.is_reachable and other.key != successor.key:
            assert other.legitimate is not None
            assert eventual.contains(other.legitimate) is True, other.key
    # The successor has every transaction of every repointed replica.
    for moved in result.repoint:
        other = _facts(by_key[moved], failed)
        assert other.positions.eventual is not None
        assert eventual.contains(other.positions.eventual) is True
        assert other.errant is None
    # Every replica is accounted for exactly once, every other one with a reason.
    assert {result.successor, *result.repoint, *result.lost} == keys
    assert len(result.repoint) + len(result.lost) == len(keys) - 1
    assert not set(result.repoint) & set(result.lost)
    assert set(result.rejected) == keys - {result.successor}


@settings(max_examples=200, deadline=None)
@given(st.data(), clusters())
def test_choice_does_not_depend_on_input_order(
    data: st.DataObject, cluster: tuple[InstanceSnapshot, list[InstanceSnapshot]]
) -> None:
    failed, replicas = cluster
    shuffled = data.draw(st.permutations(replicas))
    assert _plan(failed, shuffled).to_dict() == _plan(failed, replicas).to_dict()


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_a_requested_successor_is_the_chosen_one_or_refused(
    cluster: tuple[InstanceSnapshot, list[InstanceSnapshot]],
) -> None:
    failed, replicas = cluster
    free = _plan(failed, replicas)
    for snapshot in replicas:
        requested = snapshot.instance_key
        result = plan_master_recovery(
            failed, replicas, cluster=FAILED, options=OPTIONS, requested=requested
        )
        if isinstance(result, MasterPlan):
            assert result.successor == requested
            # Accepted only when the unrequested plan had an equally complete choice.
            assert isinstance(free, MasterPlan)
        else:
            assert result.code is RefusalCode.REQUESTED_REJECTED
            assert str(requested) in result.reason


@st.composite
def intermediate_clusters(
    draw: st.DrawFn,
) -> tuple[InstanceSnapshot, InstanceSnapshot, list[InstanceSnapshot], list[InstanceSnapshot]]:
    top = server(FAILED, gtid=f"0-3301-{draw(st.integers(100, 110))}", dc="east")
    dead = server("db2:3302", master=FAILED, gtid="0-3301-100", ok=False, dc="west")
    replicas = [
        server(
            f"db{index + 10}:{3310 + index}",
            master="db2:3302",
            gtid=f"0-3301-{draw(st.integers(96, 106))}",
            using_gtid=draw(st.sampled_from(["Slave_Pos", "Slave_Pos", "No"])),
            ok=draw(st.integers(0, 7)) != 0,
        )
        for index in range(draw(st.integers(1, 4)))
    ]
    siblings = [
        server(
            f"db{index + 3}:{3303 + index}",
            master=FAILED,
            gtid=f"0-3301-{draw(st.integers(96, 108))}",
            dc=draw(st.sampled_from(["east", "west"])),
            sql_delay=600 if draw(st.integers(0, 5)) == 0 else 0,
            log_slave_updates=draw(st.integers(0, 5)) != 0,
        )
        for index in range(draw(st.integers(0, 3)))
    ]
    return top, dead, replicas, siblings


@settings(max_examples=300, deadline=None)
@given(st.data(), intermediate_clusters())
def test_relocation_targets_have_everything_and_order_does_not_matter(
    data: st.DataObject,
    cluster: tuple[
        InstanceSnapshot, InstanceSnapshot, list[InstanceSnapshot], list[InstanceSnapshot]
    ],
) -> None:
    top, dead, replicas, siblings = cluster

    def run(reps: list[InstanceSnapshot], sibs: list[InstanceSnapshot]) -> Any:
        return plan_intermediate_master_recovery(
            dead, reps, siblings=sibs, master=top, cluster=FAILED, options=OPTIONS
        )

    result = run(replicas, siblings)
    shuffled = run(data.draw(st.permutations(replicas)), data.draw(st.permutations(siblings)))
    assert shuffled.to_dict() == result.to_dict()
    if not isinstance(result, RelocationPlan):
        return
    everyone: dict[InstanceKey, InstanceSnapshot] = {
        snap.instance_key: snap for snap in [top, *siblings]
    }
    by_key = {snap.instance_key: snap for snap in replicas}
    for moved, target in result.moves:
        mover = ServerFacts.of(by_key[moved], master=dead, candidates={})
        holder = ServerFacts.of(everyone[target], master=None, candidates={})
        assert mover.uses_gtid and mover.is_reachable
        assert holder.positions.binlog is not None and mover.positions.eventual is not None
        assert holder.positions.binlog.contains(mover.positions.eventual) is True
        snap = everyone[target]
        if target != top.instance_key:
            assert snap.log_slave_updates
            assert snap.channels[0].sql_delay == 0
    assert {moved for moved, _ in result.moves} | set(result.lost) == set(by_key)
