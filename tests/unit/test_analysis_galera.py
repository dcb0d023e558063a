"""The Galera analysis codes: each from a reachable Galera node's own wsrep state, after
orchestrator's chain, with its evidence; never actionable, so never a failover."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_shared.analysis import Analysis, AnalysisCode, AnalysisOptions, analyze
from orchestrator_shared.config import Settings
from orchestrator_shared.snapshot import GaleraState, InstanceSnapshot
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot

pytestmark = pytest.mark.unit

NODE = "db:1"
GALERA_CODES = (
    AnalysisCode.GALERA_NON_PRIMARY_COMPONENT,
    AnalysisCode.GALERA_NODE_DESYNCED_TOO_LONG,
    AnalysisCode.GALERA_NODE_NOT_SYNCED,
    AnalysisCode.GALERA_CLUSTER_SIZE_BELOW_EXPECTED,
)


def galera_node(fields: dict[str, Any] | None = None, **state: Any) -> InstanceSnapshot:
    """``db:1`` as a node of the 3-node Galera cluster ``shop``, Synced and Primary unless
    ``state`` says otherwise."""
    galera = GaleraState(
        cluster_name="shop",
        node_name="node1",
        cluster_state_uuid="6f5e4d3c-0000-0000-0000-000000000001",
        **{
            "cluster_size": 3,
            "cluster_status": "Primary",
            "local_state": "Synced",
            "ready": True,
            "connected": True,
            **state,
        },
    )
    return instance_snapshot(NODE, fields or {}).model_copy(update={"galera": galera})


def verdict(*snaps: InstanceSnapshot, expected_size: int = 0) -> Analysis:
    options = AnalysisOptions(galera_expected_cluster_size=expected_size)
    found = analyze(snaps, now=NOW, options=options, include_no_problem=True)
    return next(a for a in found if str(a.key) == NODE)


def test_a_synced_primary_node_of_the_expected_size_has_no_problem_and_says_why() -> None:
    result = verdict(galera_node(), expected_size=3)
    assert result.code is AnalysisCode.NO_PROBLEM
    assert (
        f"{NODE}: Galera node node1 of shop: Synced, Primary component of 3 node(s) "
        "(GaleraExpectedClusterSize 3)" in result.evidence
    )


@pytest.mark.parametrize(
    ("state", "code", "evidence"),
    [
        (
            {"cluster_status": "non-Primary", "local_state": "Initialized", "cluster_size": 1},
            AnalysisCode.GALERA_NON_PRIMARY_COMPONENT,
            "Initialized, non-Primary component of 1 node(s)",
        ),
        (
            {"cluster_status": "Disconnected", "cluster_size": 0},
            AnalysisCode.GALERA_NON_PRIMARY_COMPONENT,
            "Disconnected component of 0 node(s)",
        ),
        (
            {"local_state": "Donor/Desynced", "desync": True, "desync_count": 1},
            AnalysisCode.GALERA_NODE_NOT_SYNCED,
            "Donor/Desynced, Primary component of 3 node(s) (GaleraExpectedClusterSize 3), "
            "desynced (1 desync requests)",
        ),
        (
            {"local_state": "Joining"},
            AnalysisCode.GALERA_NODE_NOT_SYNCED,
            "Joining, Primary component of 3 node(s)",
        ),
        (
            {"cluster_size": 2},
            AnalysisCode.GALERA_CLUSTER_SIZE_BELOW_EXPECTED,
            "Synced, Primary component of 2 node(s) (GaleraExpectedClusterSize 3)",
        ),
    ],
)
def test_each_galera_trouble_has_its_code_and_its_evidence(
    state: dict[str, Any], code: AnalysisCode, evidence: str
) -> None:
    result = verdict(galera_node(**state), expected_size=3)
    assert result.code is code
    assert not result.is_actionable and result.has_problem
    assert any(evidence in line for line in result.evidence), result.evidence
    assert result.description


def test_the_worst_trouble_wins_non_primary_then_not_synced_then_size() -> None:
    worst = galera_node(cluster_status="non-Primary", local_state="Joining", cluster_size=1)
    assert verdict(worst, expected_size=3).code is AnalysisCode.GALERA_NON_PRIMARY_COMPONENT
    second = galera_node(local_state="Joined", cluster_size=1)
    assert verdict(second, expected_size=3).code is AnalysisCode.GALERA_NODE_NOT_SYNCED


def test_cluster_size_is_only_checked_when_an_expectation_is_set() -> None:
    assert verdict(galera_node(cluster_size=1)).code is AnalysisCode.NO_PROBLEM
    assert verdict(galera_node(cluster_size=4), expected_size=3).code is AnalysisCode.NO_PROBLEM


def test_a_dead_galera_node_keeps_orchestrators_codes_not_its_stale_wsrep_state() -> None:
    dead = galera_node({"ok": False}, local_state="Joining")
    assert verdict(dead).code is AnalysisCode.DEAD_MASTER_WITHOUT_REPLICAS
    replica = instance_snapshot("db:2", {"master": NODE, "io": "No"})
    assert verdict(dead, replica).code is AnalysisCode.DEAD_MASTER


def test_a_replication_problem_of_a_galera_node_comes_before_its_galera_code() -> None:
    replica = instance_snapshot("db:2", {"master": NODE, "io": "No", "sql": "No"})
    result = verdict(galera_node(local_state="Joined"), replica)
    assert result.code is AnalysisCode.MASTER_SINGLE_REPLICA_NOT_REPLICATING


def test_no_galera_code_is_actionable_and_the_setting_reaches_the_options() -> None:
    assert not any(code.is_actionable for code in GALERA_CODES)
    options = AnalysisOptions.from_settings(Settings(GaleraExpectedClusterSize=3))
    assert options.galera_expected_cluster_size == 3
    assert AnalysisOptions.from_settings(Settings()).galera_expected_cluster_size == 0
