"""Prometheus metrics of the discovery service (its own registry, served on /metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class DiscoveryMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.probes = Counter(
            "orchestrator_discovery_probes",
            "Full probes finished, by result (ok, partial, failed)",
            ["result"],
            registry=self.registry,
        )
        self.probe_latency = Histogram(
            "orchestrator_discovery_probe_latency_seconds",
            "Time one full probe took, successful or not",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.probe_failures = Counter(
            "orchestrator_discovery_probe_failures",
            "Probes that failed, by reason (timeout, error)",
            ["reason"],
            registry=self.registry,
        )
        self.instances_known = Gauge(
            "orchestrator_discovery_instances_known",
            "Instances this discovery worker probes",
            registry=self.registry,
        )
        self.masters_watched = Gauge(
            "orchestrator_discovery_masters_watched",
            "Masters checked on a persistent liveness connection",
            registry=self.registry,
        )
        self.liveness_confirm_seconds = Histogram(
            "orchestrator_discovery_liveness_confirm_seconds",
            "After a master's waiting connection broke: how long the new connection that "
            "confirms (or refutes) its death took",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.liveness_breaks_survived = Counter(
            "orchestrator_discovery_liveness_breaks_survived",
            "Waiting connections that broke while their master still answered (a KILL, a "
            "proxy): no unreachable event",
            registry=self.registry,
        )
        self.unreachable_events = Counter(
            "orchestrator_discovery_unreachable_events",
            "Unreachable events published",
            registry=self.registry,
        )
        self.hosts_refused = Counter(
            "orchestrator_discovery_hosts_refused",
            "Instances not contacted because DiscoveryAllowedHostnameFilters does not allow them",
            registry=self.registry,
        )
        self.requests_refused = Counter(
            "orchestrator_discovery_requests_refused",
            "discover/refresh/forget requests refused, by reason (bad-request: unknown verb "
            "or invalid instance key; host-refused: DiscoveryAllowedHostnameFilters)",
            ["reason"],
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "orchestrator_discovery_publish_failures",
            "Messages that could not be published to NATS",
            registry=self.registry,
        )
