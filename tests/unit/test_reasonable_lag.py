"""``ReasonableReplicationLagSeconds``: what counts as lagging in the API's answers and in the
replication analysis."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from orchestrator_api.http.payloads import InstanceAnswers
from orchestrator_api.store.view import FleetView
from orchestrator_shared.analysis import AnalysisCode, AnalysisOptions, analyze
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from tests.unit.test_analysis_scenarios import NOW, instance_snapshot
from tests.unit.test_answers import POLL, SEEN, snap

pytestmark = pytest.mark.unit


def problems(answers: InstanceAnswers, lag: int) -> object:
    lagging = snap(2, 1).model_copy(update={"replication_lag_seconds": lag})
    view = FleetView({s.instance_key: s for s in (snap(1), lagging)}, {})
    node = view.instance(InstanceKey("db", 2))
    assert node is not None
    body = json.loads(answers.instance(view, node, now=SEEN + timedelta(seconds=1), poll=POLL))
    return body["Problems"]


def test_the_encoded_answers_use_the_configured_threshold() -> None:
    assert problems(InstanceAnswers(), 30) == ["replication_lag"]  # orchestrator's 10 s
    assert problems(InstanceAnswers(reasonable_lag=60), 30) == []
    assert problems(InstanceAnswers(reasonable_lag=60), 61) == ["replication_lag"]


def unreachable_master_with_lagging_replicas(settings: Settings) -> AnalysisCode:
    master = instance_snapshot("db:1", {"ok": False})
    replicas = [
        instance_snapshot(f"db:{n}", {"master": "db:1", "lag": 30, "auto_position": True})
        for n in (2, 3)
    ]
    options = AnalysisOptions.from_settings(settings)
    found = analyze([master, *replicas], now=NOW, include_no_problem=True, options=options)
    [verdict] = [analysis for analysis in found if str(analysis.key) == "db:1"]
    return verdict.code


def test_the_analysis_counts_replicas_as_lagging_by_the_setting() -> None:
    lagging = unreachable_master_with_lagging_replicas(Settings())
    assert lagging is AnalysisCode.UNREACHABLE_MASTER_WITH_LAGGING_REPLICAS
    relaxed = Settings(ReasonableReplicationLagSeconds=60)
    assert unreachable_master_with_lagging_replicas(relaxed) is AnalysisCode.UNREACHABLE_MASTER
