"""Clock skew between a snapshot's writer and the bus (issue 13 §5).

A snapshot says when it was probed (``probe.checked_at``) by its discovery host's clock, and a
store keeps the newest per instance. A discovery host whose clock runs ahead, or a forged
timestamp in the future, would then pin stale state: every honest later snapshot would look
older and be ignored. JetStream stamps each message with the NATS server's clock when it
stores it; a snapshot cannot have been probed after it reached the stream, so its times are
bounded by that stamp (plus :data:`TOLERANCE` for the publish itself). The difference between
the two clocks is the skew, reported by the consumer (metric and a rate-limited warning).

The bound does not fix a clock that runs *behind*: its snapshots stay in order among
themselves, but look older than they are wherever a time is compared with another host's
clock (staleness). That skew is reported the same way; the hosts' clocks are assumed to be
kept by NTP to well within a second (docs/reliability.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator_shared.snapshot import InstanceSnapshot

TOLERANCE = timedelta(seconds=2)  # a probe time this much after the stream's stamp is accepted
REPORTED_SKEW_SECONDS = 1.0  # a skew larger than this is worth a warning


def aware(moment: datetime) -> datetime:
    """A naive time (as some publishers send them) read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def skew_seconds(snapshot: InstanceSnapshot, stored_at: datetime) -> float:
    """How far the snapshot's clock is ahead of the stream's (negative: behind)."""
    return (aware(snapshot.probe.checked_at) - aware(stored_at)).total_seconds()


def bounded_by_arrival(snapshot: InstanceSnapshot, stored_at: datetime) -> InstanceSnapshot:
    """``snapshot`` itself, unless a probe time is later than ``stored_at`` +
    :data:`TOLERANCE`: then those times become ``stored_at`` (so a snapshot probed after it
    reached the stream, by a clock in sync, is newer)."""
    limit = aware(stored_at) + TOLERANCE
    probe = snapshot.probe
    times = {
        name: aware(stored_at)
        for name in ("checked_at", "attempted_at", "last_seen_at")
        if (value := getattr(probe, name)) is not None and aware(value) > limit
    }
    if not times:
        return snapshot
    return snapshot.model_copy(update={"probe": probe.model_copy(update=times)})
