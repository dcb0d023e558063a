"""Prometheus metrics of orchestrator-coordinator (its own registry, served on /metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestrator_coordinator.observer import ElectionStatus


@dataclass
class CoordinatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.leader_present = Gauge(
            "orchestrator_coordinator_leader_present",
            "1 while a recovery worker holds the leader key, else 0",
            registry=self.registry,
        )
        self.fencing_token = Gauge(
            "orchestrator_coordinator_fencing_token",
            "Fencing token (create_revision of the leader key) of the current leader; 0: none",
            registry=self.registry,
        )
        self.leader_changes = Counter(
            "orchestrator_coordinator_leader_changes",
            "Times the leadership changed hands or became vacant (fencing token changed)",
            registry=self.registry,
        )
        self.members = Gauge(
            "orchestrator_coordinator_members",
            "Live recovery workers (membership keys)",
            registry=self.registry,
        )
        self.etcd_reachable = Gauge(
            "orchestrator_coordinator_etcd_reachable",
            "1 while etcd answers linearizable reads (has a quorum), else 0",
            registry=self.registry,
        )
        self.events_published = Counter(
            "orchestrator_coordinator_leader_events_published",
            "orchestrator.v1.leader events published",
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "orchestrator_coordinator_publish_failures",
            "Leader events that could not be published to NATS (retried)",
            registry=self.registry,
        )

    def observe(self, previous: ElectionStatus, status: ElectionStatus) -> None:
        self.leader_present.set(1 if status.has_leader else 0)
        self.fencing_token.set(status.fencing_token)
        self.members.set(len(status.members))
        self.etcd_reachable.set(1 if status.etcd_reachable else 0)
        if previous.checked_at is not None and status.fencing_token != previous.fencing_token:
            self.leader_changes.inc()
