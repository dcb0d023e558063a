"""The recovery worker's ``/metrics`` (``RecoveryMetricsListenAddress``): what it counts so an
operator sees bugs caught, bounds reached and messages refused without reading its log
(docs/reliability.md). Read from the live objects at scrape time: nothing to keep in step."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.fleet import FleetFeed
from orchestrator_recovery.operations.commands import CommandResponder
from orchestrator_recovery.publisher import EventPublisher


class RecoveryMetrics(Collector):
    def __init__(
        self,
        *,
        worker: RecoveryWorker,
        responder: CommandResponder,
        publisher: EventPublisher,
        feed: FleetFeed,
        leading: Callable[[], bool],
    ) -> None:
        self._worker = worker
        self._responder = responder
        self._publisher = publisher
        self._feed = feed
        self._leading = leading

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "orchestrator_recovery_leading",
            "1 while this worker is the active (leading) recovery worker",
            value=1 if self._leading() else 0,
        )
        errors = CounterMetricFamily(
            "orchestrator_recovery_internal_errors",
            "Unexpected errors (bugs) caught in one cluster's analysis, events or recovery; "
            "the other clusters went on",
            labels=["cluster"],
        )
        for cluster, count in sorted(self._worker.internal_errors.items()):
            errors.add_metric([cluster], count)
        yield errors
        for name, help_text, value in (
            (
                "command_failures",
                "Commands whose handler failed unexpectedly (answered with the failure)",
                self._responder.internal_errors,
            ),
            (
                "commands_refused_busy",
                "Commands answered busy: the bound on commands in progress was reached",
                self._responder.busy_refusals,
            ),
            (
                "events_dropped",
                "Events dropped, the oldest first, while the bus was down and the queue full",
                self._publisher.dropped,
            ),
            (
                "snapshots_refused",
                "Unreadable snapshots and unreachable events the fleet feed skipped",
                self._feed.refused,
            ),
        ):
            yield CounterMetricFamily(
                f"orchestrator_recovery_{name}", help_text, value=float(value)
            )


def metrics_registry(collector: RecoveryMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
