"""Every metric a service exposes is listed in docs/observability.md, under Prometheus' naming
conventions (the service's prefix, ``_total`` counters, ``_seconds`` histograms)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Metric

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store.consumer import ConsumerMetrics, ConsumerStats
from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_discovery.metrics import DiscoveryMetrics
from orchestrator_recovery.metrics import RecoveryMetrics, RecoveryTally, metrics_registry
from orchestrator_shared.config import Settings

pytestmark = pytest.mark.unit

DOC = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()


def api_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ConsumerMetrics(ConsumerStats()))
    create_app(ApiContext(settings=Settings(), store=cast("Any", None)), registry=registry)
    return registry


def recovery_registry() -> CollectorRegistry:
    """The worker's collector over stand-ins holding the counts it reads (no worker runs)."""
    collector = RecoveryMetrics(
        worker=cast("Any", SimpleNamespace(internal_errors=Counter())),
        responder=cast(
            "Any",
            SimpleNamespace(answered=Counter(), internal_errors=0, busy_refusals=0),
        ),
        publisher=cast("Any", SimpleNamespace(dropped=0)),
        feed=cast("Any", SimpleNamespace(refused=0)),
        leading=lambda: False,
    )
    return metrics_registry(collector, RecoveryTally())


REGISTRIES = {
    "discovery": lambda: DiscoveryMetrics().registry,
    "recovery": recovery_registry,
    "coordinator": lambda: CoordinatorMetrics().registry,
    "api": api_registry,
}


def exposed_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


@pytest.mark.parametrize("service", sorted(REGISTRIES))
def test_every_metric_is_documented_and_well_named(service: str) -> None:
    families = list(REGISTRIES[service]().collect())
    assert families
    for family in families:
        name = exposed_name(family)
        assert name.startswith(f"orchestrator_{service}_"), name
        assert f"`{name}`" in DOC, f"{name} is not in docs/observability.md"
        if family.type == "histogram":
            assert name.endswith("_seconds"), name
