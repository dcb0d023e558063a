"""The JetStream streams every service agrees on (contracts, no I/O).

Whichever service reaches NATS first creates a stream with these settings; the others find it
(discovery, topology-api and the coordinator all ensure ``ORCHESTRATOR_EVENTS``, so that none
depends on another having started). The dead-letter stream is in
:mod:`orchestrator_shared.dead_letters`.
"""

from __future__ import annotations

from datetime import timedelta

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from orchestrator_shared.bus import EVENTS_STREAM, SNAPSHOTS_STREAM, Subjects

DEFAULT_EVENTS_MAX_BYTES = 1 << 30  # the EventsMaxBytes setting's default


def snapshots_stream_config(subjects: Subjects, *, replicas: int = 1) -> StreamConfig:
    """One message per instance subject: the stream is the fleet's current state. ``replicas``
    (``NATSStreamReplicas``): on how many servers of a NATS cluster JetStream keeps it."""
    return StreamConfig(
        name=SNAPSHOTS_STREAM,
        subjects=[subjects.all_snapshots],
        retention=RetentionPolicy.LIMITS,
        max_msgs_per_subject=1,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


def events_stream_config(
    subjects: Subjects,
    *,
    retention_days: int,
    max_bytes: int = DEFAULT_EVENTS_MAX_BYTES,
    replicas: int = 1,
) -> StreamConfig:
    """Events kept ``retention_days`` and at most ``max_bytes``, the oldest dropped first:
    bounded on both sides, so an event storm cannot fill the NATS server's disk."""
    return StreamConfig(
        name=EVENTS_STREAM,
        subjects=subjects.events,
        retention=RetentionPolicy.LIMITS,
        max_age=timedelta(days=retention_days).total_seconds(),
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )
