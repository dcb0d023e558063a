"""``GaleraNodeDesyncedTooLong``: a Galera node desynced without a break for
``GaleraDesyncedTooLongSeconds``, which needs memory across snapshots (``track_galera_desync``);
under the limit it stays ``GaleraNodeNotSynced``, and nothing is ever recovered for it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator_shared.analysis import (
    Analysis,
    AnalysisCode,
    AnalysisOptions,
    analyze,
    track_galera_desync,
)
from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_analysis_galera import NODE, galera_node
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot

pytestmark = pytest.mark.unit

DESYNCED = {"local_state": "Donor/Desynced", "desync": True, "desync_count": 1}
SINCE = NOW - timedelta(seconds=600)


def desynced_node(checked: float = 0, **state: Any) -> InstanceSnapshot:
    return galera_node({"checked": checked}, **{**DESYNCED, **state})


def verdict(
    snap: InstanceSnapshot, *, since: datetime | None = SINCE, too_long: float = 600
) -> Analysis:
    history = {} if since is None else {InstanceKey.parse(NODE): since}
    options = AnalysisOptions(galera_desynced_too_long_seconds=too_long)
    found = analyze(
        [snap], now=NOW, desynced_since=history, options=options, include_no_problem=True
    )
    return next(a for a in found if str(a.key) == NODE)


def test_the_tracker_keeps_the_first_desynced_sighting_until_the_node_is_seen_synced() -> None:
    key = InstanceKey.parse(NODE)
    history = track_galera_desync({}, [desynced_node(checked=-30)])
    history = track_galera_desync(history, [desynced_node(checked=-20)])
    # a failed probe says nothing about wsrep: the desync goes on
    history = track_galera_desync(history, [galera_node({"checked": -15, "ok": False})])
    # Synced but still desynced by hand (@@wsrep_desync) counts as desynced too
    history = track_galera_desync(history, [desynced_node(checked=-10, local_state="Synced")])
    assert history == {key: NOW - timedelta(seconds=30)}
    history = track_galera_desync(history, [galera_node({"checked": -5})])
    assert history == {}
    history = track_galera_desync(history, [desynced_node(checked=0)])
    assert history == {key: NOW}  # a new desync starts again


def test_the_tracker_forgets_a_server_that_no_longer_runs_wsrep() -> None:
    key = InstanceKey.parse(NODE)
    history = track_galera_desync({key: SINCE}, [instance_snapshot(NODE, {})])
    assert history == {}


def test_desynced_for_the_limit_is_too_long_and_the_evidence_says_since_when() -> None:
    result = verdict(desynced_node())
    assert result.code is AnalysisCode.GALERA_NODE_DESYNCED_TOO_LONG
    assert not result.is_actionable and result.has_problem and result.description
    assert (
        f"{NODE}: desynced since 2026-11-25 11:50:00Z (600 s, GaleraDesyncedTooLongSeconds 600)"
        in result.evidence
    ), result.evidence


def test_desynced_for_less_than_the_limit_is_still_only_not_synced() -> None:
    result = verdict(desynced_node(), since=SINCE + timedelta(seconds=1))
    assert result.code is AnalysisCode.GALERA_NODE_NOT_SYNCED
    assert (
        f"{NODE}: desynced since 2026-11-25 11:50:01Z (599 s, GaleraDesyncedTooLongSeconds 600)"
        in result.evidence
    )
    # without history (the first pass of a new process) it cannot be too long yet
    assert verdict(desynced_node(), since=None).code is AnalysisCode.GALERA_NODE_NOT_SYNCED


def test_a_limit_of_zero_turns_the_check_off() -> None:
    result = verdict(desynced_node(), since=NOW - timedelta(days=1), too_long=0)
    assert result.code is AnalysisCode.GALERA_NODE_NOT_SYNCED
    assert any(
        "(86400 s, GaleraDesyncedTooLongSeconds 0: not checked)" in e for e in result.evidence
    )


def test_an_entry_left_from_an_earlier_desync_does_not_count_once_the_node_is_synced() -> None:
    result = verdict(galera_node())
    assert result.code is AnalysisCode.NO_PROBLEM
    assert not any("desynced since" in line for line in result.evidence), result.evidence


def test_out_of_the_primary_component_is_worse_and_desynced_too_long_beats_the_size() -> None:
    cut_off = desynced_node(cluster_status="non-Primary", cluster_size=1)
    assert verdict(cut_off).code is AnalysisCode.GALERA_NON_PRIMARY_COMPONENT
    # desynced by hand while its state still says Synced, in a cluster short of a node
    options = AnalysisOptions(galera_expected_cluster_size=3)
    small = desynced_node(local_state="Synced", cluster_size=2)
    history = {InstanceKey.parse(NODE): SINCE}
    found = analyze([small], now=NOW, desynced_since=history, options=options)
    assert [a.code for a in found] == [AnalysisCode.GALERA_NODE_DESYNCED_TOO_LONG]


def test_a_replication_problem_of_the_node_still_comes_first() -> None:
    replica = instance_snapshot("db:2", {"master": NODE, "io": "No", "sql": "No"})
    history = {InstanceKey.parse(NODE): SINCE}
    found = analyze([desynced_node(), replica], now=NOW, desynced_since=history)
    assert {str(a.key): a.code for a in found}[NODE] is (
        AnalysisCode.MASTER_SINGLE_REPLICA_NOT_REPLICATING
    )


def test_the_setting_reaches_the_options_and_bad_values_are_refused() -> None:
    assert AnalysisOptions.from_settings(Settings()).galera_desynced_too_long_seconds == 600
    options = AnalysisOptions.from_settings(Settings(GaleraDesyncedTooLongSeconds=0))
    assert options.galera_desynced_too_long_seconds == 0
    for bad in ("-1", "long", "1.5"):
        with pytest.raises(ConfigError, match=r"^GaleraDesyncedTooLongSeconds: "):
            load_settings(
                None,
                environ={"ORCHESTRATOR_GaleraDesyncedTooLongSeconds": bad},
                default_path=Path("/nonexistent/orchestrator.conf.json"),
            )
