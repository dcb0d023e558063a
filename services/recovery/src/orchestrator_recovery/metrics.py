"""The recovery worker's ``/metrics`` (``RecoveryMetricsListenAddress``; every metric is listed
in docs/observability.md): what it counts so an operator sees recoveries, operations, bugs
caught, bounds reached and messages refused without reading its log (docs/reliability.md).

The counters of :class:`RecoveryMetrics` are read from the live objects at scrape time: nothing
to keep in step. Recoveries are tallied as their events are published (:class:`RecoveryTally`):
a histogram keeps what it observed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.fleet import FleetFeed
from orchestrator_recovery.operations.commands import CommandResponder
from orchestrator_recovery.publisher import EventPublisher
from orchestrator_shared.events import RecoveryEvent, RecoveryPhase

# how a recovery ends (its last event); a failover also passes detected, started, promoted
ENDINGS = frozenset({RecoveryPhase.COMPLETED, RecoveryPhase.FAILED, RecoveryPhase.BLOCKED})
# from a few milliseconds (a gate, a kill -9 on a LAN) to the minutes hooks may take
PHASE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RecoveryTally:
    """Recoveries by analysis and how they ended, and how long each took to reach each phase,
    from the recovery events this worker publishes (as it leads): each carries when its
    recovery started (``data.started_at``, once its failure was confirmed) and when it was
    sent (``time``). Graceful takeovers are recoveries too, with their events' analysis
    (``DeadMaster``)."""

    def __init__(self) -> None:
        self.recoveries = Counter(
            "orchestrator_recovery_recoveries",
            "Recoveries this worker carried out, by analysis code and outcome (completed, "
            "failed, blocked)",
            ["analysis", "outcome"],
            registry=None,
        )
        self.phase_reached = Histogram(
            "orchestrator_recovery_phase_reached_seconds",
            "Seconds from a recovery's start (its failure confirmed) to each of its phases",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=None,
        )

    def observe(self, event: RecoveryEvent) -> None:
        phase, data = event.phase, event.data
        if data.started_at is not None:
            elapsed = (event.time - data.started_at).total_seconds()
            self.phase_reached.labels(phase.value).observe(max(0.0, elapsed))
        if phase in ENDINGS:
            self.recoveries.labels(data.analysis, phase.value).inc()


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
        operations = CounterMetricFamily(
            "orchestrator_recovery_operations",
            "Topology commands this worker answered as the leader, by operation (other: one it "
            "does not know) and result (ok, refused, failed, busy, unavailable)",
            labels=["operation", "result"],
        )
        for (operation, result), count in sorted(self._responder.answered.items()):
            operations.add_metric([operation, result], count)
        yield operations
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


def metrics_registry(collector: RecoveryMetrics, tally: RecoveryTally) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    registry.register(tally.recoveries)
    registry.register(tally.phase_reached)
    return registry
