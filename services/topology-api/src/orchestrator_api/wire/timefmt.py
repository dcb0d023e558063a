"""Times and durations as orchestrator writes them in JSON.

orchestrator is written in Go, so its JSON holds Go's renderings:

* ``time.Duration`` is an integer number of **nanoseconds** (``ElapsedDowntime``,
  ``LastDiscoveryLatency``);
* timestamps read back from its backend as strings keep the backend's text. With a MySQL backend
  that is ``2006-01-02 15:04:05``; with the SQLite backend (what the reference samples were
  captured on) a ``DATETIME`` column comes back as RFC 3339, ``2006-01-02T15:04:05Z``. The
  samples show both: ``LastSeenTimestamp`` in RFC 3339, ``DowntimeEndTimestamp`` in the plain
  form (it is computed in SQL, so the driver never turns it into a time). We write each field in
  the form the samples show.

All times are written in UTC; a naive ``datetime`` is taken to be UTC already.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "go_datetime",
    "nanoseconds",
    "rfc3339",
    "whole_seconds_between",
]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def go_datetime(moment: datetime | None) -> str:
    """``2006-01-02 15:04:05`` in UTC; ``""`` for no time (a NULL column in orchestrator)."""
    if moment is None:
        return ""
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(moment: datetime | None) -> str:
    """``2006-01-02T15:04:05Z`` (whole seconds, UTC); ``""`` for no time."""
    if moment is None:
        return ""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def nanoseconds(duration: timedelta | float) -> int:
    """A Go ``time.Duration``: a duration (or a number of seconds) as whole nanoseconds."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    return round(seconds * 1_000_000_000)


def whole_seconds_between(earlier: datetime, later: datetime) -> int:
    """``unix_timestamp(later) - unix_timestamp(earlier)``, as orchestrator's SQL computes it:
    both times truncated to whole seconds first, so 12.9 s to 13.1 s counts as one second."""
    return int(_utc(later).timestamp() // 1) - int(_utc(earlier).timestamp() // 1)
